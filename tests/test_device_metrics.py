"""The torch path of the common metrics (vitaudit.device_metrics) against the numpy reference
(Explanation.working, cv2's INTER_AREA, vitaudit.metrics), batch by batch, on the CPU here;
tests/cuda/test_device_metrics_cuda.py runs the same comparisons on a GPU."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vitaudit import device_metrics as dm
from vitaudit import metrics
from vitaudit.explanation import Explanation
from vitaudit.preprocess import Preprocessing

DEVICE = "cpu"


def _raws(n: int, gh: int, gw: int, seed: int = 0) -> np.ndarray:
    """Smooth non-negative maps with one peak each (as CAMs and attention look), float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:gh, 0:gw]
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0, gh), rng.uniform(0, gw)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(2, 12))
        out.append((blob * rng.uniform(0.5, 5) + rng.uniform(0, 0.2, (gh, gw))).astype(np.float32))
    return np.stack(out)


def _explanation(raw: np.ndarray, geometry, max_side: int | None) -> Explanation:
    return Explanation("m", "model", 0, "a", np.ones(2, np.float32), ["a", "b"], raw, geometry, max_side=max_side)


GEOMETRIES = {
    "upsampled": (Preprocessing((64, 64), (0.5,) * 3, (0.5,) * 3).geometry((50, 70)), None),
    "centre crop (unseen edges)": (Preprocessing((64, 64), (0.5,) * 3, (0.5,) * 3, crop="center").geometry((60, 90)), None),
    "shrunk to the working size": (Preprocessing((224, 224), (0.5,) * 3, (0.5,) * 3).geometry((900, 1300)), 256),
}


@pytest.mark.parametrize("case", list(GEOMETRIES))
def test_working_maps_are_explanation_working(case):
    geometry, max_side = GEOMETRIES[case]
    raws = _raws(5, 7, 9)
    raws[3] = 0.0  # no signal: zeros, never NaN
    size = _explanation(raws[0], geometry, max_side).working_size
    got = dm.working_maps(torch.from_numpy(raws).to(DEVICE), geometry, size).cpu().numpy()
    for raw, mine in zip(raws, got):
        ref = _explanation(raw, geometry, max_side).working
        assert mine.shape == ref.shape
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(ref))
        np.testing.assert_allclose(mine, ref, rtol=0, atol=2e-7, equal_nan=True)


@pytest.mark.parametrize("shape,size", [((60, 90), (20, 30)), ((97, 131), (40, 57)), ((6000, 8000), (768, 1024))])
def test_area_resizing_is_cv2_inter_area(shape, size):
    rng = np.random.default_rng(1)
    x = rng.random((2, *shape), dtype=np.float32)
    got = dm.resize_area(torch.from_numpy(x).to(DEVICE), size).cpu().numpy()
    for a, g in zip(x, got):
        np.testing.assert_allclose(g, cv2.resize(a, size[::-1], interpolation=cv2.INTER_AREA), atol=1e-5)
    # masks: polygons-like blobs, as the dataset pass shrinks them (>= 0.5 of INTER_AREA)
    yy, xx = (a.astype(np.float32) for a in np.ogrid[0 : shape[0], 0 : shape[1]])  # broadcast: no 48 MP index arrays
    masks = np.stack([(yy - shape[0] * f) ** 2 + (xx - shape[1] * f) ** 2 < (min(shape) * 0.3) ** 2 for f in (0.4, 0.6)])
    got_m = dm.resize_masks(torch.from_numpy(masks).to(DEVICE), size).cpu().numpy()
    for m, g in zip(masks, got_m):
        ref = cv2.resize(m.astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA) >= 0.5
        assert (g != ref).sum() <= max(1, ref.size // 10000), "at most rounding at a boundary"


def _batch(n: int = 8, seed: int = 0):
    geometry = Preprocessing((64, 64), (0.5,) * 3, (0.5,) * 3).geometry((48, 72))
    raws = _raws(n, 8, 8, seed)
    maps = dm.working_maps(torch.from_numpy(raws).to(DEVICE), geometry, (48, 72))
    refs = [_explanation(r, geometry, None).working for r in raws]
    rng = np.random.default_rng(seed + 1)
    masks = []
    for i in range(n):
        y0, x0 = rng.integers(0, 30), rng.integers(0, 50)
        if i % 2 == 0:  # around the peak: a hit
            py, px = np.unravel_index(np.nanargmax(refs[i]), refs[i].shape)
            y0, x0 = max(0, py - 3), max(0, px - 3)
        m = np.zeros((48, 72), bool)
        m[y0 : y0 + rng.integers(6, 18), x0 : x0 + rng.integers(6, 22)] = True
        masks.append(m)
    return maps, refs, np.stack(masks)


def test_localisation_metrics_match_the_reference():
    maps, refs, masks = _batch()
    tm = torch.from_numpy(masks).to(DEVICE)
    mass, hit = dm.mass_in(maps, tm), dm.pointing_game(maps, tm)
    iou10, iou37 = dm.iou_top(maps, tm, 10), dm.iou_top(maps, tm, 37.5)
    values = dm.to_host([mass, hit, iou10, iou37])  # one copy for the batch
    assert values.shape == (4, len(refs))
    for i, (ref, m) in enumerate(zip(refs, masks)):
        assert values[0, i] == pytest.approx(metrics.mass_in(ref, m), abs=1e-6)
        assert values[1, i] == float(metrics.pointing_game(ref, m))
        assert values[2, i] == pytest.approx(metrics.iou_top(ref, m, 10), abs=1e-3)
        assert values[3, i] == pytest.approx(metrics.iou_top(ref, m, 37.5), abs=1e-3)
    assert 0 < values[1].sum() < len(refs), "the batch has hits and misses, so the comparison tells"


def test_iou_ties_in_raster_order():
    flat = torch.zeros(1, 4, 5, dtype=torch.float32)
    flat[0, 1:3, 1:4] = 1.0  # six tied pixels; the top 3 are the first row of them
    mask = np.zeros((4, 5), bool)
    mask[1, :] = True
    got = float(dm.iou_top(flat.to(DEVICE), torch.from_numpy(mask[None]).to(DEVICE), 15).cpu())
    assert got == pytest.approx(metrics.iou_top(flat[0].numpy(), mask, 15)) == pytest.approx(3 / 5)


def test_pearson_and_baseline_similarity_match_the_reference():
    maps, refs, _ = _batch(seed=3)
    other, other_refs, _ = _batch(seed=4)
    r = dm.pearson(maps, other).cpu().numpy()
    for i in range(len(refs)):
        assert r[i] == pytest.approx(metrics.pearson(refs[i], other_refs[i]), abs=1e-6)
    stored = np.stack([metrics.resize_map(o, (16, 24)) for o in other_refs]).astype(np.float16).astype(np.float32)
    sim = dm.baseline_similarity(maps, torch.from_numpy(stored).to(DEVICE)).cpu().numpy()
    for i in range(len(refs)):
        ref = metrics.pearson(metrics.resize_map(refs[i], stored[i].shape), stored[i])
        assert sim[i] == pytest.approx(ref, abs=1e-5)


def test_what_the_plain_case_does_not_cover_is_nan():
    """No signal, unseen pixels, an empty region, a constant map: NaN, so the caller hands the
    image to the full measurement (which says what is wrong)."""
    maps, refs, masks = _batch(4)
    maps = maps.clone()
    maps[0] = 0.0  # no signal
    maps[1, 0, 0] = float("nan")  # an unseen pixel
    masks = masks.copy()
    masks[2] = False  # empty region
    tm = torch.from_numpy(masks).to(DEVICE)
    for values in (dm.mass_in(maps, tm), dm.pointing_game(maps, tm), dm.iou_top(maps, tm, 20)):
        v = values.cpu().numpy()
        assert np.isnan(v[:3]).all() and np.isfinite(v[3])
    const = maps.clone()
    const[3] = 0.5
    r = dm.pearson(const, maps).cpu().numpy()
    # 0, 1: no signal / unseen; 3: constant; 2 is the same map on both sides
    assert np.isnan(r[[0, 1, 3]]).all() and r[2] == pytest.approx(1.0)
    with pytest.raises(metrics.MetricError):
        metrics.pearson(const[3].numpy(), refs[3])


def test_small_ops_run_on_one_cpu_thread_and_restore_the_count():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with dm.small_ops(torch.device("cpu")):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
