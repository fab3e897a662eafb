"""The report's "changed since" section and per-card deltas, from a :class:`~vitaudit.compare.Comparison`
of an earlier run (``--audit-compare OLD.json``) with this one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .format import fmt_num

if TYPE_CHECKING:
    from vitaudit.compare import Comparison


@dataclass
class ChangeEntry:
    """One line of the section; ``card`` is the id of the card to jump to (None: removed)."""

    card: str | None
    where: str
    text: str
    detail: str
    tone: str  # "worse" | "better" | "neutral"


@dataclass
class ChangesView:
    old: str
    headline: str
    regressed: bool
    groups: list[tuple[str, list[ChangeEntry]]] = field(default_factory=list)


def _values(old, new) -> str:
    if old is None and new is None:
        return ""
    return f"{fmt_num(old)} → {fmt_num(new)}"


def changes_view(cmp: "Comparison", cards: dict[str, str]) -> ChangesView:
    """The section's content; ``cards`` maps node ids to card ids."""
    from vitaudit.compare_formats import headline, shift_text

    def change(c, tone: str) -> ChangeEntry:
        move = _values(c.old.value, c.new.value)
        return ChangeEntry(cards.get(c.new.nodeid), c.new.where, c.new.text,
                           f"{c.old.outcome} → {c.new.outcome}" + (f" · {move}" if move else ""), tone)

    groups = [
        ("Newly failing", [change(c, "worse") for c in cmp.newly_failing]),
        ("Newly passing", [change(c, "better") for c in cmp.newly_passing]),
        ("Outcome changed", [change(c, "neutral") for c in cmp.other_changes]),
        ("Per-image verdicts flipped", [
            ChangeEntry(cards.get(f.nodeid), f.where, f.image,
                        f"{'pass' if f.old_passed else 'fail'} → {'pass' if f.new_passed else 'fail'} · "
                        f"{_values(f.old_value, f.new_value)}", "better" if f.new_passed else "worse")
            for f in cmp.flips]),
        (f"Significant changes (paired test, p < {cmp.significance:g})", [
            ChangeEntry(cards.get(s.nodeid), s.where, s.text, shift_text(s),
                        {True: "worse", False: "better", None: "neutral"}[s.worse]) for s in cmp.shifts]),
        (f"Values moved by more than {cmp.tolerance:g}", [
            ChangeEntry(cards.get(d.new.nodeid), d.new.where, d.new.text,
                        f"{_values(d.old.value, d.new.value)} ({d.delta:+.3g})",
                        {True: "worse", False: "better", None: "neutral"}[d.worse])
            for d in cmp.deltas]),
        ("Added", [ChangeEntry(cards.get(r.nodeid), r.where, r.text, r.outcome,
                               "worse" if r.failing else "neutral") for r in cmp.added]),
        ("Removed", [ChangeEntry(None, r.where, r.text, f"was {r.outcome}", "neutral") for r in cmp.removed]),
    ]
    return ChangesView(cmp.old, headline(cmp), cmp.regressed, [(t, e) for t, e in groups if e])


def card_delta(cmp: "Comparison", nodeid: str, value: float | None, outcome: str) -> str:
    """The line a card shows about the earlier run: ``since OLD: 0.61 → 0.41 (-0.2), was passed``."""
    old = cmp.before.get(nodeid)
    if old is None:
        return f"new since {cmp.old}"
    parts = []
    if old.value is not None and value is not None and old.value != value:
        parts.append(f"{_values(old.value, value)} ({value - old.value:+.3g})")
    if old.outcome != outcome:
        parts.append(f"was {old.outcome}")
    return f"since {cmp.old}: " + (", ".join(parts) if parts else "unchanged")
