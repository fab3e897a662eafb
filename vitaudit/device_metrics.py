"""The common per-image metrics of a batch of maps, computed with torch where the model runs.

On a GPU the per-image numpy work (resampling each map to the working size, resizing masks,
the metrics) caps a dataset pass at about a thousand image-expectations a second, while the
model does thousands of images. Here the same steps run batched on a device, and only
per-image numbers come back (:func:`to_host`: one copy per batch):

- :func:`working_maps`: raw maps -> scaled by their maximum -> resampled onto the working
  resolution, with the same separable linear weights as :func:`vitaudit.preprocess.upsample_map`
  (NaN where the model saw nothing), clipped to [0, 1]: ``Explanation.working`` for a batch;
- :func:`resize_area`, :func:`resize_masks`: shrinking as ``cv2.resize(..., INTER_AREA)`` does
  (each output pixel the area-weighted mean of the source pixels it covers);
- :func:`mass_in`, :func:`pointing_game`, :func:`iou_top`, :func:`pearson`,
  :func:`baseline_similarity`: per image, NaN where the plain case does not hold (a map with
  unseen pixels or no signal, a constant map, an empty region), so the caller sends that image
  to the full measurement in :mod:`vitaudit.metrics`, which says what is wrong.

:mod:`vitaudit.metrics` stays the reference; tests hold both to the same values.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np
import torch

from .preprocess import Geometry, _axis_weights


# ---------------------------------------------------------------- resampling

@lru_cache(maxsize=64)
def _area_weights_np(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of INTER_AREA shrinking: output pixel ``i`` covers the source
    interval ``[i * s, (i + 1) * s)`` with ``s = n_in / n_out``, each source pixel weighted by the
    length of its overlap, divided by ``s``."""
    if n_out > n_in:
        raise ValueError(f"area resampling shrinks: {n_in} -> {n_out}")
    s = n_in / n_out
    lo = np.arange(n_out, dtype=np.float64) * s
    hi = lo + s
    src = np.arange(n_in, dtype=np.float64)
    overlap = np.clip(np.minimum(hi[:, None], src[None, :] + 1) - np.maximum(lo[:, None], src[None, :]), 0.0, None)
    w = overlap / s
    w.flags.writeable = False
    return w


def _on(weights: np.ndarray, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(weights, device=like.device, dtype=dtype)


def working_maps(raw: torch.Tensor, geometry: Geometry, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) float32: each raw (gh, gw) map divided by its maximum (all zeros when it has
    no signal), resampled onto ``size`` of an image with ``geometry`` (every image of the batch
    shares it), NaN where the model saw nothing, clipped to [0, 1].

    The arithmetic of ``Explanation.working``: the rows in float64, rounded to float32, then
    the columns in float32."""
    if raw.dim() != 3:
        raise ValueError(f"raw maps must be (B, gh, gw), got shape {tuple(raw.shape)}")
    from .explanation import scaled_geometry

    b, gh, gw = raw.shape
    g = geometry if tuple(size) == tuple(geometry.image_hw) else scaled_geometry(geometry, tuple(size))
    h, w = g.image_hw
    raw = raw.to(torch.float32)
    peak = raw.reshape(b, -1).amax(dim=1)
    ok = (peak > 0) & torch.isfinite(peak)
    grid = torch.where(ok[:, None, None], raw / torch.where(ok, peak, 1.0)[:, None, None], torch.zeros_like(raw))
    wy, in_y = _axis_weights(h, g.y0, g.y1, gh)
    wx, in_x = _axis_weights(w, g.x0, g.x1, gw)
    rows = torch.matmul(_on(wy, raw, torch.float64), grid.to(torch.float64)).to(torch.float32)
    out = torch.matmul(rows, _on(wx.T, raw, torch.float32)).clamp_(0.0, 1.0)
    if not (in_y.all() and in_x.all()):
        out[:, torch.from_numpy(~in_y).to(out.device), :] = float("nan")
        out[:, :, torch.from_numpy(~in_x).to(out.device)] = float("nan")
    return out


def resize_area(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) -> (B, h, w) float64, shrinking as ``cv2.INTER_AREA`` (``h <= H``, ``w <= W``)."""
    b, H, W = x.shape
    h, w = (int(s) for s in size)
    if (h, w) == (H, W):
        return x.to(torch.float64)
    ay = _on(_area_weights_np(H, h), x, torch.float64)
    ax = _on(_area_weights_np(W, w), x, torch.float64)
    return torch.matmul(torch.matmul(ay, x.to(torch.float64)), ax.T)


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Boolean (B, H, W) region masks shrunk to ``size``: a pixel is in when at least half of
    what it covers is (the dataset pass's ``cv2.resize(INTER_AREA) >= 0.5``)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    return resize_area(masks.to(torch.float64), size) >= 0.5


# ---------------------------------------------------------------- metrics

def _plain(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat maps as given, their float64 sums, which images are a plain case: every pixel
    seen and finite, none negative, some signal). Two passes over the maps: a NaN or an
    infinity makes the sum non-finite, so no separate check is needed."""
    flat = maps.reshape(maps.shape[0], -1)
    total = flat.sum(dim=1, dtype=torch.float64)
    ok = torch.isfinite(total) & (total > 0) & (flat.amin(dim=1) >= 0)
    return flat, total, ok


def _nan_unless(ok: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return torch.where(ok, value, torch.full_like(value, float("nan")))


def _flat_masks(masks: torch.Tensor) -> torch.Tensor:
    return masks.reshape(masks.shape[0], -1).bool()


def mass_in(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) share of each map's mass inside its region (:func:`vitaudit.metrics.mass_in`)."""
    flat, total, ok = _plain(maps)
    m = _flat_masks(masks)
    ok = ok & m.any(dim=1)
    inside = torch.where(m, flat, torch.zeros((), dtype=flat.dtype, device=flat.device)).sum(dim=1, dtype=torch.float64)
    return _nan_unless(ok, inside / torch.where(ok, total, 1.0))


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) 1.0 where a pixel holding the map's maximum lies in the region, else 0.0
    (:func:`vitaudit.metrics.pointing_game` with no tolerance)."""
    flat, _, ok = _plain(maps)
    m = _flat_masks(masks)
    ok = ok & m.any(dim=1)
    hit = ((flat == flat.amax(dim=1, keepdim=True)) & m).any(dim=1).to(torch.float64)
    return _nan_unless(ok, hit)


def iou_top(maps: torch.Tensor, masks: torch.Tensor, percent: float) -> torch.Tensor:
    """(B,) IoU of each map's top ``percent``% pixels (ties in raster order) with its region
    (:func:`vitaudit.metrics.iou_top`)."""
    flat, _, ok = _plain(maps)
    m = _flat_masks(masks)
    ok = ok & m.any(dim=1)
    n = flat.shape[1]
    k = int(np.floor(float(percent) * n / 100 + 0.5))
    if not (0 < float(percent) <= 100) or k < 1:
        return torch.full((flat.shape[0],), float("nan"), dtype=torch.float64, device=flat.device)
    safe = torch.nan_to_num(flat)  # only the plain cases are kept; this keeps kthvalue defined
    kth = torch.kthvalue(safe, n - k + 1, dim=1, keepdim=True).values  # the k-th largest
    above = safe > kth
    tied = safe == kth
    need = k - above.sum(dim=1, keepdim=True)
    top = above | (tied & (torch.cumsum(tied, dim=1) <= need))
    inter = (top & m).sum(dim=1).to(torch.float64)
    union = (top | m).sum(dim=1).to(torch.float64)
    return _nan_unless(ok, inter / union)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) Pearson correlation of each pair of maps (:func:`vitaudit.metrics.pearson` when
    every pixel is seen); NaN for a pair with unseen pixels, no signal or a constant map."""
    fa, sa, ok_a = _plain(a)
    fb, sb, ok_b = _plain(b)
    ok = ok_a & ok_b & (fa.amax(1) != fa.amin(1)) & (fb.amax(1) != fb.amin(1))
    n = fa.shape[1]
    x = fa.to(torch.float64) - (sa / n)[:, None]
    y = fb.to(torch.float64) - (sb / n)[:, None]
    sxx, syy = (x * x).sum(dim=1), (y * y).sum(dim=1)
    r = (x * y).sum(dim=1) / torch.sqrt(torch.where(ok, sxx * syy, 1.0))
    return _nan_unless(ok, torch.nan_to_num(r).clamp(-1.0, 1.0))


def baseline_similarity(maps: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """(B,) Pearson correlation of each working map, shrunk to its stored baseline's size as
    :func:`vitaudit.metrics.resize_map` does (INTER_AREA), with the baseline."""
    h, w = stored.shape[-2:]
    if h > maps.shape[-2] or w > maps.shape[-1]:
        return torch.full((maps.shape[0],), float("nan"), dtype=torch.float64, device=maps.device)
    _, _, ok = _plain(maps)
    current = resize_area(torch.nan_to_num(maps.to(torch.float64)), (h, w)).to(torch.float32)
    r = pearson(current, stored.to(torch.float32))
    return _nan_unless(ok, r)


# ---------------------------------------------------------------- transfer, threads

@contextmanager
def small_ops(device: torch.device) -> Iterator[None]:
    """On a CPU, run the enclosed torch calls on one thread (restored after, also on error).

    A batch's maps are small (32 images of 64 x 64 are 131k values): split over torch's
    threads, each call waits for the slowest of them, which on a busy machine costs far more
    than the arithmetic (measured on the shared 2-core build machine: 323 ms a batch of four
    metrics on 2 threads, 26 ms on one). Accelerators are left alone."""
    if torch.device(device).type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)



def to_host(values: Sequence[torch.Tensor]) -> np.ndarray:
    """Per-image value vectors (each (B,), on one device) as one (len(values), B) float64 array:
    a single device-to-host copy for the batch."""
    if not values:
        return np.zeros((0, 0))
    return torch.stack([v.to(torch.float64) for v in values]).cpu().numpy()
