"""Confidence intervals for dataset aggregates: how far the value could move on another sample.

A dataset verdict is a statement about the population the images were drawn from, so each
aggregate carries an interval over images (seeded, so a run is reproducible):

- ``mean``: scipy's BCa bootstrap (``scipy.stats.bootstrap``, 1,999 resamples) up to
  :data:`BCA_MAX_N` images; above that, Student's t interval. BCa's jackknife costs O(n^2)
  (9 s at 10,000 images here, 0.1 s at 1,000), while at that size the sample mean is normal to well within the
  bootstrap's own Monte Carlo error, so t is both cheaper and no less accurate.
- ``median`` and ``p<N>``: the distribution-free order-statistic interval
  (``scipy.stats.quantile_test(...).confidence_interval``, exact binomial coverage); where it is
  unbounded (an extreme percentile of few images), the percentile bootstrap instead.
- ``share`` and ``accuracy`` (a count of passing images out of n): Wilson's score interval
  (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``), which stays inside [0, 1] and
  is not degenerate when every image passes.
- ``min``/``max``: none (the bootstrap of an extreme is known not to work), nor for one image.

Constant values give the point interval ``[c, c]`` (every resample agrees).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: The confidence level of the intervals shown when an expectation does not ask for one.
DEFAULT_LEVEL = 0.95
#: Seed of the bootstrap's generator: the same values give the same interval on every run.
DEFAULT_SEED = 0
#: Resamples of the bootstrap.
N_RESAMPLES = 1999
#: Largest n for the BCa bootstrap of a mean (above it: Student's t).
BCA_MAX_N = 500
_PERCENTILE = re.compile(r"^p(?P<q>[0-9.]+)$")


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval ``[low, high]`` at ``level`` (e.g. 0.95), and how it was made."""

    low: float
    high: float
    level: float
    method: str  # "bca" | "t" | "order-statistic" | "percentile" | "wilson" | "constant"

    @property
    def half_width(self) -> float:
        """Half the interval's width: the ``ci`` of ``>= baseline - ci``."""
        return (self.high - self.low) / 2.0

    def straddles(self, threshold: float) -> bool:
        """Whether ``threshold`` lies inside the interval: the verdict could flip on another sample."""
        return self.low <= threshold <= self.high

    def clears(self, op: str, threshold: float) -> bool:
        """Whether the whole interval meets ``op threshold`` (the lower end for ``>``/``>=``, the upper for ``<``/``<=``)."""
        end = self.low if op in (">", ">=") else self.high
        return {">": end > threshold, ">=": end >= threshold, "<": end < threshold, "<=": end <= threshold}[op]

    def to_dict(self) -> dict[str, float | str]:
        """``ci_low``, ``ci_high``, ``ci_level``, ``ci_method`` (the keys of ``audit.json``)."""
        return {"ci_low": self.low, "ci_high": self.high, "ci_level": self.level, "ci_method": self.method}


def has_interval(kind: str) -> bool:
    """Whether aggregate ``kind`` gets an interval (every aggregate but ``min`` and ``max``)."""
    return kind in ("mean", "median", "share", "accuracy") or _PERCENTILE.match(kind) is not None


def proportion_interval(successes: int, n: int, level: float = DEFAULT_LEVEL) -> Interval | None:
    """Wilson's score interval for ``successes`` out of ``n`` (``None`` when ``n`` is 0)."""
    from scipy.stats import binomtest

    if n <= 0:
        return None
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return Interval(float(max(ci.low, 0.0)), float(min(ci.high, 1.0)), level, "wilson")


def location_interval(kind: str, values: Sequence[float], level: float = DEFAULT_LEVEL,
                      seed: int = DEFAULT_SEED) -> Interval | None:
    """An interval for the ``mean``/``median``/``p<N>`` of ``values`` (``None`` for fewer than two
    values, and for ``min``/``max``)."""
    if isinstance(values, np.ndarray):  # a pass's column: no Python float per value
        x = values.astype(np.float64, copy=False)
        x = x[np.isfinite(x)]
    else:
        x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size < 2 or not has_interval(kind) or kind in ("share", "accuracy"):
        return None
    if float(x.min()) == float(x.max()):
        c = float(x[0])
        return Interval(c, c, level, "constant")
    if kind == "mean":
        return _mean_interval(x, level, seed)
    q = 50.0 if kind == "median" else float(_PERCENTILE.match(kind)["q"])  # type: ignore[index]
    return _quantile_interval(x, q / 100.0, level, seed)


def _mean_interval(x: np.ndarray, level: float, seed: int) -> Interval:
    from scipy import stats

    if x.size > BCA_MAX_N:
        half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1) * stats.sem(x))
        m = float(x.mean())
        return Interval(m - half, m + half, level, "t")
    res = _bootstrap(x, np.mean, level, seed, "BCa")
    if res is None:  # BCa undefined (e.g. two distinct values only): the percentile interval
        res = _bootstrap(x, np.mean, level, seed, "percentile")
        return Interval(*res, level, "percentile")  # type: ignore[misc]
    return Interval(*res, level, "bca")


def _quantile_interval(x: np.ndarray, p: float, level: float, seed: int) -> Interval | None:
    from scipy import stats

    q = float(np.quantile(x, p))
    if 0.0 < p < 1.0:
        ci = stats.quantile_test(x, q=q, p=p).confidence_interval(confidence_level=level)
        if math.isfinite(ci.low) and math.isfinite(ci.high):
            return Interval(float(ci.low), float(ci.high), level, "order-statistic")

    def statistic(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.quantile(sample, p, axis=axis)

    res = _bootstrap(x, statistic, level, seed, "percentile")
    return None if res is None else Interval(*res, level, "percentile")


def _bootstrap(x: np.ndarray, statistic, level: float, seed: int, method: str) -> tuple[float, float] | None:
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning: answered by the None below
        res = stats.bootstrap((x,), statistic, n_resamples=N_RESAMPLES, confidence_level=level, method=method,
                              vectorized=True, rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def interval_of(kind: str, values: Sequence[float], n_passing: int | None = None, n: int | None = None,
                level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED) -> Interval | None:
    """The interval of aggregate ``kind``: of ``values`` for a location aggregate, of ``n_passing``
    out of ``n`` for ``share``/``accuracy``."""
    if kind in ("share", "accuracy"):
        return None if n is None or n_passing is None else proportion_interval(n_passing, n, level)
    return location_interval(kind, values, level, seed)

