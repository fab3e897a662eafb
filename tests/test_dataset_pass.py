"""The dataset pass as a library function: shards measured in any order merge to the whole pass,
which is what lets a distributed engine spread one dataset over workers."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from vitaudit.aggregate import merge
from vitaudit.audit.dataset_pass import Plan, SampleEvaluator, decoded, measure_shard, run_dataset
from vitaudit.audit.evaluate import Evaluator
from vitaudit.audit.session import AuditSession
from vitaudit.spec import parse_audit_file

SCENES = Path(__file__).resolve().parent.parent / "audits" / "datasets" / "scenes"


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory) -> Evaluator:
    root = tmp_path_factory.mktemp("pass")
    (root / "audit_p.yaml").write_text(textwrap.dedent(f"""\
        models:
          vit: {{name: "fixture:vit-scenes"}}
          cnn: {{name: "fixture:resnet-scenes"}}
        datasets:
          scenes:
            folder: {SCENES}/clean
            labels: folders
            sample: 24
            regions:
              object: {{mask: "{SCENES}/masks/{{stem}}.png"}}
        expect:
          - scenes: vit accuracy > 0.5
          - scenes: mean vit.rollout mass in object > 0.1
          - scenes: cnn.gradcam pointing game hits object for 50% of images
          - scenes: agreement(vit.attention, cnn.gradcam) > 0 for 50% of images
        """))
    spec = parse_audit_file(root / "audit_p.yaml")
    assert spec.errors == ()
    return Evaluator(spec, AuditSession(pictures=False, max_side=1024, rootpath=root))


def test_shards_in_any_order_merge_to_the_whole_pass(evaluator: Evaluator) -> None:
    spec = evaluator.spec
    dataset = spec.datasets["scenes"]
    exps = list(spec.expectations)
    whole = run_dataset(evaluator, dataset, exps, batch_size=8)
    assert whole.unreadable == [] and whole.problems == {}
    assert {k: len(v) for k, v in whole.values.items()} == {e.id: 24 for e in exps}

    plan = Plan(evaluator, exps)
    sample_ev = SampleEvaluator(evaluator, plan, dataset)
    shards = []
    for samples, images in decoded(dataset.samples, 5):  # other batch boundaries than the pass's
        shards.append(measure_shard(sample_ev, samples, images))
    shards.reverse()  # as a distributed engine may hand them back
    for exp in exps:
        merged = merge(*(s.values[exp.id] for s in shards))
        assert [v.image for v in merged] == [v.image for v in whole.values[exp.id]]
        for a, b in zip(merged, whole.values[exp.id]):
            assert a.passed == b.passed
            assert a.value == pytest.approx(b.value, abs=1e-6)


def test_an_image_that_never_fits_the_device_is_not_met_with_the_cause(evaluator: Evaluator, monkeypatch) -> None:
    """Out-of-memory is injected for every batch holding one image: the others are measured in
    smaller batches, and that image counts as not met, saying why (no other image is lost)."""
    import torch

    import vitaudit.engine as engine
    from vitaudit.batching import BATCH_SIZES

    spec = evaluator.spec
    dataset = spec.datasets["scenes"]
    victim = dataset.samples[5].path
    real = engine._run_batch

    def flaky(model, images, *args, **kwargs):
        if any(im.source == victim for im in images):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, images, *args, **kwargs)

    monkeypatch.setattr(engine, "_run_batch", flaky)
    BATCH_SIZES.clear()
    try:
        run = run_dataset(evaluator, dataset, list(spec.expectations), batch_size=8)
    finally:
        BATCH_SIZES.clear()
    for exp in spec.expectations:
        values = run.values[exp.id]
        assert len(values) == 24
        lost = [v for v in values if v.error is not None]
        assert [v.index for v in lost] == [5], exp.id
        assert lost[0].passed is False and lost[0].value is None
        assert "out of memory even for a batch of 1 (batch sizes tried: " in lost[0].error


def test_the_batched_device_measurement_gives_the_full_measurements_values(tmp_path) -> None:
    """Every value the pass measured on the device (mass, pointing game, IoU, agreement, a negated
    region) equals what the full measurement (the evaluator's handlers, vitaudit.metrics on
    Explanation.working) says of the same image."""
    from vitaudit.audit.dataset_pass import _measure
    from vitaudit.audit.dataset_quick import batch_values, quick_case
    from vitaudit.engine import run_batch

    (tmp_path / "audit_q.yaml").write_text(textwrap.dedent(f"""\
        models:
          vit: {{name: "fixture:vit-scenes"}}
          cnn: {{name: "fixture:resnet-scenes"}}
        datasets:
          scenes:
            folder: {SCENES}/clean
            labels: folders
            sample: 12
            regions:
              object: {{mask: "{SCENES}/masks/{{stem}}.png"}}
        expect:
          - scenes: mean vit.rollout mass in object > 0.1
          - scenes: mean cnn.gradcam mass in not object < 0.9
          - scenes: vit.attention pointing game hits object for 50% of images
          - scenes: cnn.gradcam pointing game misses object for 10% of images
          - scenes: mean cnn.gradcam iou(top 20%, object) > 0.1
          - scenes: agreement(vit.attention, cnn.gradcam) > 0 for 50% of images
        """))
    spec = parse_audit_file(tmp_path / "audit_q.yaml")
    assert spec.errors == ()
    ev = Evaluator(spec, AuditSession(pictures=False, max_side=1024, rootpath=tmp_path))
    dataset = spec.datasets["scenes"]
    plan = Plan(ev, list(spec.expectations))
    assert all(quick_case(e) for e in plan.active)
    sample_ev = SampleEvaluator(ev, plan, dataset)
    samples = list(dataset.samples)
    images = [next(decoded([s], 1))[1][0] for s in samples]
    entries = {k: run_batch(m, images, [plan.requests[k]] * len(images)) for k, m in plan.models.items()}
    quick = batch_values(plan, samples, entries, 1024)
    assert set(quick) == {e.id for e in plan.active}
    hits = set()
    for j, (sample, image) in enumerate(zip(samples, images)):
        sample_ev.at(sample, image, {k: entries[k][j] for k in entries})
        for exp in plan.active:
            full = _measure(sample_ev, exp, sample)
            assert full.error is None and np.isfinite(quick[exp.id][j]), (exp.id, sample.name)
            assert quick[exp.id][j] == pytest.approx(full.value, abs=1e-6), (exp.id, sample.name)
            if exp.metric == "pointing_game":
                hits.add(quick[exp.id][j])
    assert hits == {0.0, 1.0}, "hits and misses both occur, so the pointing game comparison tells"


def test_masks_drawn_where_images_are_decoded_change_no_value(evaluator: Evaluator, monkeypatch) -> None:
    """The pass draws small images' masks where it decodes them (datasets.fetch.draw_masks): every
    value, check and error is what drawing them when measured gives."""
    import vitaudit.datasets.fetch as fetch

    spec = evaluator.spec
    dataset = spec.datasets["scenes"]
    exps = list(spec.expectations)
    ahead = run_dataset(evaluator, dataset, exps, batch_size=8)
    first, _ = next(decoded(dataset.samples, 8, regions=["object"]))
    assert all(isinstance(s.regions["object"], fetch.Drawn) for s in first)
    monkeypatch.setattr(fetch, "DRAW_AHEAD_PIXELS", 0)
    first, _ = next(decoded(dataset.samples, 8, regions=["object"]))
    assert not any(isinstance(s.regions["object"], fetch.Drawn) for s in first)
    late = run_dataset(evaluator, dataset, exps, batch_size=8)
    for exp in exps:
        a, b = ahead.values[exp.id], late.values[exp.id]
        for col in ("index", "value", "has_value", "passed", "error"):
            np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=f"{exp.id} {col}")
        assert a.errors == b.errors


def test_a_mask_drawn_ahead_answers_as_its_region_does(tmp_path) -> None:
    """The mask at the image's size, read only; another size drawn by the region; a bad mask's
    error raised when the mask is asked for, each time, with the region's own words."""
    from PIL import Image

    from vitaudit.datasets.base import Sample
    from vitaudit.datasets.fetch import Drawn, draw_masks
    from vitaudit.datasets.regions import Declared
    from vitaudit.regions import Region, RegionError

    inside = np.zeros((16, 20), np.uint8)
    inside[4:12, 5:15] = 255
    Image.fromarray(inside).save(tmp_path / "m.png")
    Image.fromarray(np.zeros((16, 20), np.uint8)).save(tmp_path / "empty.png")
    good = Declared(Region("object", "mask", mask_path=str(tmp_path / "m.png")))
    bad = Declared(Region("hole", "mask", mask_path=str(tmp_path / "empty.png")))
    sample = Sample(0, str(tmp_path / "a.png"), "a.png", regions={"object": good, "hole": bad})
    drawn = draw_masks(sample, ["object", "hole", "absent"], (16, 20))
    assert set(drawn.regions) == {"object", "hole"} and drawn.index == 0 and drawn.name == "a.png"
    obj, hole = drawn.regions["object"], drawn.regions["hole"]
    assert isinstance(obj, Drawn) and obj.name == "object"
    np.testing.assert_array_equal(obj.mask((16, 20)), good.mask((16, 20)))
    assert not obj.mask((16, 20)).flags.writeable
    with pytest.raises(RegionError) as other:  # another size: the region's own answer
        good.mask((8, 10))
    with pytest.raises(RegionError, match="is 20x16 \\(WxH\\) but the image is 10x8") as got:
        obj.mask((8, 10))
    assert str(got.value) == str(other.value)
    with pytest.raises(RegionError) as expected:
        bad.mask((16, 20))
    for _ in range(2):
        with pytest.raises(RegionError) as got:
            hole.mask((16, 20))
        assert str(got.value) == str(expected.value)
    assert draw_masks(sample, ["object"], (2048, 2048)) is sample  # a large photo's masks: drawn when measured


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_decode_threads_count_the_cores_the_process_may_use_not_the_machines() -> None:
    """In a process pinned to one core (a cpuset, taskset, a Ray worker), torch runs one thread
    and no decode thread is added to fight it for that core."""
    import os
    import subprocess
    import sys

    cores = sorted(os.sched_getaffinity(0))
    code = ("import torch\nfrom vitaudit.audit.dataset_pass import decode_workers\nfrom vitaudit.threads import usable_cpus\n"
            "print(usable_cpus(), torch.get_num_threads(), decode_workers())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {cores[0]})).stdout.split()
    assert out == ["1", "1", "0"]
