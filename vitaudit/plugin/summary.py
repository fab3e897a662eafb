"""A Markdown summary of an audit run for CI: counts by outcome, every failure with its file:line and
value against threshold, and where the report is.

``--audit-summary PATH`` writes it to a file; when ``GITHUB_STEP_SUMMARY`` is set (GitHub Actions),
it is appended there without any option, so the job's page shows it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from vitaudit.compare import Row
from vitaudit.compare_formats import cell, code, num
from vitaudit.report.jsondoc import FAILING
from vitaudit.results import OUTCOMES, RunResults

if TYPE_CHECKING:
    from vitaudit.compare import Comparison

#: Failures listed in full; the rest are counted (a job summary is limited to 1 MiB).
MAX_LISTED = 50
#: Characters of a failure message shown in its table cell (the report has the whole of it).
MAX_MESSAGE = 300


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _against(r) -> str:
    if r.value is None and r.threshold is None:
        return ""
    text = num(r.value)
    if r.op and r.threshold is not None:
        base = f", baseline {num(r.baseline)}" if r.baseline is not None else ""
        text += f" (expected {r.op} {num(r.threshold)}{base})"
    return cell(text)


def markdown(run: RunResults, report: Path | None = None, comparison: "Comparison | None" = None) -> str:
    """The summary's text."""
    counts = {o: 0 for o in OUTCOMES}
    for r in run.results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    failing = [r for r in run.results if r.outcome in FAILING]
    status = "interrupted" if run.interrupted else ("failed" if failing else "passed")
    icon = {"passed": ":white_check_mark:", "failed": ":x:", "interrupted": ":warning:"}[status]
    lines = [f"## vitaudit: {icon} {status}", "",
             f"{len(run.results)} expectations: " + ", ".join(f"{n} {o}" for o, n in counts.items() if n), ""]
    lines += ["| outcome | count |", "|---|---|"] + [f"| {o} | {n} |" for o, n in counts.items() if n]
    if failing:
        lines += ["", f"### Failures ({len(failing)})", "",
                  "| where | expectation | value | message |", "|---|---|---|---|"]
        for r in failing[:MAX_LISTED]:
            message = r.message.splitlines()[0] if r.message else ""
            where = Row.from_dict(r.to_dict()).where  # with [image] for "*" items
            lines.append(f"| {code(where)} | {cell(r.text)} | {_against(r)} | {cell(clip(message))} |")
        if len(failing) > MAX_LISTED:
            lines.append(f"\n... and {len(failing) - MAX_LISTED} more (see the report)")
    if comparison is not None:
        from vitaudit.compare_formats import to_markdown

        lines += ["", to_markdown(comparison, title="Changes since " + comparison.old).rstrip()]
    if report is not None:
        lines += ["", f"Report: {code(report)} (JSON: {code(report.with_suffix('.json'))})"]
    return "\n".join(lines) + "\n"


def write(text: str, path: str | Path | None) -> list[Path]:
    """Write ``text`` to ``path`` (when given) and append it to ``$GITHUB_STEP_SUMMARY`` (when set)."""
    from vitaudit.report.atomic import atomic_write_text

    written = []
    if path:
        written.append(atomic_write_text(path, text))
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    if step:
        with open(step, "a", encoding="utf-8") as f:
            f.write(text)
        written.append(Path(step))
    return written
