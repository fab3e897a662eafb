"""The result of explaining one image with one method: a map on the original image, and the prediction."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .preprocess import Geometry, upsample_map

#: The longest side of the working resolution: metrics, masks and report pictures are computed
#: on maps at most this large (a 48-megapixel photo's map is 1024 x 768, not 8000 x 6000).
DEFAULT_MAX_SIDE = 1024


def working_size(image_hw: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(h, w) of the working resolution: ``image_hw`` scaled so its longest side is at most ``max_side``.

    ``None`` or 0: the original size. The aspect ratio is kept (each side rounded, at least 1).
    """
    H, W = image_hw
    if not max_side or max(H, W) <= max_side:
        return H, W
    s = max_side / max(H, W)
    return max(1, round(H * s)), max(1, round(W * s))


def scaled_geometry(geometry: Geometry, size: tuple[int, int]) -> Geometry:
    """``geometry`` on the image resampled to ``size == (h, w)``."""
    H, W = geometry.image_hw
    h, w = size
    sx, sy = w / W, h / H
    return Geometry((h, w), geometry.input_hw, geometry.x0 * sx, geometry.y0 * sy, geometry.x1 * sx, geometry.y1 * sy)


@dataclass(eq=False)
class Explanation:
    """One method's explanation of one prediction.

    ``grid`` is the map at the model's own resolution (patches, or the feature map), scaled
    by its maximum into [0, 1] so that ratios (and so every mass metric) are kept; ``raw``
    is the same before scaling. ``heatmap`` is ``grid`` resampled onto the original image
    (NaN where the model saw nothing, e.g. outside a centre crop), computed on first use.
    ``working`` is the same resampling at the working resolution (longest side at most
    ``max_side``; metrics, masks and pictures use it), so a camera photo never needs a map
    of its full size. A map with no signal (all zeros) stays zeros and sets ``no_signal``,
    never NaN.
    """

    method: str
    model_name: str
    target: int
    target_label: str
    probs: np.ndarray  # float32 softmax, one per class
    labels: list[str] = field(repr=False)
    raw: np.ndarray = field(repr=False)  # float32 (gh, gw), >= 0
    geometry: Geometry = field(repr=False)
    cls_attention: np.ndarray | None = field(default=None, repr=False)  # (layers, heads, gh, gw) for ViTs
    max_side: int | None = field(default=DEFAULT_MAX_SIDE, repr=False)  # of ``working``; None: full size

    @cached_property
    def grid(self) -> np.ndarray:
        peak = float(self.raw.max()) if self.raw.size else 0.0
        if peak <= 0.0 or not np.isfinite(peak):
            return np.zeros_like(self.raw, dtype=np.float32)
        return (self.raw / peak).astype(np.float32)

    @property
    def no_signal(self) -> bool:
        """True when the map is all zeros: there is nothing to localise."""
        return not bool(np.any(self.raw > 0))

    @cached_property
    def heatmap(self) -> np.ndarray:
        """float32 (H, W) of the original image, values in [0, 1], NaN only where unseen."""
        return np.clip(upsample_map(self.grid, self.geometry), 0.0, 1.0)

    @property
    def working_size(self) -> tuple[int, int]:
        """(h, w) of ``working``."""
        return working_size(self.geometry.image_hw, self.max_side)

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from original pixels to working pixels (1.0 at full resolution)."""
        (H, W), (h, w) = self.geometry.image_hw, self.working_size
        return w / W, h / H

    @property
    def working(self) -> np.ndarray:
        """float32 (h, w) at the working resolution, values in [0, 1], NaN only where unseen.

        The original image's size when it is small enough (then the same array as ``heatmap``).
        """
        size = self.working_size
        if size == self.geometry.image_hw:
            return self.heatmap
        cached = self.__dict__.get("_working")
        if cached is None or cached[0] != size:
            grid = scaled_geometry(self.geometry, size)
            cached = (size, np.clip(upsample_map(self.grid, grid), 0.0, 1.0))
            self.__dict__["_working"] = cached
        return cached[1]

    @cached_property
    def stats(self) -> dict:
        """Summary statistics of ``working`` (min, max, mean, entropy, peak, ...), JSON-friendly.

        ``peak`` is in original pixels (the working peak's centre scaled back).
        """
        from .metrics import map_stats

        stats = map_stats(self.working)
        if stats["peak"] is not None and self.working_size != self.geometry.image_hw:
            sx, sy = self.scale
            stats["peak"] = [int((stats["peak"][0] + 0.5) / sx), int((stats["peak"][1] + 0.5) / sy)]
        return stats

    def topk(self, k: int = 5) -> list[tuple[str, int, float]]:
        """The k most probable classes as (label, index, probability)."""
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.labels[i], int(i), float(self.probs[i])) for i in order]

    @property
    def top1(self) -> tuple[str, int, float]:
        return self.topk(1)[0]
