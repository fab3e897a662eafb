"""Plain 8-bit PNGs decoded by OpenCV give Pillow's pixels; every other PNG goes to Pillow."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from vitaudit import plain_png
from vitaudit.images import ImageError, load_image, load_image_bytes
from vitaudit.regions import Region, RegionError, rasterize

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (37, 53), dtype=np.uint8)


def _png(arr: np.ndarray, palette: bool = False, **save) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(RGB).convert("P") if palette else Image.fromarray(arr)
    im.save(buf, format="PNG", **save)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def _with_chunk(data: bytes, kind: bytes, body: bytes, crc_offset: int = 0) -> bytes:
    """``data`` with a chunk inserted after IHDR (its CRC off by ``crc_offset``)."""
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", (zlib.crc32(kind + body) + crc_offset) & 0xFFFFFFFF)
    return data[:33] + chunk + data[33:]


@pytest.mark.parametrize("arr", [RGB, GREY], ids=["rgb", "grey"])
@pytest.mark.parametrize("save", [{}, {"dpi": (300, 300)}, {"compress_level": 0}, {"optimize": True}],
                         ids=["plain", "phys", "stored", "optimized"])
def test_plain_pngs_decode_to_pillows_pixels(tmp_path, arr, save):
    data = _png(arr, **save)
    (tmp_path / "a.png").write_bytes(data)
    for source in (data, tmp_path / "a.png"):
        got = plain_png.decode(source)
        assert got is not None and got.dtype == np.uint8
        np.testing.assert_array_equal(got, _pillow(data))


def test_many_image_data_chunks(tmp_path):
    big = RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8)  # incompressible: Pillow writes several IDATs
    data = _png(big)
    assert data.count(b"IDAT") > 1
    np.testing.assert_array_equal(plain_png.decode(data), big)


@pytest.mark.parametrize("make", [
    lambda: _png(np.dstack([RGB, GREY])),  # RGBA
    lambda: _png(GREY, transparency=3),  # tRNS
    lambda: _png(np.asarray(Image.fromarray(RGB).convert("P")), palette=True),
    lambda: _png((GREY.astype(np.uint16) * 257)),  # 16-bit
    lambda: _png(RGB, exif=_exif(6)),  # EXIF orientation
    lambda: _png(RGB, pnginfo=_text("Raw profile type exif", "x")),  # text that may carry EXIF
    lambda: _with_chunk(_png(RGB), b"pHYs", b"\0" * 9, crc_offset=1),  # a bad ancillary CRC: Pillow refuses it
    lambda: _png(RGB)[:-20],  # truncated
    lambda: _png(RGB) + b"trailing",
    lambda: b"GIF89a" + b"\0" * 40,
], ids=["rgba", "trns", "palette", "16bit", "exif", "text", "bad-crc", "truncated", "trailing", "gif"])
def test_other_files_go_to_pillow(make):
    assert plain_png.decode(make()) is None


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _text(key: str, value: str) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(key, value)
    return info


def test_pillows_pixel_limit_still_decides(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 37 * 53 - 1)
    assert plain_png.decode(_png(RGB)) is None  # Pillow then warns or refuses, as before
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 37 * 53)
    assert plain_png.decode(_png(RGB)) is not None


def _both_ways(monkeypatch, read):
    """``read()`` with the OpenCV path, then with Pillow alone (what it was)."""
    fast = read()
    monkeypatch.setattr(plain_png, "decode", lambda source: None)
    slow = read()
    monkeypatch.undo()
    return fast, slow


@pytest.mark.parametrize("arr", [RGB, GREY], ids=["rgb", "grey"])
def test_load_image_is_unchanged(tmp_path, monkeypatch, arr):
    data = _png(arr)
    (tmp_path / "a.png").write_bytes(data)
    for read in (lambda: load_image(tmp_path / "a.png"), lambda: load_image_bytes(data, "a.png")):
        fast, slow = _both_ways(monkeypatch, read)
        assert fast.data.dtype == slow.data.dtype == np.uint8 and fast.data.flags.c_contiguous
        np.testing.assert_array_equal(fast.data, slow.data)
        assert fast.digest == slow.digest


def test_a_broken_png_says_what_pillow_says(tmp_path, monkeypatch):
    (tmp_path / "bad.png").write_bytes(_with_chunk(_png(RGB), b"pHYs", b"\0" * 9, crc_offset=1))
    errors = []
    for _ in range(2):
        with pytest.raises(ImageError) as info:
            load_image(tmp_path / "bad.png")
        errors.append(str(info.value))
        monkeypatch.setattr(plain_png, "decode", lambda source: None)
    assert errors[0] == errors[1] and "bad.png" in errors[0]


@pytest.mark.parametrize("mask", [
    np.where(GREY > 128, 255, 0).astype(np.uint8),
    np.where(GREY > 128, 1, 0).astype(np.uint8),
    np.dstack([np.where(GREY > 128, 200, 0), np.zeros_like(GREY), np.where(GREY < 30, 9, 0)]).astype(np.uint8),
], ids=["grey-255", "grey-1", "rgb"])
@pytest.mark.parametrize("size", [(37, 53), (20, 26)], ids=["own-size", "working-size"])
def test_mask_files_are_unchanged(tmp_path, monkeypatch, mask, size):
    (tmp_path / "m.png").write_bytes(_png(mask))
    region = Region("r", "mask", mask_path=str(tmp_path / "m.png"))
    fast, slow = _both_ways(monkeypatch, lambda: rasterize(region, size, image_size=(37, 53)))
    assert fast.dtype == slow.dtype == bool
    np.testing.assert_array_equal(fast, slow)
    data = Path(tmp_path / "m.png").read_bytes()
    fast, slow = _both_ways(monkeypatch, lambda: rasterize(region, size, image_size=(37, 53), data=data))
    np.testing.assert_array_equal(fast, slow)


def test_mask_errors_are_unchanged(tmp_path, monkeypatch):
    (tmp_path / "empty.png").write_bytes(_png(np.zeros((37, 53), np.uint8)))
    for name, size in (("empty.png", (37, 53)), ("empty.png", (10, 10)), ("missing.png", (37, 53))):
        region = Region("r", "mask", mask_path=str(tmp_path / name))
        said = []
        for _ in range(2):
            with pytest.raises(RegionError) as info:
                rasterize(region, size)
            said.append(str(info.value))
            monkeypatch.setattr(plain_png, "decode", lambda source: None)
        monkeypatch.undo()
        assert said[0] == said[1]
