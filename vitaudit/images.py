"""Reading images from paths, PIL images and numpy arrays into one canonical form.

Everything becomes an RGB array of the image's own size (H, W, 3) (uint8 for 8-bit pictures,
else float32 in [0, 1]; ``pixels`` is always float32), with EXIF orientation applied, so that regions drawn on the photo and every explanation map
share one pixel grid. A content hash identifies the pixels for the explanation cache.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import plain_png
from .storage import Store, is_uri

ImageLike = Union[str, Path, Image.Image, np.ndarray, "LoadedImage"]


class ImageError(ValueError):
    """An image that cannot be read or understood (one-line message)."""


@dataclass(eq=False)
class LoadedImage:
    """An RGB image of shape (H, W, 3) and where it came from.

    ``data`` holds it as decoded: uint8 for 8-bit pictures (a quarter of the memory: a
    48-megapixel photo is 144 MB, not 576 MB), else float32 in [0, 1]. ``pixels`` is always
    float32 in [0, 1]; for uint8 data it is computed on each access, not kept.
    """

    data: np.ndarray
    source: str = "<array>"
    _digest: str | None = field(default=None, repr=False)

    @property
    def pixels(self) -> np.ndarray:
        """float32 (H, W, 3) in [0, 1]."""
        if self.data.dtype == np.uint8:
            return self.data.astype(np.float32) / 255.0
        return self.data

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the original image."""
        return int(self.data.shape[0]), int(self.data.shape[1])

    @property
    def digest(self) -> str:
        """A hash of the pixel content (not of the file), so the same picture read twice is cached once."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(f"{self.data.shape} {self.data.dtype}".encode())
            h.update(np.ascontiguousarray(self.data).data)
            self._digest = h.hexdigest()
        return self._digest

    def to_uint8(self) -> np.ndarray:
        """The picture as uint8 RGB, for overlays (computed once; do not modify it)."""
        cached = self.__dict__.get("_uint8")
        if cached is None:
            if self.data.dtype == np.uint8:
                cached = self.data.view()
            else:
                cached = np.clip(np.rint(self.data * 255.0), 0, 255).astype(np.uint8)
            cached.flags.writeable = False
            self.__dict__["_uint8"] = cached
        return cached


def load_image(image: ImageLike, store: "Store | None" = None) -> LoadedImage:
    """Read ``image`` (a path, a URI such as ``s3://bucket/a.png`` read with ``store``'s options,
    PIL image, numpy array or LoadedImage) into a LoadedImage."""
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, str) and is_uri(image):
        return LoadedImage(_read_uri(image, store), source=image)
    if isinstance(image, (str, Path)):
        return LoadedImage(_read_path(Path(image)), source=str(image))
    if isinstance(image, Image.Image):
        return LoadedImage(_from_pil(ImageOps.exif_transpose(image)), source="<PIL image>")
    if isinstance(image, np.ndarray):
        return LoadedImage(_from_array(image), source=f"<array {image.shape} {image.dtype}>")
    raise ImageError(f"cannot read an image from a {type(image).__name__}; pass a path, a PIL image or a numpy array")


def load_image_bytes(data: bytes, source: str) -> LoadedImage:
    """Decode an image held in memory (a table cell, a tar member); ``source`` names it in errors."""
    return LoadedImage(_decode(io.BytesIO(data), source), source=source)


def _read_uri(uri: str, store: "Store | None") -> np.ndarray:
    try:
        data = (store or Store()).read(uri)
    except FileNotFoundError:
        raise ImageError(f"image object not found: {uri}") from None
    except (IsADirectoryError, NotADirectoryError):
        raise ImageError(f"expected an image object, got a folder: {uri}") from None
    except OSError as exc:  # StorageError (unreachable, backend missing), PermissionError
        raise ImageError(f"cannot read image {uri}: {exc}") from None
    return _decode(io.BytesIO(data), uri)


def _read_path(path: Path) -> np.ndarray:
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"expected an image file, got a directory: {path}")
    return _decode(path, str(path))


def _decode(fp: "Path | io.BytesIO", path: str) -> np.ndarray:
    try:
        if isinstance(fp, Path):
            plain = plain_png.decode(fp)
        else:
            with fp.getbuffer() as buf:
                plain = plain_png.decode(buf)
        if plain is not None:  # a plain 8-bit PNG: Pillow's pixels, decoded by OpenCV
            return _gray_to_rgb(plain) if plain.ndim == 2 else plain
        with Image.open(fp) as im:
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # no copy of a camera photo
            return _from_pil(im)
    except UnidentifiedImageError:
        raise ImageError(f"not an image file (or a format Pillow cannot read): {path}") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: {too_many_pixels(exc)}") from None
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None


def too_many_pixels(exc: Exception) -> str:
    """One line for Pillow's ``DecompressionBombError``: the limit that was hit and how to raise it."""
    import re

    limit = Image.MAX_IMAGE_PIXELS or 0
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)):,} pixels" if found else str(exc).split(",")[0]
    return (f"refused as a possible decompression bomb: {size}, over Pillow's limit of {2 * limit:,} "
            f"(twice PIL.Image.MAX_IMAGE_PIXELS = {limit:,}); if you trust the file, raise it before the run, "
            f"e.g. in conftest.py: PIL.Image.MAX_IMAGE_PIXELS = {max(4 * limit, 400_000_000):_}")


def _from_pil(im: Image.Image) -> np.ndarray:
    """Convert any PIL mode to RGB: uint8 for 8-bit modes, float in [0, 1] keeping 16-bit precision."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im, dtype=np.uint16).astype(np.float32) / 65535.0
        return _gray_to_rgb(arr)
    if im.mode == "I":  # 32-bit integer; PNG stores 16-bit grey like this
        arr = np.asarray(im, dtype=np.int64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return _gray_to_rgb(np.clip(arr / top, 0.0, 1.0).astype(np.float32))
    if im.mode == "F":
        return _from_array(np.asarray(im, dtype=np.float32))
    if im.mode not in ("RGB", "L"):
        # Alpha is dropped, as timm's and torchvision's loaders do (`convert("RGB")`).
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)  # kept as uint8: see LoadedImage.data
    return _gray_to_rgb(arr) if arr.ndim == 2 else np.ascontiguousarray(arr)


def _from_array(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"expected an array of shape HxW, HxWx3 or HxWx4, got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"empty image of shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]  # alpha dropped, as for files
    if arr.dtype == np.uint8:
        out = arr  # kept as uint8: see LoadedImage.data
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.all(np.isfinite(out)):
            raise ImageError("float image contains NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(f"float images must hold values in [0, 1]; this one spans [{lo:.3g}, {hi:.3g}]")
    else:
        raise ImageError(f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    return _gray_to_rgb(out) if out.ndim == 2 else np.ascontiguousarray(out)


def _gray_to_rgb(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))


def skimage_image(name: str) -> LoadedImage:
    """A photo bundled with scikit-image: ``skimage.data.<name>()`` or a file in its data folder."""
    from skimage import data

    bundled = sorted(p.name for p in Path(data.data_dir).iterdir() if p.suffix in (".png", ".jpg"))
    loader = getattr(data, name, None)
    if callable(loader) and name not in ("data_dir", "download_all", "file_hash"):
        try:
            arr = loader()
        except Exception as exc:  # e.g. a dataset that must be downloaded
            raise ImageError(f"skimage.data.{name}() is not available offline: {exc}") from None
        if isinstance(arr, tuple):
            arr = arr[0]
        return LoadedImage(_from_array(np.asarray(arr)), source=f"skimage:{name}")
    path = Path(data.data_dir) / name
    if path.is_file():
        return LoadedImage(_read_path(path), source=f"skimage:{name}")
    import difflib

    names = [n for n in dir(data) if not n.startswith("_")] + bundled
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ImageError(f"scikit-image has no bundled image {name!r}{hint}")
