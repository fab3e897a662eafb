"""Reading images in every supported form, matching labels, and loading checkpoints safely."""
from __future__ import annotations

import collections
import time

import numpy as np
import pytest
import torch
from PIL import Image

import vitaudit
from vitaudit.checkpoints import CheckpointError, read_state_dict
from vitaudit.images import ImageError, load_image, skimage_image
from vitaudit.labels import LabelSet, imagenet_labels
from vitaudit.registry import WeightsUnavailable, known_model

RGB = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3


def test_png_jpeg_webp_and_arrays(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    Image.fromarray(RGB).save(tmp_path / "a.webp", lossless=True)
    Image.fromarray(RGB).save(tmp_path / "a.jpg", quality=95)
    for name in ("a.png", "a.webp"):
        np.testing.assert_array_equal(load_image(tmp_path / name).to_uint8(), RGB)
    assert np.abs(load_image(tmp_path / "a.jpg").to_uint8().astype(int) - RGB).max() < 40
    np.testing.assert_array_equal(load_image(RGB).to_uint8(), RGB)
    np.testing.assert_allclose(load_image(RGB.astype(np.float32) / 255).pixels, RGB / 255.0, atol=1e-6)
    assert load_image(RGB).digest == load_image(tmp_path / "a.png").digest


def test_gray_rgba_and_sixteen_bit(tmp_path):
    gray = RGB[:, :, 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").pixels.shape == (4, 6, 3)
    rgba = np.dstack([RGB, np.full((4, 6), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png").to_uint8(), RGB)
    np.testing.assert_array_equal(load_image(rgba).to_uint8(), RGB)
    sixteen = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2700)
    Image.fromarray(sixteen).save(tmp_path / "s16.png")
    px = load_image(tmp_path / "s16.png").pixels
    np.testing.assert_allclose(px[:, :, 0], sixteen / 65535.0, atol=1e-6)


def test_exif_rotation_is_applied(tmp_path):
    """Orientation 6 (rotate 90 degrees clockwise on display): the stored left edge ends on top."""
    pixels = np.zeros((40, 64, 3), np.uint8)
    pixels[:, :16] = 255  # a white band along the left edge of the stored 64 x 40 picture
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "rot.jpg")
    assert loaded.size == (64, 40)  # (H, W) of the picture as displayed: 40 wide, 64 tall
    shown = loaded.pixels.mean(axis=(1, 2))  # per row, in [0, 1]
    assert shown[:12].min() > 0.8 and shown[20:].max() < 0.15, "clockwise: the band must be at the top, not the bottom"


@pytest.mark.parametrize("bad,match", [
    (np.zeros((4, 6, 2)), "HxW, HxWx3 or HxWx4"),
    (np.full((4, 6, 3), 2.0), r"\[0, 1\]"),
    (np.zeros((4, 6, 3), np.int64), "dtype"),
])
def test_bad_arrays_are_one_line_errors(bad, match):
    with pytest.raises(ImageError, match=match):
        load_image(bad)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(tmp_path / "text.png")


def test_skimage_photos():
    assert skimage_image("chelsea").size == (300, 451)
    assert skimage_image("motorcycle_left.png").size == (500, 741)
    with pytest.raises(ImageError, match="did you mean chelsea"):
        skimage_image("chelsee")


def test_imagenet_labels_offline_and_synonyms():
    names = imagenet_labels()
    assert len(names) == 1000 and names[281] == "tabby, tabby cat"
    ls = LabelSet(names)
    assert ls.index("tabby") == 281 == ls.index("tabby cat") == ls.index("Tabby, tabby cat") == ls.index(281) == ls.index("281")
    with pytest.raises(vitaudit.LabelError, match="close matches: 'tabby, tabby cat'"):
        ls.index("tabbby")
    with pytest.raises(vitaudit.LabelError, match="out of range"):
        ls.index(1000)
    with pytest.raises(vitaudit.LabelError, match="ambiguous"):
        LabelSet(["a, crane", "b, crane"]).index("crane")


def test_custom_labels_list_and_file(tmp_path, fresh):
    (tmp_path / "labels.txt").write_text("\n".join(f"thing {i}" for i in range(10)) + "\n")
    m = fresh("SMALL_CNN", labels=tmp_path / "labels.txt")
    assert m.labels[3] == "thing 3" and m.label_index("thing 3") == 3
    with pytest.raises(vitaudit.ModelError, match="3 labels given but resnet18 has 10 classes"):
        fresh("SMALL_CNN", labels=["a", "b", "c"])


def _state(model):
    return {k: v.clone() for k, v in model.module.state_dict().items()}


def test_checkpoints_safetensors_wrapped_and_prefixed(tmp_path, fresh):
    from safetensors.torch import save_file

    src = fresh("SMALL_CNN", seed=5)
    state = _state(src)
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        m = fresh("SMALL_CNN", checkpoint=tmp_path / name)
        loaded = m.module.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
        assert len(m.checkpoint_sha256) == 64 and m.weights.startswith("checkpoint")


def test_checkpoint_mismatch_names_keys(tmp_path, fresh):
    state = _state(fresh("SMALL_CNN"))
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(1, 2, 3, 3)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        fresh("SMALL_CNN", checkpoint=tmp_path / "bad.pt")
    msg = str(info.value)
    assert "1 missing (e.g. fc.bias)" in msg and "1 unexpected (e.g. extra.weight)" in msg
    assert "conv1.weight (1, 2, 3, 3) vs (64, 3, 7, 7)" in msg and "\n" not in msg


class Sneaky:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_checkpoint_never_unpickles_arbitrary_objects(tmp_path):
    torch.save({"state_dict": collections.OrderedDict(w=torch.zeros(1)), "obj": Sneaky()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        read_state_dict(tmp_path / "evil.pt")


def test_unknown_models_get_close_matches():
    assert known_model("vit_base_patch16_224") is None
    assert known_model("torchvision:resnet50") is None
    assert "did you mean 'vit_base_patch16_224'" in known_model("vit_bse_patch16_224")
    assert "torchvision:resnet50" in known_model("torchvision:resnet5O")
    with pytest.raises(vitaudit.ModelError, match="unknown model"):
        vitaudit.load_model("resnet5O")


def test_offline_pretrained_fails_fast_with_one_sentence(monkeypatch):
    """The hub is made unreachable here (no probe, no connection), so the test runs everywhere."""
    import socket

    import vitaudit.registry

    attempts = []

    def no_network(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(vitaudit.registry, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as info:
        vitaudit.load_model("resnet18.a3_in1k", pretrained=True)
    assert time.perf_counter() - start < 20
    msg = str(info.value)
    assert "resnet18.a3_in1k" in msg and "checkpoint=" in msg and "\n" not in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert attempts == [], f"offline loading must not try the network: {attempts}"


def test_efficientnet_lite0_offline_sees_the_cat():
    """Done-when of the core: the offline ImageNet model predicts a cat on chelsea, Grad-CAM on the cat."""
    from vitaudit.metrics import mass_in
    from vitaudit.regions import Region, rasterize

    model = vitaudit.load_model("efficientnet_lite0", pretrained=True, device="cpu")
    e = vitaudit.explain(model, skimage_image("chelsea"), "gradcam")
    cats = {"tabby, tabby cat", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat, Siamese"}
    assert e.top1[0] in cats
    # The cat's head and chest, drawn by hand on the 451 x 300 photo; the rest is the blurred room.
    cat = rasterize(Region("cat", "polygon", ((0, 0), (330, 0), (400, 60), (400, 300), (0, 300))), (300, 451))
    assert mass_in(e.heatmap, cat) > 0.9 > cat.mean()


def test_weights_files_are_named_and_hashed():
    """The report's environment names each model's weights file and its sha256."""
    import hashlib
    import json

    from vitaudit.registry import fixtures_dir

    m = vitaudit.load_model("fixture:resnet-scenes")
    card = json.loads((fixtures_dir() / "resnet-scenes.json").read_text())
    assert m.checkpoint.endswith("resnet-scenes.safetensors") and m.checkpoint_sha256 == card["sha256"]
    e = vitaudit.load_model("efficientnet_lite0", pretrained=True)
    assert e.checkpoint_sha256 == hashlib.sha256(open(e.checkpoint, "rb").read()).hexdigest()
    assert vitaudit.load_model("resnet18", num_classes=3).checkpoint_sha256 is None  # random init


def test_pil_images_and_torchvision_models():
    from PIL import Image as PILImage

    from vitaudit.layers import target_layer

    pil = PILImage.fromarray(RGB)
    np.testing.assert_array_equal(load_image(pil).to_uint8(), RGB)
    m = vitaudit.load_model("torchvision:resnet18")
    assert m.family == "cnn" and m.num_classes == 1000 and m.labels[281] == "tabby, tabby cat"
    assert m.data_config["mean"] == (0.485, 0.456, 0.406) and target_layer(m).path == "layer4"
    e = vitaudit.explain(m, pil, "gradcam", target="tabby")
    assert e.target == 281 and e.heatmap.shape == RGB.shape[:2]


def test_decompression_bomb_says_the_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from vitaudit.regions import Region, RegionError, rasterize
    from vitaudit.spec import parse_audit_file

    PILImage.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)
    said = ("refused as a possible decompression bomb: 10,000 pixels, over Pillow's limit of 2,000 (twice "
            "PIL.Image.MAX_IMAGE_PIXELS = 1,000); if you trust the file, raise it before the run, e.g. in "
            "conftest.py: PIL.Image.MAX_IMAGE_PIXELS = 400_000_000")
    with pytest.raises(ImageError) as info:
        load_image(tmp_path / "big.png")
    assert str(info.value) == f"{tmp_path / 'big.png'}: {said}"
    with pytest.raises(RegionError) as info:
        rasterize(Region("r", "mask", mask_path=str(tmp_path / "big.png")), (100, 100))
    assert str(info.value) == f"region 'r' mask file {tmp_path / 'big.png'}: {said}"
    audit = tmp_path / "audit_big.yaml"
    audit.write_text("models:\n  m: {name: resnet18}\nimages:\n  b: {path: big.png}\nexpect:\n  - b: m top1 is tabby\n")
    assert parse_audit_file(audit).errors[0].message == f"image file big.png: {said}"


def test_8bit_pictures_stay_uint8_and_give_the_same_model_input():
    """A camera photo is kept as uint8 (a quarter of float32's memory); the model input is bitwise the
    same as from the float pixels, for every interpolation and crop."""
    from vitaudit.images import LoadedImage
    from vitaudit.preprocess import Preprocessing

    arr = np.random.default_rng(3).integers(0, 256, (333, 517, 3), dtype=np.uint8)
    as_uint8, as_float = load_image(arr), LoadedImage(arr.astype(np.float32) / 255.0)
    assert as_uint8.data.dtype == np.uint8 and as_uint8.data.nbytes == arr.nbytes
    np.testing.assert_array_equal(as_uint8.pixels, as_float.pixels)
    np.testing.assert_array_equal(as_uint8.to_uint8(), arr)
    for interpolation in ("bicubic", "bilinear", "nearest"):
        for crop in ("resize", "center"):
            prep = Preprocessing((224, 160), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), interpolation, 0.9, crop)
            (a, ga), (b, gb) = prep(as_uint8), prep(as_float)
            assert torch.equal(a, b) and ga == gb, (interpolation, crop)
