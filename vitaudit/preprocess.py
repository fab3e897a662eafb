"""Turning an image into a model input with the model's own data config, and maps back.

The data config (mean, std, input size, interpolation, crop_pct) is the model's own, resolved
once at load time by timm's ``resolve_data_config``: the seed notebook normalised ResNet-50
inputs with the ViT's (0.5, 0.5) statistics, which is wrong for torchvision's ResNet-50.

Geometry: by default the *whole* image is resized to the input size, so every pixel of the
photo is explained and regions drawn on the original map exactly. ``crop="center"`` follows
timm's evaluation transform (resize the short side to size / crop_pct, centre crop); the
part of the map outside the crop is NaN ("not seen"), never zero.
"""
from __future__ import annotations

from functools import lru_cache

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .images import LoadedImage

Crop = Literal["resize", "center"]

_INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
    "lanczos": InterpolationMode.LANCZOS,
}


@dataclass(frozen=True)
class Geometry:
    """Where the model's input lies on the original image.

    The input (``input_hw``) shows the original rectangle ``[x0, x1) x [y0, y1)`` (floats, in
    original pixels); ``image_hw`` is the original size.
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def full(self) -> bool:
        """True when the model saw the whole image."""
        h, w = self.image_hw
        return self.x0 <= 0 and self.y0 <= 0 and self.x1 >= w and self.y1 >= h


@dataclass(frozen=True)
class Preprocessing:
    """A model's input transform, resolved once (hashable: it is part of the cache key)."""

    input_hw: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    crop: Crop = "resize"

    @classmethod
    def from_data_config(cls, cfg: dict[str, Any], crop: Crop = "resize") -> "Preprocessing":
        if crop not in ("resize", "center"):
            raise ValueError(f"crop must be 'resize' or 'center', not {crop!r}")
        _, h, w = cfg["input_size"]
        return cls(
            input_hw=(int(h), int(w)),
            mean=tuple(float(m) for m in cfg["mean"]),
            std=tuple(float(s) for s in cfg["std"]),
            interpolation=str(cfg.get("interpolation", "bicubic")),
            crop_pct=float(cfg.get("crop_pct", 0.875) or 1.0),
            crop=crop,
        )

    def geometry(self, image_hw: tuple[int, int]) -> Geometry:
        """Where the input lies on an image of size ``image_hw``."""
        H, W = image_hw
        h, w = self.input_hw
        if self.crop == "resize":
            return Geometry(image_hw, self.input_hw, 0.0, 0.0, float(W), float(H))
        rh, rw = self._resized_hw(image_hw)
        top = int(round((rh - h) / 2.0))
        left = int(round((rw - w) / 2.0))
        sy, sx = H / rh, W / rw
        return Geometry(image_hw, self.input_hw, left * sx, top * sy, (left + w) * sx, (top + h) * sy)

    def _resized_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The size the image is resized to before a centre crop (timm's eval transform)."""
        H, W = image_hw
        h, w = self.input_hw
        if h == w:
            short = math.floor(h / self.crop_pct)
            if H <= W:
                return short, max(short, int(short * W / H))
            return max(short, int(short * H / W)), short
        return math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)

    def __call__(self, image: LoadedImage) -> tuple[torch.Tensor, Geometry]:
        """The normalised input tensor (3, h, w) and its geometry on the original image."""
        mode = _INTERPOLATION.get(self.interpolation, InterpolationMode.BICUBIC)
        size = list(self.input_hw) if self.crop == "resize" else list(self._resized_hw(image.size))
        if image.data.dtype == np.uint8:
            # one channel at a time, converted to float as it goes: the same values as
            # resizing ``image.pixels``, without a float copy of the whole photo
            with warnings.catch_warnings():  # Pillow's arrays are read-only; torch only reads them here
                warnings.filterwarnings("ignore", "The given NumPy array is not writable")
                channels = [torch.from_numpy(image.data[None, :, :, c]) for c in range(3)]
            x = torch.cat([TF.resize(ch.to(torch.float32).div_(255.0), size, interpolation=mode, antialias=True)
                           for ch in channels])
        else:
            x = TF.resize(torch.from_numpy(image.data).permute(2, 0, 1), size, interpolation=mode, antialias=True)
        if self.crop != "resize":
            x = TF.center_crop(x, list(self.input_hw))
        x = x.clamp_(0.0, 1.0)  # bicubic overshoots; PIL's uint8 pipeline clamps too
        mean = torch.tensor(self.mean, dtype=x.dtype)[:, None, None]
        std = torch.tensor(self.std, dtype=x.dtype)[:, None, None]
        return (x - mean) / std, self.geometry(image.size)


@lru_cache(maxsize=256)
def _axis_weights(n_out: int, lo: float, hi: float, n_grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear-interpolation weights (n_out, n_grid) mapping grid cells onto output pixels (read-only:
    kept per geometry, since every image of a dataset usually shares one).

    Output pixel ``i`` (centre ``i + 0.5``) inside ``[lo, hi)`` samples the grid at
    ``(i + 0.5 - lo) / (hi - lo) * n_grid - 0.5`` (half-pixel centres, edges clamped; the same
    convention as ``cv2.resize`` and ``align_corners=False``). Pixels outside are flagged.
    """
    centres = np.arange(n_out, dtype=np.float64) + 0.5
    inside = (centres >= lo) & (centres < hi)
    pos = (centres - lo) / (hi - lo) * n_grid - 0.5
    pos = np.clip(pos, 0.0, n_grid - 1)
    left = np.floor(pos).astype(np.int64)
    right = np.minimum(left + 1, n_grid - 1)
    frac = pos - left
    weights = np.zeros((n_out, n_grid), dtype=np.float64)
    rows = np.arange(n_out)
    weights[rows, left] = 1.0 - frac
    weights[rows, right] += frac  # at the clamped last cell left == right and the weights add to 1
    weights.flags.writeable = False
    inside.flags.writeable = False
    return weights, inside


def upsample_map(grid: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Bilinearly resample a (gh, gw) map onto the original image; NaN where the model saw nothing."""
    H, W = geometry.image_hw
    gh, gw = grid.shape
    wy, in_y = _axis_weights(H, geometry.y0, geometry.y1, gh)
    wx, in_x = _axis_weights(W, geometry.x0, geometry.x1, gw)
    out = (wy @ grid.astype(np.float64)).astype(np.float32) @ wx.T.astype(np.float32)
    if not (in_y.all() and in_x.all()):
        out[~in_y, :] = np.nan
        out[:, ~in_x] = np.nan
    return out


def map_to_input(grid: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Resample a (gh, gw) map onto the model input's pixels (for faithfulness curves)."""
    h, w = input_hw
    return upsample_map(grid, Geometry((h, w), (h, w), 0.0, 0.0, float(w), float(h)))
