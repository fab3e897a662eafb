"""Small text formatters for the report (numbers, durations, comparison operators).

Kept apart from the template so they can be unit-tested and reused by the JSON summary.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

#: How each comparison operator of an expectation is printed.
OP_SYMBOLS: dict[str, str] = {
    ">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "=", "!=": "≠",
    "between": "∈", "in": "∈", "outside": "∉", "not between": "∉", "not in": "∉",
}


def is_number(x: Any) -> bool:
    """True for real numbers (numpy scalars included), False for bools and None."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def fmt_num(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``—`` for None; NaN/inf spelled out."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if not is_number(x):
        return str(x)
    f = float(x)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "∞" if f > 0 else "−∞"
    if f == int(f) and abs(f) < 1e6:
        return str(int(f))
    return f"{f:.{digits}g}"


def fmt_pair(value: Any, threshold: Any) -> tuple[str, str]:
    """Format a measured value and its threshold with enough digits to tell them apart.

    ``0.4996`` against ``0.5`` must not read "0.5 ≥ 0.5 failed", so digits grow until the two
    strings differ (or 8 significant digits are reached). ``threshold`` may be a [lo, hi] list.
    """
    bounds = list(threshold) if isinstance(threshold, (list, tuple)) else [threshold]
    for digits in range(3, 9):
        v = fmt_num(value, digits)
        ts = [fmt_num(t, digits) for t in bounds]
        clash = any(
            t_s == v and is_number(value) and is_number(t) and float(t) != float(value)
            for t, t_s in zip(bounds, ts)
        )
        if not clash:
            break
    t_text = f"[{', '.join(ts)}]" if isinstance(threshold, (list, tuple)) else ts[0]
    return v, t_text


def fmt_op(op: str | None) -> str:
    """The operator as a symbol (``>=`` -> ``≥``); unknown operators are shown as written."""
    if not op:
        return ""
    return OP_SYMBOLS.get(op.strip(), op)


def fmt_duration(seconds: float | None) -> str:
    """``0.42 s``, ``12.3 s``, ``3 min 04 s``, ``1 h 02 min``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def fmt_prob(p: float) -> str:
    """A probability as a percentage (``63.2 %``, ``< 0.1 %``)."""
    pct = 100.0 * float(p)
    if 0 < pct < 0.1:
        return "< 0.1 %"
    return f"{pct:.1f} %"
