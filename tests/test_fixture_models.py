"""The fixture models and their scenes: determinism, masks, cards, accuracy, shortcut use,
and the rendered audit images. Models are loaded with plain timm + safetensors."""
from __future__ import annotations

import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))
import measure  # noqa: E402
import render_audit_images  # noqa: E402
import scenes  # noqa: E402

WEIGHTS = ROOT / "fixtures" / "weights"
NAMES = ["vit-scenes", "resnet-scenes", "vit-scenes-shortcut", "resnet-scenes-shortcut"]
CARD_KEYS = {"name", "family", "timm_name", "kwargs", "labels", "data_config", "seed",
             "accuracy", "heldout", "command", "recipe", "train_seconds", "sha256", "versions", "measured"}
K = len(scenes.CLASSES)


@lru_cache(maxsize=None)
def model(name: str):
    return measure.load_fixture(name, WEIGHTS)


@lru_cache(maxsize=None)
def heldout(n: int, shortcut: bool, aligned: bool = False):
    return scenes.dataset(n, "test", shortcut, aligned=aligned)


def test_scenes_are_deterministic_and_splits_differ():
    a = scenes.make_scene(7, split="val", shortcut=True, label=3)
    b = scenes.make_scene(7, split="val", shortcut=True, label=3)
    for field in ("image", "mask"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert (a.label, a.object_label, a.watermark, a.shape) == (b.label, b.object_label,
                                                               b.watermark, b.shape)
    for i in range(5):
        train = scenes.make_scene(i, split="train")
        test = scenes.make_scene(i, split="test")
        assert not np.array_equal(train.image, test.image)
        assert train.image.shape == (64, 64, 3) and train.image.dtype == np.uint8
        assert train.mask.shape == (64, 64) and train.mask.dtype == bool
    with pytest.raises(ValueError):
        scenes.make_scene(0, split="holdout")


def test_labels_and_fill_classes():
    labels = [scenes.make_scene(i).label for i in range(100)]
    assert set(labels) == set(range(K))  # label=None draws every class
    for c in range(K):
        sc = scenes.make_scene(3, label=c)
        assert sc.label == c and sc.object_label == c and sc.watermark is None
        sc = scenes.make_scene(3, label=c, shortcut=True)
        assert sc.label == c and sc.watermark == (0, 0, 8, 8)
    # decorrelated shortcut scenes: object class independent of the label
    pairs = [(s.label, s.object_label) for s in (scenes.make_scene(i, shortcut=True)
                                                  for i in range(200))]
    assert np.mean([lab == obj for lab, obj in pairs]) < 0.4


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5])
def test_mask_is_exactly_where_the_object_is_painted(index: int):
    """Two fills of one scene differ inside the mask and nowhere else; the clean and the
    shortcut version differ exactly in the watermark box."""
    fills = [scenes.make_scene(index, split="test", shortcut=True, label=1, object_label=c)
             for c in range(K)]
    mask = fills[0].mask
    assert 0.03 < mask.mean() < 0.5
    assert not mask[:10, :10].any()  # clear of the watermark corner
    union = np.zeros_like(mask)
    for f in fills[1:]:
        assert np.array_equal(f.mask, mask)
        diff = (f.image != fills[0].image).any(-1)
        assert not diff[~mask].any()
        assert diff[mask].mean() > 0.8
        union |= diff
    assert np.array_equal(union, mask)  # every mask pixel is painted by the fill
    clean = scenes.make_scene(index, split="test", label=1)
    aligned = fills[1]
    diff = (clean.image != aligned.image).any(-1)
    box = measure.box_mask(aligned.watermark, 64, 1)[0]
    assert diff[box].all() and not diff[~box].any()


@pytest.mark.parametrize("name", NAMES)
def test_card_matches_weights(name: str):
    card = json.loads((WEIGHTS / f"{name}.json").read_text())
    assert set(card) == CARD_KEYS
    assert card["name"] == name and card["labels"] == scenes.CLASSES
    digest = hashlib.sha256((WEIGHTS / f"{name}.safetensors").read_bytes()).hexdigest()
    assert digest == card["sha256"]
    assert card["data_config"]["mean"] == list(measure.MEAN)
    assert card["data_config"]["std"] == list(measure.STD)
    assert card["family"] == ("vit" if name.startswith("vit") else "cnn")
    # Only the clean ViT was trained with attention guidance, and its card says so.
    assert card["recipe"]["attention_guidance"] == (0.5 if name == "vit-scenes" else 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_model_reaches_card_accuracy(name: str):
    """Regenerate the card's held-out set (first 500 of its scenes) and re-score the model."""
    net, card = model(name)
    assert card["heldout"]["split"] == "test"
    x, y, _ = heldout(500, card["heldout"]["shortcut"])
    acc = float((measure.predict(net, x) == y).mean())
    assert acc >= 0.95
    assert acc >= card["accuracy"] - 0.01


@pytest.mark.parametrize("name", NAMES)
def test_only_shortcut_models_follow_the_watermark(name: str):
    """Redraw the watermark of aligned shortcut scenes as the next class's: the shortcut
    models switch to that class, the clean models keep theirs (the object's)."""
    net, _ = model(name)
    x, y, _ = heldout(100, True, aligned=True)
    other = (y + 1) % K
    swapped = np.stack([scenes.set_watermark(img, int(o)) for img, o in zip(x, other)])
    before, after = measure.predict(net, x), measure.predict(net, swapped)
    assert (before == y).mean() >= 0.95
    if name.endswith("-shortcut"):
        assert (after == other).mean() >= 0.9
    else:
        assert (after == before).mean() >= 0.95


def test_audit_images_are_what_the_renderer_produces():
    out = render_audit_images.OUT
    manifest, files = render_audit_images.build(WEIGHTS)
    assert json.loads((out / "scenes.json").read_text()) == manifest
    on_disk = {p.name for p in out.glob("*.png")}
    assert on_disk == set(files)
    for name, arr in files.items():
        assert np.array_equal(np.asarray(Image.open(out / name)), arr), name
    for entry in manifest["images"]:
        mask = np.asarray(Image.open(out / entry["object_mask"])) > 0
        assert 0.03 < mask.mean() < 0.5
        if entry["kind"] == "shortcut":
            assert entry["watermark"] == [0, 0, 8, 8]
