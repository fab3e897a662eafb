"""Is a dataset aggregate's change between two runs real, or noise? A paired test on shared images.

For each dataset expectation present in both runs with per-image values, the images both runs
measured are paired (by their path) and the mean of the per-image differences is tested against
zero: a sign-flip permutation test (``scipy.stats.permutation_test``, 9,999 resamples, seeded) up
to :data:`PERMUTATION_MAX_N` pairs, the paired t-test above (the mean of that many differences is
normal; the permutation test would cost seconds per row). The per-image quantity is the one the
aggregate summarises: the value for ``mean``/``median``/``p<N>``, pass (1) or fail (0) for
``share`` and ``accuracy``, so the tested difference is the change in that share. With fewer than
two shared images, the two runs' values are compared as independent samples (permutation test of
the difference of means) and the test says so.

No correction for testing many expectations at once is made: at level 0.05, about one unchanged
aggregate in twenty can still come out "significant" by chance; choose ``--significance``
accordingly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: The default significance level (``--significance``).
DEFAULT_LEVEL = 0.05
#: Largest number of pairs for the permutation test (above it: the paired t-test).
PERMUTATION_MAX_N = 1000
N_RESAMPLES = 9999
SEED = 0


@dataclass
class Shift:
    """A dataset aggregate's change between two runs, tested."""

    nodeid: str
    where: str
    text: str
    test: str  # "paired permutation" | "paired t" | "independent permutation"
    n: int  # pairs (images both runs share), or the two runs' images for the independent test
    old_mean: float  # the per-image quantity's mean over those images, before and after
    new_mean: float
    difference: float  # new - old
    p_value: float
    significant: bool
    worse: bool | None  # by the expectation's operator (None when it has none)
    quantity: str  # "value" | "pass rate"


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _quantity(row: dict[str, Any], by_pass: bool) -> float | None:
    if by_pass:
        return float(row["passed"]) if isinstance(row.get("passed"), bool) else None
    return _number(row.get("value"))


def _p_paired(d: np.ndarray) -> tuple[float, str]:
    from scipy import stats

    if not np.any(d):
        return 1.0, "paired permutation"
    if d.size > PERMUTATION_MAX_N:
        if float(np.ptp(d)) <= 1e-12 * max(1.0, float(np.max(np.abs(d)))):
            # Every image moved by the same amount, up to float rounding: no spread for a t
            # statistic (scipy warns of catastrophic cancellation), and as significant as it gets.
            return 0.0, "paired t"
        return float(stats.ttest_1samp(d, 0.0).pvalue), "paired t"
    res = stats.permutation_test((d,), lambda s, axis=-1: np.mean(s, axis=axis), permutation_type="samples",
                                 vectorized=True, n_resamples=N_RESAMPLES, alternative="two-sided",
                                 rng=np.random.default_rng(SEED))
    return float(res.pvalue), "paired permutation"


def _p_independent(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    if float(np.std(np.concatenate([a, b]))) == 0.0:
        return 1.0
    res = stats.permutation_test((b, a), lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                                 permutation_type="independent", vectorized=True, n_resamples=N_RESAMPLES,
                                 alternative="two-sided", rng=np.random.default_rng(SEED))
    return float(res.pvalue)


def shift(old_rows: Sequence[dict[str, Any]], new_rows: Sequence[dict[str, Any]], *, aggregate: str | None,
          op: str | None, level: float = DEFAULT_LEVEL, nodeid: str = "", where: str = "",
          text: str = "") -> Shift | None:
    """The tested change between two runs' per-image lists (``None`` when there is nothing to test)."""
    by_pass = aggregate in ("share", "accuracy")
    before = {str(r.get("image")): _quantity(r, by_pass) for r in old_rows}
    after = {str(r.get("image")): _quantity(r, by_pass) for r in new_rows}
    shared = [k for k in after if k in before and before[k] is not None and after[k] is not None]
    if by_pass or op in (">", ">="):
        worse_if = -1.0
    elif op in ("<", "<="):
        worse_if = 1.0
    else:
        worse_if = 0.0
    if len(shared) >= 2:
        a = np.array([before[k] for k in shared], dtype=np.float64)
        b = np.array([after[k] for k in shared], dtype=np.float64)
        p, test = _p_paired(b - a)
        n = len(shared)
    else:
        a = np.array([x for x in before.values() if x is not None], dtype=np.float64)
        b = np.array([x for x in after.values() if x is not None], dtype=np.float64)
        if a.size < 2 or b.size < 2:
            return None
        p, test, n = _p_independent(a, b), "independent permutation", int(a.size + b.size)
    diff = float(b.mean() - a.mean())
    worse = None if worse_if == 0.0 or diff == 0.0 else (diff * worse_if > 0)
    return Shift(nodeid=nodeid, where=where, text=text, test=test, n=n, old_mean=float(a.mean()),
                 new_mean=float(b.mean()), difference=diff, p_value=p, significant=p < level, worse=worse,
                 quantity="pass rate" if by_pass else "value")
