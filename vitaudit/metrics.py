"""Explanation metrics: how much of a heat map falls in a region, and how alike two maps are.

Conventions (shared with the rest of vitaudit):

- A heat map is a float (H, W) array at the original image's size, values in [0, 1], and
  NaN where the model saw nothing (e.g. outside a centre crop). Every metric here ignores
  NaN pixels: they are evidence neither for nor against. Regions are clipped to the seen
  pixels too, and a region with no seen pixel cannot be scored (MetricError).
- A map whose seen values are all 0 has *no signal*: every localisation metric and
  similarity raises :class:`NoSignalError` instead of returning a number from it.
- Ranking pixels (``iou_top``): by value, highest first, ties in raster order (row by row,
  top-left first), so results are deterministic.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable

import numpy as np


class MetricError(ValueError):
    """A metric that cannot be computed on these inputs (one-line message)."""


class NoSignalError(MetricError):
    """The map has no signal (all its seen values are 0), so no metric of it means anything."""


# ---------------------------------------------------------------- input checks

def _as_map(heatmap: Any, what: str = "the map") -> np.ndarray:
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim != 2:
        raise MetricError(f"{what} must be a 2-D (H, W) array, got shape {h.shape}")
    if np.isinf(h).any():
        raise MetricError(f"{what} has {int(np.isinf(h).sum())} infinite values")
    if np.isnan(h).all():
        raise MetricError(f"{what} has no seen pixel (all {h.size} are NaN)")
    return h


def _check_signal(h: np.ndarray, what: str = "the map") -> None:
    seen = h[~np.isnan(h)]
    if not seen.any():
        raise NoSignalError(f"{what} has no signal: all {seen.size} seen pixels are 0")


def _prepare(heatmap: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """(seen values, mask at the seen pixels), both flat in raster order, after all checks."""
    h = _as_map(heatmap)
    m = np.asarray(mask)
    if m.shape != h.shape:
        raise MetricError(f"the mask's shape {m.shape} differs from the map's {h.shape}")
    m = m.astype(bool) if m.dtype == bool else m != 0
    seen = ~np.isnan(h)
    v = h[seen]
    if (v < 0).any():
        raise MetricError(f"the map has negative values (min {v.min():.4g}); localisation metrics need values >= 0")
    _check_signal(h)
    ms = m[seen]
    if not ms.any():
        raise MetricError(f"the region has no pixel the model saw ({int(m.sum())} pixels, all NaN in the map)")
    return v, ms


def _order(v: np.ndarray) -> np.ndarray:
    """Indices of ``v`` from highest to lowest value, ties in raster order."""
    return np.argsort(-v, kind="stable")


def _top_k(v: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the first ``k`` entries of :func:`_order`, in linear time.

    Everything above the k-th largest value is in; of the entries equal to it, the first
    ones in raster order fill the remaining places (what the stable sort would pick).
    """
    kth = np.partition(v, v.size - k)[v.size - k]
    top = v > kth
    need = k - int(top.sum())
    if need > 0:
        tied = np.flatnonzero(v == kth)[:need]
        top[tied] = True
    return top


# ---------------------------------------------------------------- localisation

def mass_in(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Relevance mass accuracy: the share of the map's total mass that lies in the region.

    ``sum(map[mask & seen]) / sum(map[seen])``, in [0, 1]. Arras, Osman & Samek (2022),
    "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural network
    explanations", Information Fusion 81. Uses the raw values (no min subtraction).
    """
    v, m = _prepare(heatmap, mask)
    return float(v[m].sum() / v.sum())


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, tolerance: float = 0) -> bool:
    """Pointing game: is the map's maximum in the region, give or take ``tolerance`` pixels?

    A hit when a seen pixel holding the maximum lies within Euclidean distance
    ``tolerance`` (pixel centre to pixel centre, any number >= 0) of a region pixel;
    ``tolerance=0`` means inside the region. Ties: a hit if *any* maximal pixel qualifies.
    Zhang et al. (2018), "Top-down Neural Attention by Excitation Backprop", IJCV 126,
    use 15 px.
    """
    if (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating))
            or not (0 <= tolerance < math.inf)):
        raise MetricError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
    _prepare(heatmap, mask)
    h = np.asarray(heatmap, dtype=np.float64)
    m = np.asarray(mask).astype(bool)
    maxima = h == np.nanmax(h)  # NaN compares False, so only seen pixels
    if tolerance == 0:
        near = m
    else:
        from scipy.ndimage import distance_transform_edt

        near = distance_transform_edt(~m) <= tolerance
    return bool((maxima & near).any())


def energy_pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Energy-based pointing game: share of the min-max normalised map's energy in the region.

    ``n = (map - min) / (max - min)`` over seen pixels, then ``sum(n[mask]) / sum(n)``.
    Wang et al. (2020), "Score-CAM: Score-Weighted Visual Explanations for Convolutional
    Neural Networks", CVPR Workshops. Unlike :func:`mass_in`, the minimum is subtracted
    first, so a uniform floor under the whole map counts for nothing and the score is
    higher for a map that is peaked in the region; a constant map has no energy at all
    (NoSignalError).
    """
    v, m = _prepare(heatmap, mask)
    lo, hi = v.min(), v.max()
    if hi == lo:
        raise NoSignalError(f"the map is constant ({hi:.4g}) over its seen pixels; "
                            f"min-max normalisation leaves no signal")
    n = (v - lo) / (hi - lo)
    return float(n[m].sum() / n.sum())


def iou_top(heatmap: np.ndarray, mask: np.ndarray, percent: float) -> float:
    """IoU between the map's top ``percent``% seen pixels and the region (at seen pixels).

    The top set has exactly ``round(percent / 100 * n_seen)`` pixels (halves up), ranked by
    value with ties in raster order. A thresholded-map IoU in the spirit of CAM's
    localisation (Zhou et al. 2016, "Learning Deep Features for Discriminative
    Localization", CVPR), with a fixed share of pixels instead of a value threshold.
    """
    p = float(percent)
    if not (0 < p <= 100):
        raise MetricError(f"percent must be in (0, 100], got {percent!r}")
    v, m = _prepare(heatmap, mask)
    k = int(math.floor(p * v.size / 100 + 0.5))
    if k < 1:
        raise MetricError(f"the top {p:g}% of {v.size} seen pixels rounds to 0 pixels")
    top = _top_k(v, k)
    return float((top & m).sum() / (top | m).sum())


def rank_accuracy(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Relevance rank accuracy: share of the K highest-ranked seen pixels inside the region.

    K = number of seen region pixels. Arras, Osman & Samek (2022), "CLEVR-XAI", Information
    Fusion 81. Ties at the K-th value are shared out evenly rather than by position: if
    ``t`` pixels tie for the last ``r`` places and ``i`` of them are in the region, they
    count ``r * i / t`` (the mean over all orders of the tie), so the score does not depend
    on where in the image tied pixels sit.
    """
    v, m = _prepare(heatmap, mask)
    k = int(m.sum())
    kth = np.partition(v, v.size - k)[v.size - k]  # the k-th largest value
    above = v > kth
    tied = v == kth
    r = k - int(above.sum())
    t = int(tied.sum())
    # (above_in + r * tied_in / t) / k, kept in integers until one final division
    return float((int((above & m).sum()) * t + r * int((tied & m).sum())) / (t * k))


# ---------------------------------------------------------------- similarity

def _pair(a: Any, b: Any, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of both maps at the pixels seen in both, after the no-signal/constant checks."""
    x, y = _as_map(a, "the first map"), _as_map(b, "the second map")
    if x.shape != y.shape:
        raise MetricError(f"{measure} needs maps of the same shape, got {x.shape} and {y.shape}")
    _check_signal(x, "the first map")
    _check_signal(y, "the second map")
    both = ~np.isnan(x) & ~np.isnan(y)
    if both.sum() < 2:
        raise MetricError(f"{measure} needs at least 2 pixels seen in both maps, got {int(both.sum())}")
    xv, yv = x[both], y[both]
    for vals, what in ((xv, "first"), (yv, "second")):
        if vals.min() == vals.max():
            raise MetricError(f"the {what} map is constant ({vals[0]:.4g}) over the {vals.size} pixels seen in both; "
                              f"{measure} correlation is undefined")
    return xv, yv


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps over the pixels seen in both, in [-1, 1]."""
    x, y = _pair(a, b, "pearson")
    return pearson_values(x, y)


def pearson_values(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two float64 vectors that are not constant, in [-1, 1].

    The textbook formula (scipy's ``pearsonr`` gives the same to ~1e-15 and costs ten times as
    much, which shows when a dataset asks for it on every image)."""
    x = x - x.mean()
    y = y - y.mean()
    r = float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))
    return max(-1.0, min(1.0, r))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties) over the pixels seen in both.

    The rank measure of Adebayo et al. (2018), "Sanity Checks for Saliency Maps", NeurIPS.
    """
    from scipy.stats import spearmanr

    x, y = _pair(a, b, "spearman")
    return float(spearmanr(x, y).statistic)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004, IEEE TIP 13) of two maps, data_range 1.

    scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window, sample
    covariance), as used for saliency maps by Adebayo et al. (2018). Needs maps without NaN
    and at least 7x7; a constant (non-zero) map is allowed, SSIM stays defined.
    """
    from skimage.metrics import structural_similarity

    x, y = _as_map(a, "the first map"), _as_map(b, "the second map")
    if x.shape != y.shape:
        raise MetricError(f"ssim needs maps of the same shape, got {x.shape} and {y.shape}")
    for arr, what in ((x, "first"), (y, "second")):
        n = int(np.isnan(arr).sum())
        if n:
            raise MetricError(f"ssim needs maps without NaN but the {what} map has {n} NaN pixels; "
                              f"use pearson or spearman, which compare the pixels seen in both")
    _check_signal(x, "the first map")
    _check_signal(y, "the second map")
    if min(x.shape) < 7:
        raise MetricError(f"ssim's 7x7 window needs maps at least 7x7, got {x.shape[0]}x{x.shape[1]}; use pearson")
    return float(structural_similarity(x, y, data_range=1.0))


SIMILARITIES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "pearson": pearson,
    "spearman": spearman,
    "ssim": ssim,
}


def similarity(a: np.ndarray, b: np.ndarray, measure: str) -> float:
    """Similarity of two maps by name: ``pearson``, ``spearman`` or ``ssim`` (case-insensitive)."""
    key = str(measure).strip().lower()
    if key not in SIMILARITIES:
        close = difflib.get_close_matches(key, SIMILARITIES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise MetricError(f"unknown similarity '{measure}'{hint} (known: {', '.join(SIMILARITIES)})")
    return SIMILARITIES[key](a, b)


# ---------------------------------------------------------------- summaries, resizing

def map_stats(heatmap: np.ndarray) -> dict[str, Any]:
    """Summary of a map for the report, JSON-friendly (Python floats/ints/bools/None).

    min, max, mean, std (population) over seen pixels; ``entropy``: Shannon entropy in bits
    of the map normalised to sum 1 (0 for a single peak, log2(n_seen) for a flat map; None
    without signal or with negative values); ``peak``: (x, y) of the first maximum in raster
    order, as a list ``[x, y]`` (None without signal); ``no_signal``; ``nan_fraction``: the
    share of unseen (NaN) pixels.
    """
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim != 2:
        raise MetricError(f"the map must be a 2-D (H, W) array, got shape {h.shape}")
    seen = ~np.isnan(h)
    v = h[seen]
    stats: dict[str, Any] = {"min": None, "max": None, "mean": None, "std": None, "entropy": None,
                             "peak": None, "no_signal": not bool(v.any()),
                             "nan_fraction": float((h.size - v.size) / h.size) if h.size else 0.0}
    if v.size == 0:
        return stats
    stats.update(min=float(v.min()), max=float(v.max()), mean=float(v.mean()), std=float(v.std()))
    if not stats["no_signal"]:
        row, col = np.unravel_index(int(np.nanargmax(h)), h.shape)
        stats["peak"] = [int(col), int(row)]  # a list, so a JSON round trip gives it back equal
        if (v >= 0).all() and np.isfinite(v).all():
            stats["entropy"] = entropy_bits(v)
    return stats


def entropy_bits(v: np.ndarray) -> float:
    """Shannon entropy in bits of non-negative values normalised to sum 1 (zeros count for nothing).

    ``scipy.stats.entropy(v / v.sum(), base=2)`` gives the same (tests check it); importing
    scipy.stats for it cost every run with a report 3 s and 61 MB on the build machine."""
    p = v[v > 0] / v.sum()
    return float(-(p * np.log2(p)).sum())


def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a map to ``size == (H, W)``: cv2 INTER_AREA when shrinking both sides, else INTER_LINEAR.

    NaN-aware: values and the seen-mask are resized separately and divided (a normalised
    convolution), so NaN does not bleed in; an output pixel is NaN when less than half of
    what it draws on was seen. Output is float32 within the input's value range.
    """
    import cv2

    h = np.asarray(heatmap, dtype=np.float32)
    if h.ndim != 2:
        raise MetricError(f"the map must be a 2-D (H, W) array, got shape {h.shape}")
    out_h, out_w = (int(s) for s in size)
    if out_h <= 0 or out_w <= 0:
        raise MetricError(f"size must be positive (H, W), got {size!r}")
    if (out_h, out_w) == h.shape:
        return h.copy()
    interp = cv2.INTER_AREA if out_h <= h.shape[0] and out_w <= h.shape[1] else cv2.INTER_LINEAR
    seen = ~np.isnan(h)
    if not seen.any():
        return np.full((out_h, out_w), np.nan, dtype=np.float32)
    lo, hi = float(h[seen].min()), float(h[seen].max())
    if seen.all():
        return np.clip(cv2.resize(h, (out_w, out_h), interpolation=interp), lo, hi)
    num = cv2.resize(np.where(seen, h, 0).astype(np.float32), (out_w, out_h), interpolation=interp)
    den = cv2.resize(seen.astype(np.float32), (out_w, out_h), interpolation=interp)
    out = np.full((out_h, out_w), np.nan, dtype=np.float32)
    ok = den >= 0.5
    out[ok] = np.clip(num[ok] / den[ok], lo, hi)
    return out
