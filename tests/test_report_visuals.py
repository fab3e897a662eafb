"""The report's picture helpers: colours mean what the legend says, NaN is visible, sizes hold."""
from __future__ import annotations

import base64
import io
import time

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from vitaudit.report.visuals import diff_image, draw_outline, encode, layer_head_mosaic, overlay


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    return data.chelsea()  # 300 x 451 x 3


def _decode(uri: str) -> Image.Image:
    head, b64 = uri.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))


def _is_grey(px: np.ndarray, tol: int = 3) -> bool:
    px = px.astype(int)
    return bool(np.all(np.abs(px - px.mean(axis=-1, keepdims=True)) <= tol))


def test_overlay_uses_jet_hot_is_red_cold_is_blue(cat):
    h, w = cat.shape[:2]
    hm = np.zeros((h, w), np.float32)
    hm[:, w // 2 :] = 1.0
    before = cat.copy()
    out = overlay(cat, hm, alpha=0.9)
    assert out.shape == cat.shape and out.dtype == np.uint8
    hot, cold = out[:, w // 2 + 5 :].reshape(-1, 3).mean(0), out[:, : w // 2 - 5].reshape(-1, 3).mean(0)
    assert hot[0] > hot[2] + 60  # red end of JET
    assert cold[2] > cold[0] + 60  # blue end of JET
    np.testing.assert_array_equal(cat, before)  # input untouched


def test_overlay_alpha_zero_is_the_photo_where_seen(cat):
    hm = np.random.default_rng(0).random(cat.shape[:2]).astype(np.float32)
    np.testing.assert_array_equal(overlay(cat, hm, alpha=0.0), cat)


def test_overlay_shows_unseen_pixels_as_grey_hatching_not_blue(cat):
    h, w = cat.shape[:2]
    hm = np.zeros((h, w), np.float32)
    hm[:, :100] = np.nan
    out = overlay(cat, hm)
    unseen = out[:, :100]
    assert _is_grey(unseen.reshape(-1, 3))  # no colour of the scale
    levels = np.unique(unseen[..., 0])
    assert levels.max() - levels.min() > 40  # stripes, not a flat fill that could read as a value
    seen_zero = out[:, 150:].reshape(-1, 3)
    assert not _is_grey(seen_zero, tol=20)  # a real zero is still blue: the two differ
    assert seen_zero[:, 2].mean() > seen_zero[:, 0].mean() + 20


def test_overlay_resizes_a_map_of_another_size_and_keeps_nan(cat):
    small = np.zeros((30, 45), np.float32)
    small[:, :10] = np.nan
    out = overlay(cat, small)
    assert out.shape == cat.shape
    assert _is_grey(out[:, :80].reshape(-1, 3))
    assert not _is_grey(out[:, 200:].reshape(-1, 3))


def test_overlay_accepts_grey_and_rgba():
    grey = data.camera()[:64, :64]
    assert overlay(grey, np.full((64, 64), 0.5, np.float32)).shape == (64, 64, 3)
    rgba = np.dstack([data.astronaut()[:32, :32], np.full((32, 32), 255, np.uint8)])
    assert overlay(rgba, np.zeros((32, 32), np.float32)).shape == (32, 32, 3)


def test_draw_outline_marks_the_boundary_only(cat):
    h, w = cat.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[50:250, 100:350] = True
    out = draw_outline(cat, mask, color=(255, 255, 0))
    assert out is not cat and out.shape == cat.shape
    assert tuple(out[50, 200]) == (255, 255, 0)  # on the top edge
    assert tuple(out[150, 100]) == (255, 255, 0)  # on the left edge
    np.testing.assert_array_equal(out[150, 200], cat[150, 200])  # well inside: untouched
    np.testing.assert_array_equal(out[5, 5], cat[5, 5])  # well outside: untouched


def test_draw_outline_survives_downscaling_to_report_size():
    img = np.zeros((1200, 1600, 3), np.uint8)
    mask = np.zeros((1200, 1600), bool)
    mask[300:900, 400:1200] = True
    out = draw_outline(img, mask)
    small = cv2.resize(out, (384, 288), interpolation=cv2.INTER_AREA)
    edge_row = small[72, 110:280]  # the top edge at 1/4.17 scale
    assert edge_row.min() > 150  # still a clearly visible line after shrinking


def test_draw_outline_empty_mask_is_an_unchanged_copy(cat):
    out = draw_outline(cat, np.zeros(cat.shape[:2], bool))
    np.testing.assert_array_equal(out, cat)
    assert out is not cat


def test_diff_image_red_is_higher_blue_is_lower_white_is_same():
    a = np.full((40, 60), 0.5, np.float32)
    b = a.copy()
    b[:, :20] = 1.0  # current higher
    b[:, 40:] = 0.0  # current lower
    out = diff_image(a, b)
    higher, same, lower = out[:, :20].mean((0, 1)), out[:, 20:40].mean((0, 1)), out[:, 40:].mean((0, 1))
    assert higher[0] > higher[2] + 80
    assert lower[2] > lower[0] + 80
    assert same.min() > 230


def test_diff_image_scale_and_nan():
    a = np.zeros((20, 20), np.float32)
    b = np.full((20, 20), 0.05, np.float32)
    b[:5] = np.nan
    fixed, stretched = diff_image(a, b), diff_image(a, b, scale=None)
    assert fixed[10:, :].mean() > stretched[10:, :].mean()  # a small change is pale on the absolute scale
    r, g, b = stretched[10, 10].astype(int)
    assert r > b + 50 and g < 20  # and the darkest red when stretched
    assert _is_grey(fixed[:5].reshape(-1, 3))


def test_layer_head_mosaic_layout_and_separators():
    rng = np.random.default_rng(0)
    att = rng.random((12, 12, 14, 14)).astype(np.float32)
    m = layer_head_mosaic(att, tile=30, sep=2)
    assert m.shape == (12 * 30 + 11 * 2, 12 * 30 + 11 * 2, 3) and m.dtype == np.uint8
    assert (m[30:32, :] == 255).all() and (m[:, 30:32] == 255).all()  # white separators
    default = layer_head_mosaic(att)
    tile = (default.shape[1] - 11 * 2) / 12
    assert 24 <= tile <= 48


def test_layer_head_mosaic_normalises_each_tile_on_its_own():
    rng = np.random.default_rng(1)
    base = rng.random((14, 14)).astype(np.float32)
    att = np.stack([base, base * 1e-4, base * 50 + 3])[None]  # same pattern, very different levels
    m = layer_head_mosaic(att, tile=28, sep=2)
    np.testing.assert_array_equal(m[:, :28], m[:, 30:58])
    np.testing.assert_array_equal(m[:, :28], m[:, 60:88])


def test_layer_head_mosaic_nan_and_flat_tiles():
    att = np.ones((2, 2, 7, 7), np.float32)
    att[0, 0] = np.nan
    m = layer_head_mosaic(att, tile=24, sep=2)
    assert _is_grey(m[:24, :24].reshape(-1, 3))  # unseen: grey
    assert not _is_grey(m[26:, 26:].reshape(-1, 3))  # flat: lowest colour of the map, not grey
    with pytest.raises(ValueError):
        layer_head_mosaic(np.zeros((12, 14, 14)))


@pytest.mark.parametrize("fmt,mime", [("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")])
def test_encode_data_uri_downscales_keeping_aspect(cat, fmt, mime):
    uri = encode(cat, max_side=200, fmt=fmt, quality=80)
    assert uri.startswith(f"data:{mime};base64,")
    im = _decode(uri)
    assert im.format.lower() == {"jpeg": "jpeg", "webp": "webp", "png": "png"}[fmt]
    assert max(im.size) == 200
    assert abs(im.size[0] / im.size[1] - 451 / 300) < 0.02


def test_encode_never_enlarges_and_png_is_lossless():
    small = data.astronaut()[:50, :70]
    im = _decode(encode(small, max_side=384, fmt="png"))
    assert im.size == (70, 50)
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), small)


def test_encode_quality_trades_size_and_rejects_unknown_formats(cat):
    assert len(encode(cat, fmt="jpeg", quality=40)) < len(encode(cat, fmt="jpeg", quality=95))
    with pytest.raises(ValueError):
        encode(cat, fmt="gif")  # type: ignore[arg-type]


def test_per_expectation_pictures_are_fast():
    """The plugin calls these per expectation in the workers: a few ms each, not hundreds."""
    img = data.astronaut()
    rng = np.random.default_rng(0)
    hm = cv2.GaussianBlur(rng.random((512, 512)).astype(np.float32), (0, 0), 20)
    hm = (hm - hm.min()) / (hm.max() - hm.min())
    hm[:, :60] = np.nan
    mask = np.zeros((512, 512), bool)
    mask[100:300, 150:350] = True
    encode(draw_outline(overlay(img, hm), mask))  # warm up
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        encode(draw_outline(overlay(img, hm), mask))
        times.append(time.perf_counter() - t0)
    assert sorted(times)[3] < 0.05, f"overlay+outline+encode median {sorted(times)[3] * 1e3:.1f} ms"


def test_outline_layer_is_the_outline_alone_on_transparency():
    import base64
    import io

    from PIL import Image

    from vitaudit.report.visuals import draw_outline, outline_layer

    mask = np.zeros((40, 60), bool)
    mask[10:30, 15:45] = True
    uri = outline_layer(mask, (40, 60))
    assert uri.startswith("data:image/png;base64,")
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("LA"))
    assert img.shape == (40, 60, 2)
    drawn = draw_outline(np.zeros((40, 60, 3), np.uint8), mask)
    assert np.array_equal(img[..., 1] > 0, (drawn > 0).any(axis=-1))  # opaque exactly where drawn
    assert img[20, 30, 1] == 0 and img[0, 0, 1] == 0  # inside and far outside: transparent
