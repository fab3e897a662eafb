"""The result of explaining one image with one method: a map on the original image, and the prediction."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .preprocess import Geometry, upsample_map


@dataclass(eq=False)
class Explanation:
    """One method's explanation of one prediction.

    ``grid`` is the map at the model's own resolution (patches, or the feature map), scaled
    by its maximum into [0, 1] so that ratios (and so every mass metric) are kept; ``raw``
    is the same before scaling. ``heatmap`` is ``grid`` resampled onto the original image
    (NaN where the model saw nothing, e.g. outside a centre crop), computed on first use.
    A map with no signal (all zeros) stays zeros and sets ``no_signal``, never NaN.
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

    @cached_property
    def stats(self) -> dict:
        """Summary statistics of ``heatmap`` (min, max, mean, entropy, peak, ...), JSON-friendly."""
        from .metrics import map_stats

        return map_stats(self.heatmap)

    def topk(self, k: int = 5) -> list[tuple[str, int, float]]:
        """The k most probable classes as (label, index, probability)."""
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.labels[i], int(i), float(self.probs[i])) for i in order]

    @property
    def top1(self) -> tuple[str, int, float]:
        return self.topk(1)[0]
