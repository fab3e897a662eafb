"""How a dataset verdict reads: the value with its confidence interval, the threshold, and the noise.

One place for the words the terminal, the report's cards and ``audit.json``'s messages share:
``mean = 0.758 [0.741, 0.774] over 150 images (expected > 0.75)``; ``... (expected > 0.75 with
95% confidence); the interval's lower end 0.741 is not above 0.75``; and, for a plain threshold
inside the interval, ``within noise: 0.75 is inside the 95% interval, so the verdict could flip on
another sample``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vitaudit.aggregate import Verdict
    from vitaudit.intervals import Interval
    from vitaudit.spec import Expectation

#: What the terminal and the cards say of a verdict whose threshold lies inside its interval.
NOISE = "within noise (could flip on another sample)"


def fmt(x: float) -> str:
    """Three significant digits, as every failure sentence writes values."""
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def relative_said(relative) -> str:
    """How a failure names a resolved relative threshold after its number: ``baseline - 0.05 with
    baseline 0.6``; just ``the baseline`` when the threshold is the baseline itself (``>= baseline``)."""
    if relative.op == "=":
        return "the baseline"
    return f"{relative.text} with baseline {fmt(relative.baseline)}"


def pct(level: float) -> str:
    """``0.95`` -> ``95%``."""
    return f"{level * 100:g}%"


def interval_text(ci: "Interval | None", share: bool = False) -> str:
    """`` [0.741, 0.774]`` (`` [0.741, 0.774] at 90%`` at another level than 95%); ``""`` without one."""
    if ci is None:
        return ""
    if share:
        ends = f"{ci.low:.1%}, {ci.high:.1%}"
    else:
        ends = f"{fmt(ci.low)}, {fmt(ci.high)}"
    at = "" if abs(ci.level - 0.95) < 1e-9 else f" at {pct(ci.level)}"
    return f" [{ends}]{at}"


def _bar(exp: "Expectation") -> tuple[str, float | None]:
    if exp.aggregate == "share":
        return ">=", exp.share
    return str(exp.op), exp.value


def confidence_note(exp: "Expectation", v: "Verdict") -> str:
    """Why a ``with N% confidence`` verdict failed although (or because) of its interval; ``""`` otherwise."""
    if v.confidence is None or v.passed or v.value is None:
        return ""
    if v.interval is None:
        return (f"no confidence interval over {v.n_images} image{'s' if v.n_images != 1 else ''}, so "
                f"{pct(v.confidence)} confidence cannot be shown")
    op, bar = _bar(exp)
    if bar is None:
        return ""
    share = exp.aggregate == "share"
    show = (lambda x: f"{x:.1%}") if share else fmt
    wanted = f"{bar:.0%}" if share else fmt(bar)
    if op in (">", ">="):
        return f"the interval's lower end {show(v.interval.low)} is not {'above' if op == '>' else 'at least'} {wanted}"
    return f"the interval's upper end {show(v.interval.high)} is not {'below' if op == '<' else 'at most'} {wanted}"


def noise_note(exp: "Expectation", v: "Verdict") -> str:
    """``within noise: 0.75 is inside the 95% interval [...]; the verdict could flip on another sample``."""
    if not v.within_noise or v.interval is None:
        return ""
    _, bar = _bar(exp)
    shown = f"{bar:.0%}" if exp.aggregate == "share" else fmt(float(bar))  # type: ignore[arg-type]
    return (f"within noise: {shown} is inside the {pct(v.interval.level)} interval, so the verdict "
            "could flip on another sample")


def aggregate_summary(exp: "Expectation", v: "Verdict", counted: str | None = None) -> str:
    """The verdict in one clause: ``mean = 0.758 [0.741, 0.774] over 150 images (expected > 0.75)``,
    with the confidence and noise notes after it."""
    counted = counted or f"{v.n_images} images"
    wanted = f" with {pct(v.confidence)} confidence" if v.confidence is not None else ""
    if v.value is None:
        return f"no image counted ({counted})"
    if exp.aggregate == "share":
        said = (f"{v.value:.1%}{interval_text(v.interval, share=True)} of {counted} pass "
                f"(expected at least {exp.share:.0%}{wanted})")
    elif exp.value is None:  # a relative threshold being recorded
        said = f"{exp.aggregate} = {fmt(v.value)}{interval_text(v.interval)} over {counted}"
    else:
        expected = f"{exp.op} {fmt(exp.value)}"
        if exp.relative is not None and exp.relative.baseline is not None:
            expected += f", {relative_said(exp.relative)}"
            if exp.relative.uses_ci and exp.relative.ci is not None:
                expected += f" and ci {fmt(exp.relative.ci)}"
        said = f"{exp.aggregate} = {fmt(v.value)}{interval_text(v.interval)} over {counted} (expected {expected}{wanted})"
    for note in (confidence_note(exp, v), noise_note(exp, v)):
        if note:
            said += f"; {note}"
    return said


def noise_lines(results: list[dict]) -> list[str]:
    """One line per dataset verdict whose threshold lies inside its interval (for the terminal summary):
    ``audits/a.yaml:12 [passed] 'scenes: mean ...': mean = 0.758 [0.741, 0.774]; within noise ...``."""
    lines = []
    for r in results:
        if not r.get("within_noise") or r.get("ci_low") is None:
            continue
        share = r.get("aggregate") == "share"
        value = r.get("value")
        shown = "" if value is None else (f"{value:.1%}" if share else fmt(value))
        ends = (f"{r['ci_low']:.1%}, {r['ci_high']:.1%}" if share else f"{fmt(r['ci_low'])}, {fmt(r['ci_high'])}")
        group = f" [class {r['group']}]" if r.get("group") is not None else ""
        bar = r.get("threshold")
        bar = fmt(bar) if isinstance(bar, (int, float)) and not isinstance(bar, bool) else bar
        lines.append(f"{r.get('file')}:{r.get('line')} [{r.get('outcome')}] {r.get('text')!r}{group}: "
                     f"{r.get('aggregate')} = {shown} [{ends}], threshold {bar}: {NOISE}")
    return lines
