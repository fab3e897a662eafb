"""Aggregate verdicts over a dataset: per-image values in, one number and a verdict out.

Pure functions over per-image values, independent of models and pytest, so values computed on
different shards (processes, GPUs, machines) merge by concatenation in any order (:func:`merge`)
before aggregating. They take :class:`~vitaudit.image_values.ImageValues` (a pass's columns) or a
list of :class:`ImageValue` records alike, and read columns (a list is made columns first).

- ``mean | median | min | max | p<N>``: of the images that have a value; ``op``/``threshold``
  apply to the result.
- ``share`` (Great Expectations' ``mostly``): the fraction of counted images whose per-image
  check passed must be at least ``share``; an image whose value could not be measured (no
  signal in its map) counts as not passing, as the single-image expectation would fail.
- ``accuracy``: the fraction of images whose top-1 is their label; ``op``/``threshold`` apply.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from .image_values import ImageValue, ImageValues
from .intervals import DEFAULT_LEVEL, Interval, interval_of

OPS: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                  "<=": operator.le}
_PERCENTILE = re.compile(r"^p(?P<q>[0-9.]+)$")


@dataclass(frozen=True)
class Verdict:
    """An aggregate: its value, whether it meets the threshold, and over how many images."""

    value: float | None
    passed: bool
    n_images: int  # images counted
    n_missing: int  # counted images without a value (their ``error`` says why)
    share_passing: float | None  # fraction of counted images whose per-image check passed
    interval: Interval | None = None  # the aggregate's confidence interval (None: min, max, under 2 images)
    confidence: float | None = None  # the level the expectation asked for ("with 95% confidence")
    within_noise: bool = False  # a plain threshold inside the interval: could flip on another sample


def merge(*shards: Iterable[ImageValue]) -> list[ImageValue]:
    """Concatenate shards of per-image values (any order) into dataset order."""
    return sorted((v for shard in shards for v in shard), key=lambda v: v.index)


def aggregate_value(kind: str, values: Sequence[float]) -> float | None:
    """``mean``/``median``/``min``/``max``/``p<N>`` of ``values``; ``None`` when there are none."""
    if not len(values):
        return None
    arr = np.asarray(values, dtype=np.float64)
    if kind == "mean":
        return float(arr.mean())
    if kind == "median":
        return float(np.median(arr))
    if kind == "min":
        return float(arr.min())
    if kind == "max":
        return float(arr.max())
    m = _PERCENTILE.match(kind)
    if m is not None:
        q = float(m["q"])
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {q:g}")
        return float(np.percentile(arr, q, method="linear"))
    raise ValueError(f"unknown aggregate {kind!r}; use mean, median, min, max or p<N>")


def verdict(kind: str, values: Sequence[ImageValue], op: str | None, threshold: float | None,
            share: float | None = None, confidence: float | None = None) -> Verdict:
    """The aggregate ``kind`` over ``values`` and its verdict.

    ``share``: ``op``/``threshold`` are ignored (the per-image checks are in ``passed``) and
    the verdict is ``share_passing >= share``. Otherwise ``op``/``threshold`` apply to the
    aggregate. No counted image at all is a failed verdict with value ``None``.

    Every verdict carries the aggregate's confidence interval (:mod:`vitaudit.intervals`), at
    ``confidence`` when given, else at 95%. With ``confidence`` the verdict passes only when the
    whole interval meets the threshold (its lower end for ``>``, its upper end for ``<``), and
    fails when there is no interval. Without it the point value decides, and ``within_noise``
    says when the threshold lies inside the interval.
    """
    c = ImageValues.of(values)
    n = len(c)
    measured = c.value[c.has_value & np.isfinite(c.value)]
    n_passing = int((c.passed == 1).sum())
    checks = bool((c.passed >= 0).any())
    share_passing = (n_passing / n) if n and (checks or kind in ("share", "accuracy")) else None
    if kind == "share":
        if share is None:
            raise ValueError("a share aggregate needs the share of images that must pass")
        value = share_passing
        passed = value is not None and value >= share - 1e-12
    elif kind == "accuracy":
        value = share_passing
        passed = value is not None and OPS[str(op)](value, float(threshold))  # type: ignore[arg-type]
    else:
        value = aggregate_value(kind, measured)
        passed = value is not None and OPS[str(op)](value, float(threshold))  # type: ignore[arg-type]
    interval = interval_of(kind, measured, n_passing, n, confidence or DEFAULT_LEVEL) if value is not None else None
    bar_op, bar = (">=", share) if kind == "share" else (op, threshold)
    within_noise = False
    if interval is not None and bar is not None and bar_op in OPS and math.isfinite(float(bar)):
        if confidence is not None:
            passed = interval.clears(str(bar_op), float(bar) - (1e-12 if kind == "share" else 0.0))
        else:
            within_noise = interval.straddles(float(bar)) and interval.low < interval.high
    elif confidence is not None:
        passed = False  # no interval (one image, min/max): the confidence cannot be shown
    return Verdict(value, bool(passed), n, n - len(measured), share_passing, interval, confidence, within_noise)


def higher_is_better(op: str | None) -> bool:
    """Whether a larger per-image value is the better one, for ordering worst and best."""
    return op not in ("<", "<=", "misses")


def _order(c: ImageValues, op: str | None) -> np.ndarray:
    """Positions of ``c``, worst first: failing images, then those without a value, then by value
    towards failing, then by dataset index."""
    sign = 1.0 if higher_is_better(op) else -1.0
    failed = np.where(c.passed == 0, 0, 1)
    missing = c.has_value.astype(np.int8)
    score = sign * np.where(c.has_value, c.value, 0.0)
    return np.lexsort((c.index, score, missing, failed))


def ranked(values: Sequence[ImageValue], op: str | None) -> list[ImageValue]:
    """Worst first: failing images, then those without a value, then by value towards failing."""
    c = ImageValues.of(values)
    return [c[int(i)] for i in _order(c, op)]


def worst_and_best(values: Sequence[ImageValue], op: str | None, worst: int = 6,
                   best: int = 3, yes_no: bool = False) -> tuple[list[ImageValue], list[ImageValue]]:
    """The ``worst`` worst images and the ``best`` best ones (never the same image twice).

    The best never include an image whose own check failed. ``yes_no``: the per-image value is
    1 or 0 (the pointing game's hit), so an image is either good or bad: the worst are only bad
    ones and the best only good ones, however few there are of either. Only the chosen images
    are made records.
    """
    c = ImageValues.of(values)
    order = _order(c, op)
    good = (c.passed != 0) & c.has_value
    if yes_no:
        good &= c.value == (1.0 if higher_is_better(op) else 0.0)
    low = order[~good[order]][:worst] if yes_no else order[:worst]
    taken = np.zeros(len(c), dtype=bool)
    taken[low] = True
    rev = order[::-1]
    high = rev[good[rev] & ~taken[rev]][:best]
    return [c[int(i)] for i in low], [c[int(i)] for i in high]


def histogram(values: Sequence[ImageValue], marks: Sequence[float | None] = (), bins: int = 20
              ) -> tuple[list[float], list[int]]:
    """Edges and counts of the per-image values; the range covers ``marks`` (thresholds) too."""
    c = ImageValues.of(values)
    data = c.value[c.has_value & np.isfinite(c.value)]
    points = [float(m) for m in marks if m is not None and math.isfinite(m)]
    if not data.size:
        return [], []
    lo = float(min([data.min(), *points]))
    hi = float(max([data.max(), *points]))
    if 0.0 <= lo and hi <= 1.0:  # fractions: the usual [0, 1] axis reads best
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(data, bins=bins, range=(lo, hi))
    return [float(e) for e in edges], [int(c) for c in counts]


def by_group(values: Sequence[ImageValue]) -> dict[str, ImageValues]:
    """Per-image values split by label (sorted by label; unlabelled images are left out)."""
    return ImageValues.of(values).by_label()
