"""Comparing two audit runs: what changed between an older ``audit.json`` and a newer one.

Expectations are matched by node id. The comparison lists those whose verdict changed (newly
failing first), values that moved by more than a tolerance, the images of dataset aggregates whose
per-image verdict flipped, and expectations added or removed. A run *regressed* when an expectation
that did not fail before (or did not exist) fails now: ``vitaudit compare`` then exits 1, so a CI
step can gate on it. Dataset aggregates with per-image values in both runs are also tested for a
significant change (:mod:`vitaudit.significance`): ``shifts`` holds the significant ones, ``noise``
the others; ``--fail-on significant-worse`` fails on a significant change for the worse too. The formats (text, Markdown, JSON) are in :mod:`vitaudit.compare_formats`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .significance import DEFAULT_LEVEL, Shift, shift

#: Outcomes that make a run fail (as ``audit.json``'s status).
FAILING = ("failed", "error")
#: How much a value may move before the comparison lists it (absolute).
DEFAULT_TOLERANCE = 0.01


class CompareError(ValueError):
    """A file that cannot be compared: missing, not JSON, not an audit report."""


@dataclass
class Row:
    """The parts of one expectation's result the comparison uses."""

    nodeid: str
    file: str = ""
    line: int = 0
    text: str = ""
    outcome: str = ""
    value: float | None = None
    op: str | None = None
    threshold: Any = None
    baseline: float | None = None
    per_image: list[dict[str, Any]] | None = None
    subject: str | None = None  # the image (or dataset) key
    aggregate: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def failing(self) -> bool:
        return self.outcome in FAILING

    @property
    def where(self) -> str:
        """``audits/a.yaml:12``, with ``[image]`` when the text does not start with it (``"*"`` items)."""
        where = f"{self.file}:{self.line}" if self.file else self.nodeid
        if self.subject and not self.text.startswith(f"{self.subject}:"):
            where += f" [{self.subject}]"
        return where

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Row":
        value = data.get("value")
        return cls(
            nodeid=str(data["nodeid"]), file=str(data.get("file") or ""), line=int(data.get("line") or 0),
            text=str(data.get("text") or ""), outcome=str(data.get("outcome") or ""),
            value=float(value) if _is_number(value) else None, op=data.get("op"),
            threshold=data.get("threshold"), baseline=data.get("baseline"), per_image=data.get("per_image"),
            subject=data.get("image") or data.get("dataset"), aggregate=data.get("aggregate"),
            ci_low=data.get("ci_low") if _is_number(data.get("ci_low")) else None,
            ci_high=data.get("ci_high") if _is_number(data.get("ci_high")) else None,
        )


@dataclass
class Change:
    """An expectation whose outcome changed."""

    old: Row
    new: Row


@dataclass
class Delta:
    """A value that moved by more than the tolerance; ``worse`` by the expectation's operator
    (``None`` when it has none, e.g. a top-1 check)."""

    old: Row
    new: Row
    delta: float
    worse: bool | None


@dataclass
class Flip:
    """One image of a dataset aggregate whose per-image verdict flipped."""

    nodeid: str
    where: str
    image: str
    old_passed: bool
    new_passed: bool
    old_value: float | None
    new_value: float | None


@dataclass
class Comparison:
    """Everything that changed from ``old`` to ``new``."""

    old: str
    new: str
    tolerance: float
    newly_failing: list[Change] = field(default_factory=list)
    newly_passing: list[Change] = field(default_factory=list)
    other_changes: list[Change] = field(default_factory=list)  # e.g. passed -> skipped
    deltas: list[Delta] = field(default_factory=list)
    flips: list[Flip] = field(default_factory=list)
    added: list[Row] = field(default_factory=list)
    removed: list[Row] = field(default_factory=list)
    before: dict[str, Row] = field(default_factory=dict, repr=False)  # every old row, by node id
    significance: float = DEFAULT_LEVEL
    shifts: list[Shift] = field(default_factory=list)  # dataset aggregates that changed significantly
    noise: list[Shift] = field(default_factory=list)  # tested, and within noise

    @property
    def regressed(self) -> bool:
        """An expectation that passed (or did not exist) fails now."""
        return bool(self.newly_failing) or any(r.failing for r in self.added)

    @property
    def significantly_worse(self) -> list[Shift]:
        """Dataset aggregates that changed significantly for the worse (whatever their verdict)."""
        return [s for s in self.shifts if s.worse is True]

    def failed(self, fail_on: str = "regression") -> bool:
        """Whether ``vitaudit compare`` exits 1: on a regression, and with ``significant-worse`` also on
        a significant change for the worse."""
        return self.regressed or (fail_on == "significant-worse" and bool(self.significantly_worse))

    @property
    def empty(self) -> bool:
        return not (self.newly_failing or self.newly_passing or self.other_changes or self.deltas or self.flips
                    or self.added or self.removed or self.shifts)

    def delta_of(self, nodeid: str) -> Delta | None:
        return next((d for d in self.deltas if d.new.nodeid == nodeid), None)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["before"]
        doc["regressed"] = self.regressed
        doc["significantly_worse"] = len(self.significantly_worse)
        return doc


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def rows_of(doc: dict[str, Any]) -> list[Row]:
    """The rows of an ``audit.json`` document (its full ``run`` when present, for per-image values)."""
    results = (doc.get("run") or {}).get("results")
    if results is None:
        results = doc.get("expectations")
    if not isinstance(results, list):
        raise CompareError("not a vitaudit audit.json (no 'run.results' or 'expectations')")
    rows = doc.get("expectations") if isinstance(doc.get("expectations"), list) else []
    if len(rows) == len(results):  # per-image lists are written once, in the expectation rows
        results = [{**r, "per_image": row.get("per_image")} if r.get("per_image") is None and isinstance(row, dict)
                   and row.get("nodeid") == r.get("nodeid") else r for r, row in zip(results, rows)]
    return [Row.from_dict(r) for r in results]


def load(path: str | Path) -> list[Row]:
    """The rows of an ``audit.json`` file; :class:`CompareError` with the path when it cannot be read."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompareError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CompareError(f"{p}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise CompareError(f"{p}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(doc, dict):
        raise CompareError(f"{p}: not a vitaudit audit.json (a JSON {type(doc).__name__})")
    try:
        from vitaudit.report.values_file import join

        return rows_of(join(doc, p.parent))  # per-image lists kept in audit.values.parquet, if any
    except (CompareError, KeyError, TypeError, ValueError, OSError) as exc:
        raise CompareError(f"{p}: {exc}") from None


def _worse(row: Row, delta: float) -> bool | None:
    op = (row.op or "").strip()
    if op in (">", ">="):
        return delta < 0
    if op in ("<", "<="):
        return delta > 0
    return None


def _flips(old: Row, new: Row) -> list[Flip]:
    if not old.per_image or not new.per_image:
        return []
    before = {str(p.get("image")): p for p in old.per_image}
    out = []
    for p in new.per_image:
        q = before.get(str(p.get("image")))
        if q is None or not isinstance(q.get("passed"), bool) or not isinstance(p.get("passed"), bool):
            continue
        if q["passed"] != p["passed"]:
            out.append(Flip(new.nodeid, new.where, str(p.get("image")), q["passed"], p["passed"],
                            q.get("value"), p.get("value")))
    return sorted(out, key=lambda f: (f.new_passed, f.image))  # newly failing images first


def compare(old: Iterable[Row], new: Iterable[Row], tolerance: float = DEFAULT_TOLERANCE,
            old_name: str = "old", new_name: str = "new", significance: float = DEFAULT_LEVEL) -> Comparison:
    """Compare two runs' rows, matched by node id; test dataset aggregates' changes at ``significance``."""
    before = {r.nodeid: r for r in old}
    after = {r.nodeid: r for r in new}
    out = Comparison(old=old_name, new=new_name, tolerance=tolerance, before=before, significance=significance)
    for nodeid, n in after.items():
        o = before.get(nodeid)
        if o is None:
            out.added.append(n)
            continue
        if o.outcome != n.outcome:
            if n.failing and not o.failing:
                out.newly_failing.append(Change(o, n))
            elif o.failing and not n.failing:
                out.newly_passing.append(Change(o, n))
            else:
                out.other_changes.append(Change(o, n))
        # 1e-12: 0.62 -> 0.61 is not beyond a tolerance of 0.01, whatever the float rounding says.
        if o.value is not None and n.value is not None and abs(n.value - o.value) > tolerance + 1e-12:
            out.deltas.append(Delta(o, n, n.value - o.value, _worse(n, n.value - o.value)))
        out.flips.extend(_flips(o, n))
        if o.per_image and n.per_image and n.aggregate:
            s = shift(o.per_image, n.per_image, aggregate=n.aggregate, op=n.op if n.aggregate != "share" else ">=",
                      level=significance, nodeid=nodeid, where=n.where, text=n.text)
            if s is not None:
                (out.shifts if s.significant else out.noise).append(s)
    out.shifts.sort(key=lambda s: (s.worse is not True, s.p_value))
    out.removed = [r for nodeid, r in before.items() if nodeid not in after]
    out.added.sort(key=lambda r: (not r.failing, r.file, r.line))
    out.deltas.sort(key=lambda d: (d.worse is not True, -abs(d.delta)))
    return out


def compare_files(old: str | Path, new: str | Path, tolerance: float = DEFAULT_TOLERANCE,
                  significance: float = DEFAULT_LEVEL) -> Comparison:
    """Compare two ``audit.json`` files."""
    return compare(load(old), load(new), tolerance, str(old), str(new), significance)
