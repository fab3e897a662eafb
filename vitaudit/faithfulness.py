"""Deletion and insertion curves (Petsiuk, Das & Saenko 2018, "RISE: Randomized Input
Sampling for Explanation of Black-box Models", BMVC).

Deletion removes the input's pixels most-salient-first and watches the target class's
probability fall: a faithful map makes it fall fast (low AUC). Insertion starts from a
baseline and reveals pixels most-salient-first: a faithful map makes it rise fast (high
AUC). Both work on the model's input tensor, at the model input's resolution.

Pixel order: by saliency, highest first; NaN counts as lowest; ties in raster order (row by
row, top-left first). Step ``i`` of ``steps`` removes/reveals ``round(i * n / steps)``
pixels (halves up), so ``fractions`` are the exact shares of pixels changed. The AUC is the
trapezoidal rule over those fractions, on [0, 1].
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from vitaudit.metrics import MetricError, NoSignalError

#: Baselines a removed pixel is replaced by (deletion) or that insertion starts from.
BASELINES: tuple[str, ...] = ("blur", "zero", "mean")

#: RISE's blur for insertion: an 11-tap Gaussian kernel with sigma 5 (radius 5 = 1 sigma).
BLUR_SIGMA = 5.0
BLUR_RADIUS = 5

ScoreFn = Callable[[torch.Tensor], Any]

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


@dataclass
class FaithfulnessResult:
    """One curve: ``scores[i]`` is the target probability with ``fractions[i]`` of pixels changed."""

    auc: float
    fractions: np.ndarray
    scores: np.ndarray
    kind: str = "deletion"  # deletion | insertion
    baseline: str = "blur"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly copy (lists of floats)."""
        return {"auc": float(self.auc), "fractions": [float(f) for f in self.fractions],
                "scores": [float(s) for s in self.scores], "kind": self.kind, "baseline": self.baseline}


def baseline_image(x: torch.Tensor, baseline: str) -> torch.Tensor:
    """The (C, h, w) image that stands for "no information" at every pixel.

    ``"blur"``: ``x`` blurred per channel with RISE's Gaussian (sigma 5, 11 taps, edges
    replicated); ``"zero"``: zeros, i.e. the dataset mean of a normalised input; ``"mean"``:
    each channel filled with its own mean over ``x``.
    """
    from scipy.ndimage import gaussian_filter

    if baseline not in BASELINES:
        close = difflib.get_close_matches(str(baseline), BASELINES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise MetricError(f"unknown baseline '{baseline}'{hint} (known: {', '.join(BASELINES)})")
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone()
    arr = x.detach().cpu().double().numpy()
    blurred = gaussian_filter(arr, sigma=(0, BLUR_SIGMA, BLUR_SIGMA), mode="nearest",
                              truncate=BLUR_RADIUS / BLUR_SIGMA)
    return torch.from_numpy(blurred).to(device=x.device, dtype=x.dtype)


def _pixel_ranks(saliency: Any, hw: tuple[int, int]) -> np.ndarray:
    """(h, w) int array: 0 for the most salient pixel, n-1 for the least (NaN last)."""
    s = np.asarray(saliency, dtype=np.float64)
    if s.shape != hw:
        raise MetricError(f"saliency has shape {s.shape} but the model input is {hw[0]}x{hw[1]}")
    if np.isinf(s).any():
        raise MetricError(f"saliency has {int(np.isinf(s).sum())} infinite values")
    seen = s[~np.isnan(s)]
    if not seen.any():
        raise NoSignalError(f"the saliency map has no signal: all {seen.size} seen pixels are 0")
    flat = np.where(np.isnan(s), -np.inf, s).ravel()
    order = np.argsort(-flat, kind="stable")
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(hw)


def _scores(out: Any, expected: int) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().double().numpy()
    arr = np.asarray(out, dtype=np.float64)
    if arr.shape != (expected,):
        raise MetricError(f"score_fn must return one score per image, shape ({expected},), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise MetricError("score_fn returned a non-finite score")
    return arr


def _curve(kind: str, x: torch.Tensor, saliency: Any, score_fn: ScoreFn, steps: int,
           baseline: str, batch_size: int | None) -> FaithfulnessResult:
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise MetricError(f"x must be the model input as a (C, h, w) tensor, got {getattr(x, 'shape', type(x))}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise MetricError(f"steps must be a whole number >= 1, got {steps!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise MetricError(f"batch_size must be a whole number >= 1 or None, got {batch_size!r}")
    _, h, w = x.shape
    ranks = torch.from_numpy(_pixel_ranks(saliency, (h, w))).to(x.device)
    base = baseline_image(x, baseline)
    n = h * w
    counts = [(2 * i * n + steps) // (2 * steps) for i in range(steps + 1)]  # round(i*n/steps), halves up
    chunk = batch_size or len(counts)
    scores: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(counts), chunk):
            cs = torch.tensor(counts[start:start + chunk], device=x.device)
            changed = (ranks[None] < cs[:, None, None])[:, None]  # (B, 1, h, w)
            batch = torch.where(changed, base, x) if kind == "deletion" else torch.where(changed, x, base)
            scores.append(_scores(score_fn(batch), len(cs)))
    fractions = np.array(counts, dtype=np.float64) / n
    ys = np.concatenate(scores)
    return FaithfulnessResult(auc=float(_trapezoid(ys, fractions)), fractions=fractions, scores=ys,
                              kind=kind, baseline=baseline)


def deletion_auc(x: torch.Tensor, saliency: np.ndarray, score_fn: ScoreFn, *, steps: int = 16,
                 baseline: str = "blur", batch_size: int | None = None) -> FaithfulnessResult:
    """Deletion curve: replace pixels by ``baseline`` most-salient-first; lower AUC = more faithful.

    ``x``: the model input (C, h, w), already normalised. ``saliency``: (h, w) map at the
    input's resolution. ``score_fn``: batch (B, C, h, w) -> (B,) target-class probabilities;
    called once on all ``steps + 1`` images, or in chunks of ``batch_size``.
    """
    return _curve("deletion", x, saliency, score_fn, steps, baseline, batch_size)


def insertion_auc(x: torch.Tensor, saliency: np.ndarray, score_fn: ScoreFn, *, steps: int = 16,
                  baseline: str = "blur", batch_size: int | None = None) -> FaithfulnessResult:
    """Insertion curve: start from ``baseline``, reveal pixels of ``x`` most-salient-first;
    higher AUC = more faithful. Arguments as for :func:`deletion_auc`."""
    return _curve("insertion", x, saliency, score_fn, steps, baseline, batch_size)
