"""The device path of the common metrics on CUDA: the comparisons of tests/test_device_metrics.py
(against Explanation.working, cv2 and vitaudit.metrics) with every tensor on the GPU. Collected
only with VITAUDIT_CUDA_TESTS=1 (benchmarks/gpu_check.sh)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

_spec = importlib.util.spec_from_file_location(
    "device_metrics_cases_cuda", Path(__file__).resolve().parents[1] / "test_device_metrics.py")
_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cases)
_cases.DEVICE = "cuda"

test_working_maps_are_explanation_working = _cases.test_working_maps_are_explanation_working
test_area_resizing_is_cv2_inter_area = _cases.test_area_resizing_is_cv2_inter_area
test_localisation_metrics_match_the_reference = _cases.test_localisation_metrics_match_the_reference
test_iou_ties_in_raster_order = _cases.test_iou_ties_in_raster_order
test_pearson_and_baseline_similarity_match_the_reference = _cases.test_pearson_and_baseline_similarity_match_the_reference
test_what_the_plain_case_does_not_cover_is_nan = _cases.test_what_the_plain_case_does_not_cover_is_nan


def test_one_host_copy_per_batch():
    """Only the stacked per-image numbers cross to the host: one device-to-host copy."""
    from vitaudit import device_metrics as dm

    maps = torch.rand(16, 64, 64, device="cuda")
    masks = torch.rand(16, 64, 64, device="cuda") > 0.7
    vals = [dm.mass_in(maps, masks), dm.pointing_game(maps, masks), dm.iou_top(maps, masks, 20)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        dm.to_host(vals)
        torch.cuda.synchronize()
    copies = [e for e in prof.events() if "Memcpy DtoH" in e.name]
    assert len(copies) == 1, [e.name for e in copies]
