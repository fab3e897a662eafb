"""What measuring one expectation gives (:class:`Evaluation`), and how its numbers are written.

Apart from :mod:`.evaluate` so that what it uses (:mod:`.value_baselines`) can say the same
numbers the same way without importing the evaluator back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vitaudit.verdict_text import fmt  # noqa: F401  (one way of writing numbers; re-exported)

if TYPE_CHECKING:
    from vitaudit.explanation import Explanation


@dataclass
class Evaluation:
    """What an expectation measured, for the verdict and for its card."""

    passed: bool
    value: float | None
    summary: str  # "mass in 'goat' = 0.213 (expected > 0.4)"
    maps: list[tuple[str, "Explanation"]] = field(default_factory=list)  # (title, explanation) shown on the card
    mask: np.ndarray | None = None
    extra_panels: list[tuple[str, np.ndarray, str]] = field(default_factory=list)  # (title, map or rgb, kind)
    topk: list[tuple[str, int, float]] | None = None
    note: str = ""
    threshold: float | None = None  # a relative threshold as resolved for this run
    baseline: float | None = None  # the recorded value it was made from
