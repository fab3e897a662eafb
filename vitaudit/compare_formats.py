"""A :class:`~vitaudit.compare.Comparison` as text (terminals, CI logs), Markdown (CI job summaries,
pull-request comments) or JSON (machines)."""
from __future__ import annotations

import json

from .compare import Change, Comparison, Delta, Flip, Row
from .significance import Shift

FORMATS = ("text", "markdown", "json")


def num(x) -> str:
    if isinstance(x, bool) or x is None:
        return "—"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(num(v) for v in x) + "]"
    if isinstance(x, (int, float)):
        return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return str(x)


def _against(r: Row) -> str:
    if r.threshold is None or not r.op:
        return ""
    base = f", baseline {num(r.baseline)}" if r.baseline is not None else ""
    return f" (expected {r.op} {num(r.threshold)}{base})"


def with_ci(r: Row) -> str:
    """``0.758 [0.741, 0.774]`` (a dataset aggregate with its interval), or the value alone."""
    if r.ci_low is None or r.ci_high is None:
        return num(r.value)
    return f"{num(r.value)} [{num(r.ci_low)}, {num(r.ci_high)}]"


def _value_move(c: Change) -> str:
    if c.old.value is None and c.new.value is None:
        return ""
    return f"value {with_ci(c.old)} -> {with_ci(c.new)}{_against(c.new)}"


def shift_text(s: Shift) -> str:
    """``mean of the value 0.76 -> 0.04 (-0.72), p = 0.0001 (paired permutation, 150 images)``."""
    how = {True: ", worse", False: ", better", None: ""}[s.worse]
    n = f"{s.n} shared images" if s.test.startswith("paired") else f"{s.n} images, none shared"
    return (f"mean {s.quantity} {num(s.old_mean)} -> {num(s.new_mean)} ({s.difference:+.3g}{how}), "
            f"p = {s.p_value:.2g} ({s.test}, {n})")


def _verdict(passed: bool) -> str:
    return "pass" if passed else "fail"


def headline(cmp: Comparison) -> str:
    """One line: regressed or not, and the counts."""
    parts = [f"{len(cmp.newly_failing)} newly failing", f"{len(cmp.newly_passing)} newly passing"]
    if cmp.flips:
        parts.append(f"{len(cmp.flips)} per-image verdicts flipped")
    parts.append(f"{len(cmp.deltas)} values moved by more than {cmp.tolerance:g}")
    if cmp.shifts or cmp.noise:
        worse = len(cmp.significantly_worse)
        parts.append(f"{len(cmp.shifts)} dataset aggregates changed significantly at {cmp.significance:g} "
                     f"({worse} for the worse), {len(cmp.noise)} within noise")
    parts.append(f"{len(cmp.added)} added, {len(cmp.removed)} removed")
    status = "REGRESSED" if cmp.regressed else "no regression"
    return f"{status}: " + ", ".join(parts)


# ------------------------------------------------------------------ text
def to_text(cmp: Comparison) -> str:
    lines = [f"vitaudit compare: {cmp.old} -> {cmp.new}", headline(cmp)]

    def section(title: str, items: list, render) -> None:
        if items:
            lines.append("")
            lines.append(f"{title} ({len(items)}):")
            lines.extend("  " + render(x) for x in items)

    def change(c: Change) -> str:
        move = _value_move(c)
        return f"{c.new.where}  {c.old.outcome} -> {c.new.outcome}  {c.new.text!r}" + (f"  {move}" if move else "")

    def delta(d: Delta) -> str:
        how = {True: ", worse", False: ", better", None: ""}[d.worse]
        return f"{d.new.where}  {d.new.text!r}  {with_ci(d.old)} -> {with_ci(d.new)} ({d.delta:+.3g}{how})"

    def tested(s: Shift) -> str:
        return f"{s.where}  {s.text!r}  {shift_text(s)}"

    def flip(f: Flip) -> str:
        return (f"{f.where}  {f.image}  {_verdict(f.old_passed)} -> {_verdict(f.new_passed)}  "
                f"({num(f.old_value)} -> {num(f.new_value)})")

    def row(r: Row) -> str:
        return f"{r.where}  [{r.outcome}]  {r.text!r}"

    section("newly failing", cmp.newly_failing, change)
    section("newly passing", cmp.newly_passing, change)
    section("outcome changed", cmp.other_changes, change)
    section(f"significant changes (paired test, p < {cmp.significance:g})", cmp.shifts, tested)
    section("within noise (not significant)", cmp.noise, tested)
    section("per-image verdicts flipped", cmp.flips, flip)
    section(f"values moved by more than {cmp.tolerance:g}", cmp.deltas, delta)
    section("added", cmp.added, row)
    section("removed", cmp.removed, row)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ markdown
def cell(text: object) -> str:
    """Text safe inside a Markdown table cell (no pipes, no line breaks, no HTML)."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
    return s.replace("<", "&lt;").replace(">", "&gt;")


def code(text: object) -> str:
    s = str(text).replace("|", "\\|").replace("\n", " ").replace("`", "'")
    return f"`{s}`"


def to_markdown(cmp: Comparison, title: str = "vitaudit: changes since the previous run") -> str:
    icon = ":x:" if cmp.regressed else ":white_check_mark:"
    lines = [f"### {title}", "", f"{icon} **{cell(headline(cmp))}**", "",
             f"Compared {code(cmp.old)} with {code(cmp.new)}."]

    def table(heading: str, header: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        lines.extend(["", f"#### {heading} ({len(rows)})", "", "| " + " | ".join(header) + " |",
                      "|" + "---|" * len(header)])
        lines.extend("| " + " | ".join(r) + " |" for r in rows)

    def changes(items: list[Change]) -> list[list[str]]:
        return [[code(c.new.where), cell(c.new.text), f"{c.old.outcome} → **{c.new.outcome}**",
                 cell(_value_move(c))] for c in items]

    table("Newly failing", ["where", "expectation", "outcome", "value"], changes(cmp.newly_failing))
    table("Newly passing", ["where", "expectation", "outcome", "value"], changes(cmp.newly_passing))
    table("Outcome changed", ["where", "expectation", "outcome", "value"], changes(cmp.other_changes))
    shift_rows = [[code(s.where), cell(s.text), cell(shift_text(s))] for s in cmp.shifts]
    table(f"Significant changes (paired test, p &lt; {cmp.significance:g})", ["where", "expectation", "change"], shift_rows)
    table("Within noise (not significant)", ["where", "expectation", "change"],
          [[code(s.where), cell(s.text), cell(shift_text(s))] for s in cmp.noise])
    table("Per-image verdicts flipped", ["where", "image", "verdict", "value"],
          [[code(f.where), code(f.image), f"{_verdict(f.old_passed)} → **{_verdict(f.new_passed)}**",
            f"{num(f.old_value)} → {num(f.new_value)}"] for f in cmp.flips])
    table(f"Values moved by more than {cmp.tolerance:g}", ["where", "expectation", "old", "new", "change"],
          [[code(d.new.where), cell(d.new.text), cell(with_ci(d.old)), cell(with_ci(d.new)),
            f"{d.delta:+.3g}" + {True: " (worse)", False: " (better)", None: ""}[d.worse]] for d in cmp.deltas])
    table("Added", ["where", "expectation", "outcome"],
          [[code(r.where), cell(r.text), r.outcome] for r in cmp.added])
    table("Removed", ["where", "expectation", "outcome"],
          [[code(r.where), cell(r.text), r.outcome] for r in cmp.removed])
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ json
def to_json(cmp: Comparison) -> str:
    from .per_image import plain  # per-image lists read from audit.values.parquet are columns

    return json.dumps(cmp.to_dict(), indent=2, ensure_ascii=False, allow_nan=False, default=plain) + "\n"


def render(cmp: Comparison, fmt: str = "text") -> str:
    """``cmp`` in one of :data:`FORMATS`."""
    return {"text": to_text, "markdown": to_markdown, "json": to_json}[fmt](cmp)
