"""The working resolution: maps, masks and metrics at a bounded size, values as at full size."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vitaudit
from vitaudit import metrics
from vitaudit.explanation import working_size
from vitaudit.images import skimage_image
from vitaudit.regions import Region, rasterize, rasterize_ref
from vitaudit.spec import parse_audit_file

PHOTOS = Path(__file__).resolve().parent.parent / "audits" / "audit_photos.yaml"
LOCALISATION = {"mass_in": metrics.mass_in, "energy_pointing_game": metrics.energy_pointing_game,
                "rank_accuracy": metrics.rank_accuracy}


def test_working_size_keeps_the_aspect_and_never_upsamples():
    assert working_size((6000, 8000), 1024) == (768, 1024)
    assert working_size((8000, 6000), 1024) == (1024, 768)
    assert working_size((300, 451), 1024) == (300, 451)
    assert working_size((6000, 8000), None) == (6000, 8000)
    assert working_size((5, 100000), 1024) == (1, 1024)


def test_regions_at_the_working_size_are_the_full_size_ones_downsampled():
    full, work = (600, 800), (150, 200)
    regions = [Region("b", "box", ((101, 43), (517, 388))),
               Region("f", "box", ((0.1, 0.2), (0.55, 0.9)), units="fraction"),
               Region("p", "polygon", ((40, 30), (700, 90), (420, 560), (60, 400)))]
    for region in regions:
        big = rasterize(region, full).reshape(150, 4, 200, 4).mean(axis=(1, 3))
        small = rasterize(region, work, image_size=full)
        assert small.shape == work
        assert np.mean(small != (big >= 0.5)) < 0.02, region.name  # only edge pixels may differ
    # a box thinner than a working pixel keeps one; checks still use the original size
    assert rasterize(Region("t", "box", ((10, 10), (11, 11))), work, image_size=full).sum() == 1
    with pytest.raises(ValueError, match="right edge"):
        rasterize(Region("o", "box", ((0, 0), (801, 10))), work, image_size=full)


def test_mask_files_are_downsampled_by_majority(tmp_path):
    from PIL import Image

    inside = np.zeros((600, 800), np.uint8)
    inside[100:300, 200:600] = 255
    Image.fromarray(inside).save(tmp_path / "m.png")
    small = rasterize(Region("m", "mask", mask_path=str(tmp_path / "m.png")), (150, 200), image_size=(600, 800))
    expected = np.zeros((150, 200), bool)
    expected[25:75, 50:150] = True
    np.testing.assert_array_equal(small, expected)


def test_heatmap_keeps_its_contract_and_working_is_the_same_map_smaller(small_cnn):
    photo = np.asarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3)), dtype=np.uint8)
    e = vitaudit.explain(small_cnn, photo, "gradcam")
    assert "heatmap" not in e.__dict__  # built on access only
    assert e.working.shape == (768, 1024) and e.working_size == (768, 1024)
    assert "heatmap" not in e.__dict__  # the working map does not go through the full one
    assert e.heatmap.shape == (1200, 1600)
    down = metrics.resize_map(e.heatmap, (768, 1024))
    assert np.abs(down - e.working).max() < 0.02
    e.max_side = None
    assert e.working is e.heatmap


def test_metrics_at_the_working_resolution_match_full_resolution_on_the_shipped_photos():
    """Every localisation value and agreement of audits/audit_photos.yaml within 0.01, at a working
    resolution (256) below every shipped photo's size."""
    spec = parse_audit_file(PHOTOS)
    model = vitaudit.load_model("efficientnet_lite0", pretrained=True, device="cpu")
    compared = 0
    for exp in spec.expectations:
        if exp.kind not in ("localisation", "comparison"):
            continue
        image = skimage_image(spec.images[exp.image].skimage)
        maps = []
        for ref in exp.maps:
            target = model.label_index(ref.target) if ref.target is not None else None
            maps.append(vitaudit.explain(model, image, (ref.method, dict(ref.options)), target=target))
        values = []
        for max_side in (None, 256):
            for e in maps:
                e.max_side = max_side
            if exp.kind == "comparison":
                values.append(metrics.similarity(maps[0].working, maps[1].working, str(exp.option("by", "pearson"))))
                continue
            e = maps[0]
            mask = rasterize_ref(exp.region, e.working_size, image_size=e.geometry.image_hw)
            if exp.metric == "iou_top":
                values.append(metrics.iou_top(e.working, mask, float(exp.option("top"))))
            elif exp.metric == "pointing_game":
                values.append(float(metrics.pointing_game(e.working, mask, float(exp.option("within", 0)) * e.scale[0])))
            else:
                values.append(LOCALISATION[exp.metric](e.working, mask))
        assert max(maps[0].working_size) == 256
        assert abs(values[0] - values[1]) <= 0.01, (exp.text, values)
        compared += 1
    assert compared >= 15
