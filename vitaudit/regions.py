"""Named image regions (boxes, polygons, masks) and their rasterisation to boolean masks.

Coordinates are in pixels of the *original* image (x to the right, y down), or fractions of
its width/height when ``units == "fraction"``. A region is rasterised at the original
image's size, where ``Explanation.heatmap`` lives, or at a working resolution below it
(``Explanation.working``), with the same coordinates scaled.

Coordinates name pixel *edges*: pixel ``(col j, row i)`` covers ``[j, j+1) x [i, i+1)``, so
the whole image is ``[0, W] x [0, H]``, the box ``((0, 0), (W, H))`` and the polygon with the
same four corners cover the same pixels, and fraction ``1.0`` is the right/bottom edge.
A region that reaches outside the image or covers no pixel is an error, never clipped.
"""
from __future__ import annotations

import io

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Region:
    """A region as declared in an audit file (or built in Python).

    - ``kind == "box"``: ``points == ((x0, y0), (x1, y1))``, x1/y1 exclusive (like slicing).
    - ``kind == "polygon"``: ``points`` are the vertices ``(x, y)`` in order.
    - ``kind == "mask"``: ``mask_path`` is an image file; non-zero pixels are inside.
    ``file``/``line`` say where it was declared, for error messages. ``store``: the
    :class:`~vitaudit.storage.Store` a ``mask_path`` URI is read with (the declaring image's
    ``storage_options`` and ``cache``); ``None`` reads it with the environment's options only.
    """

    name: str
    kind: Literal["box", "polygon", "mask"]
    points: tuple[tuple[float, float], ...] = ()
    units: Literal["px", "fraction"] = "px"
    mask_path: str | None = None
    file: str = ""
    line: int = 0
    store: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RegionRef:
    """A use of a region in an expectation: the region itself, or its complement (``not R``)."""

    region: Region
    negate: bool = False

    @property
    def label(self) -> str:
        return f"not {self.region.name}" if self.negate else self.region.name


class RegionError(ValueError):
    """A region that cannot be rasterised on this image; one line, ``file:line: `` first."""

    def __init__(self, region: Region | None, message: str) -> None:
        where = ""
        if region is not None and region.file:
            where = f"{region.file}:{region.line}: " if region.line else f"{region.file}: "
        super().__init__(where + " ".join(str(message).split()))
        self.region = region


def _err(region: Region, what: str) -> RegionError:
    """``RegionError`` saying ``region '<name>' <what>``."""
    return RegionError(region, f"region '{region.name}' {what}")


def _num(v: float) -> str:
    """A coordinate as the user wrote it: ``40`` not ``40.0``."""
    f = float(v)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def _round_edge(v: float) -> int:
    """Round to the nearest pixel edge, halves up (Python's ``round`` would go to even)."""
    return int(math.floor(v + 0.5))


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (height, width), got {size!r}")
    return h, w


def _points(region: Region, what: str) -> list[tuple[float, float]]:
    """The region's points as floats; non-numbers and NaN/inf are errors."""
    pts: list[tuple[float, float]] = []
    for p in region.points:
        try:
            x, y = (float(c) for c in p)
        except (TypeError, ValueError):
            raise _err(region, f"{what} has a point {p!r} that is not (x, y) numbers") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise _err(region, f"{what} has a non-finite point ({_num(x)}, {_num(y)})")
        pts.append((x, y))
    return pts


def _check_inside(region: Region, desc: str, x: float, y: float, h: int, w: int) -> None:
    """Raise if (x, y) in the region's units lies outside the image; say which edge and why."""
    frac = region.units == "fraction"
    lim_x, lim_y = (1.0, 1.0) if frac else (float(w), float(h))
    unit_x = "(fractions must lie in [0, 1])" if frac else f"(width {w})"
    unit_y = "(fractions must lie in [0, 1])" if frac else f"(height {h})"
    if x < 0:
        raise _err(region, f"{desc} extends past the image's left edge (x = {_num(x)} < 0)")
    if y < 0:
        raise _err(region, f"{desc} extends past the image's top edge (y = {_num(y)} < 0)")
    if x > lim_x:
        raise _err(region, f"{desc} extends past the image's right edge {unit_x}")
    if y > lim_y:
        raise _err(region, f"{desc} extends past the image's bottom edge {unit_y}")


def _units(region: Region) -> str:
    if region.units not in ("px", "fraction"):
        raise _err(region, f"has unknown units {region.units!r} (use 'px' or 'fraction')")
    return "" if region.units == "px" else " (fractions)"


def _box(region: Region, h: int, w: int, rh: int, rw: int) -> np.ndarray:
    pts = _points(region, "box")
    if len(pts) != 2:
        raise _err(region, f"box needs 2 corners ((x0, y0), (x1, y1)), got {len(pts)}")
    (x0, y0), (x1, y1) = pts
    desc = f"box [{', '.join(_num(v) for v in (x0, y0, x1, y1))}]{_units(region)}"
    if x1 <= x0:
        raise _err(region, f"{desc} has x1 <= x0 (x1 is exclusive, so it must be greater)")
    if y1 <= y0:
        raise _err(region, f"{desc} has y1 <= y0 (y1 is exclusive, so it must be greater)")
    for x, y in ((x0, y0), (x1, y1)):
        _check_inside(region, desc, x, y, h, w)
    sx, sy = (w, h) if region.units == "fraction" else (1, 1)
    c0, r0, c1, r1 = (_round_edge(x0 * sx), _round_edge(y0 * sy), _round_edge(x1 * sx), _round_edge(y1 * sy))
    if c1 <= c0 or r1 <= r0:
        raise _err(region, f"{desc} covers no pixel once rounded to pixel edges "
                                  f"[{c0}, {r0}, {c1}, {r1}] on a {w}x{h} image")
    if (rh, rw) != (h, w):  # the same edges at the working resolution; never thinner than a pixel
        kx, ky = rw / w, rh / h
        c0, r0 = min(_round_edge(c0 * kx), rw - 1), min(_round_edge(r0 * ky), rh - 1)
        c1, r1 = max(_round_edge(c1 * kx), c0 + 1), max(_round_edge(r1 * ky), r0 + 1)
    mask = np.zeros((rh, rw), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def _polygon(region: Region, h: int, w: int, rh: int, rw: int) -> np.ndarray:
    from skimage.draw import polygon2mask

    pts = _points(region, "polygon")
    units = _units(region)
    if len(pts) < 3:
        raise _err(region, f"polygon needs at least 3 vertices, got {len(pts)}")
    for x, y in pts:
        _check_inside(region, f"polygon vertex ({_num(x)}, {_num(y)}){units}", x, y, h, w)
    sx, sy = (w, h) if region.units == "fraction" else (1, 1)
    # polygon2mask takes (row, col) and tests pixel *centres*, which sit at edge + 0.5.
    rc = np.array([(y * sy - 0.5, x * sx - 0.5) for x, y in pts], dtype=np.float64)
    mask = polygon2mask((h, w), rc) if (rh, rw) == (h, w) else None
    if mask is None:  # at the working resolution: the vertices scaled, the same centre rule
        kx, ky = rw / w, rh / h
        scaled = np.array([(y * sy * ky - 0.5, x * sx * kx - 0.5) for x, y in pts], dtype=np.float64)
        mask = polygon2mask((rh, rw), scaled)
        if not mask.any() and polygon2mask((h, w), rc).any():  # thinner than a working pixel
            r, c = np.clip(np.rint(scaled.mean(axis=0)).astype(int), 0, [rh - 1, rw - 1])
            mask[r, c] = True
    if not mask.any():
        raise _err(region, f"polygon with {len(pts)} vertices{units} covers no pixel "
                                  f"centre on a {w}x{h} image")
    return mask


def _mask_path(region: Region) -> Path:
    """``mask_path`` as given, else relative to the audit file that declared it."""
    p = Path(str(region.mask_path))
    if p.is_absolute() or p.exists() or not region.file:
        return p
    beside = Path(region.file).parent / p
    return beside if beside.exists() else p


def _pil_mask(source: Any) -> np.ndarray:
    """Where a mask image (a path or a file object) is non-zero, EXIF orientation applied."""
    from PIL import Image, ImageOps

    with Image.open(source) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("1", "L", "I", "F") or im.mode.startswith("I;16"):
            return np.asarray(im) != 0
        # colour/palette/alpha: alpha 0 is outside, else any non-zero colour channel;
        # a shape drawn in black on transparency is its opaque part
        rgba = np.asarray(im.convert("RGBA"))
        alpha = rgba[..., 3] != 0
        inside = alpha & (rgba[..., :3] != 0).any(axis=-1)
        if not inside.any() and not alpha.all():
            inside = alpha
        return inside


def _mask(region: Region, h: int, w: int, rh: int, rw: int, data: bytes | None = None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not region.mask_path:
        raise _err(region, "is a mask but has no mask file")
    from . import plain_png
    from .storage import is_uri, read_bytes

    path: object = region.mask_path if is_uri(region.mask_path) else _mask_path(region)
    try:
        if data is None and is_uri(region.mask_path):
            data = read_bytes(region.mask_path, region.store)
        plain = plain_png.decode(data if data is not None else Path(str(path)))
        if plain is not None:  # a plain 8-bit grey or RGB PNG, no EXIF: what _pil_mask finds, sooner
            inside = plain != 0 if plain.ndim == 2 else (plain != 0).any(axis=-1)
        else:
            inside = _pil_mask(io.BytesIO(data) if data is not None else path)
    except FileNotFoundError:
        raise _err(region, f"mask file {path} does not exist") from None
    except Image.DecompressionBombError as e:
        from .images import too_many_pixels

        raise _err(region, f"mask file {path}: {too_many_pixels(e)}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise _err(region, f"mask file {path} cannot be read as an image ({e})") from None
    mh, mw = inside.shape[:2]
    if (mh, mw) != (h, w):
        raise _err(region, f"mask {path} is {mw}x{mh} (WxH) but the image is {w}x{h}; "
                                  f"a mask must have exactly the image's size")
    if not inside.any():
        raise _err(region, f"mask {path} has no non-zero pixel")
    if (rh, rw) != (h, w):  # a working pixel is inside when at least half of what it covers is
        import cv2

        share = cv2.resize(inside.astype(np.float32), (rw, rh), interpolation=cv2.INTER_AREA)
        inside = share >= 0.5 if (share >= 0.5).any() else share == share.max()
    return inside


def rasterize(region: Region, size: tuple[int, int], *, image_size: tuple[int, int] | None = None,
              data: bytes | None = None) -> np.ndarray:
    """Boolean (H, W) mask of ``region`` on an image of ``size == (H, W)``.

    Boxes: ``[x0, x1) x [y0, y1)``; fractions are scaled by W/H and rounded to the nearest
    pixel edge (halves up). Polygons: a pixel is inside when its centre is (scikit-image's
    ``polygon2mask``; centres on the outline count). Masks: any PIL image of exactly the
    image's size, EXIF orientation applied, non-zero inside (alpha 0 counts as outside).
    Raises :class:`RegionError` for regions outside the image, empty, or malformed.

    ``image_size``: the original image's (H, W) when ``size`` is a working resolution below
    it; the region is checked against the original, then drawn at ``size`` (its edges and
    vertices scaled; a mask pixel is inside when half the pixels it covers are).

    ``data``: a mask's encoded bytes, already fetched (a table cell, a tar member, an object
    read with a dataset's storage options); ``mask_path`` then only names it. A ``mask_path``
    that is a URI is otherwise read with default storage options.
    """
    rh, rw = _check_size(size)
    h, w = _check_size(image_size) if image_size is not None else (rh, rw)
    if region.kind == "box":
        return _box(region, h, w, rh, rw)
    if region.kind == "polygon":
        return _polygon(region, h, w, rh, rw)
    if region.kind == "mask":
        return _mask(region, h, w, rh, rw, data)
    raise _err(region, f"has unknown kind {region.kind!r} (use box, polygon or mask)")


def rasterize_ref(ref: RegionRef, size: tuple[int, int], *, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """The mask of ``ref.region``, or its complement when ``ref.negate`` (``not R``).

    A complement that covers no pixel (the region is the whole image) is a RegionError too.
    """
    mask = rasterize(ref.region, size, image_size=image_size)
    if not ref.negate:
        return mask
    comp = ~mask
    if not comp.any():
        name = ref.region.name
        raise RegionError(ref.region, f"region 'not {name}' is empty: '{name}' covers the whole image")
    return comp


def outline(mask: np.ndarray) -> np.ndarray:
    """Boolean mask of the region's boundary pixels (inside the region), for overlays.

    Pixels on the image border count as boundary too, so a region touching the edge is
    still drawn closed.
    """
    from skimage.segmentation import find_boundaries

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"outline needs a 2-D mask, got shape {m.shape}")
    padded = np.pad(m, 1, constant_values=False)
    return find_boundaries(padded, mode="inner")[1:-1, 1:-1] & m
