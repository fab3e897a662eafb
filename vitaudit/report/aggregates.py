"""View-model of dataset (aggregate) expectations: histogram geometry, examples, per-class rows.

An aggregate card draws what :class:`~vitaudit.results.AggregateView` carries: a histogram of
the per-image values as inline SVG whose bars are computed here (so tests can check them
against the counts and the page needs neither the network nor a script to show them), the
per-image or aggregate threshold marked on it, the worst and best images as overlays with the
region outlined, and the per-class table. The per-image list itself (``ExpectationResult
.per_image``) never reaches the HTML, only ``audit.json``: that is what keeps the page small
however many images a dataset has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

import numpy as np

from vitaudit.results import AggregateView, ClassRow, Example, ExpectationResult, Panel

from vitaudit.verdict_text import NOISE

from .format import fmt_num, fmt_op, fmt_pair, fmt_prob, is_number

if TYPE_CHECKING:  # pragma: no cover - only for annotations (context imports this module)
    from .pics import Pic, PicTable

#: At most this many worst / best images are drawn per card (the page-size bound relies on it).
MAX_WORST = 6
MAX_BEST = 3
#: Histogram drawing area, in SVG user units (the SVG scales to the card's width).
HIST_W, HIST_H = 320.0, 110.0
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 6.0, 6.0, 14.0, 16.0
#: Operators of a per-image check whose passing zone can be drawn on the value axis.
_NUMERIC_OPS = frozenset({">=", ">", "<=", "<", "between", "in", "outside", "not between", "not in"})


def histogram(values: Iterable[float | None], bins: int = 20) -> tuple[list[float], list[int]]:
    """``(edges, counts)`` of the finite values, for :class:`~vitaudit.results.AggregateView`.

    Values all in [0, 1] (masses, IoU, shares, ...) get fixed bins over [0, 1] so cards compare
    at a glance; others span their min..max. ``None``/NaN are left out. No value: ``([], [])``.
    """
    v = np.asarray([float(x) for x in values if is_number(x) and math.isfinite(float(x))], dtype=np.float64)
    if v.size == 0:
        return [], []
    lo, hi = float(v.min()), float(v.max())
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    elif lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return [float(e) for e in edges], [int(c) for c in counts]


@dataclass
class Bar:
    """One histogram bar in SVG units; ``zone`` says whether its values pass the per-image check."""

    x: float
    y: float
    w: float
    h: float
    count: int
    lo: str
    hi: str
    zone: str  # "pass" | "fail" | "mixed" | "plain"


@dataclass
class Mark:
    """A vertical line on the histogram (a threshold, or the aggregate's value)."""

    x: float
    kind: str  # "threshold" | "value"
    label: str
    off_scale: bool = False


@dataclass
class Histogram:
    """A histogram ready to draw: bars, marks, the value axis' end labels, and a text summary."""

    width: float
    height: float
    base_y: float  # y of the value axis
    bars: list[Bar]
    marks: list[Mark]
    axis: list[tuple[float, str, str]]  # (x, text, text-anchor)
    n: int
    max_count: int
    summary: str  # what a screen reader says
    ci: tuple[float, float, str] | None = None  # the aggregate's confidence interval: x from, x to, label


@dataclass
class ExampleView:
    """One worst/best image: its panels (overlay, outline layer over it) and formatted value."""

    e: Example
    panels: list[tuple[Panel, "Pic", "Pic"]]
    value_text: str
    verdict: str  # "passes" | "fails" | ""


@dataclass
class ClassRowView:
    """One row of the per-class table, formatted; ``current`` marks the card's own class."""

    row: ClassRow
    value_text: str
    share_text: str
    verdict: str  # "passed" | "failed" | ""
    current: bool


@dataclass
class AggregateCard:
    """Everything an aggregate card shows besides what every card shows."""

    subject: str  # "dataset scenes · class cat"
    measure: str  # "mean attention_mass", "share of images with attention_mass ≥ 0.3", "accuracy"
    n_images: int | None
    n_text: str  # "10,000"
    share_text: str  # "83.0 % of 10000 images pass (attention_mass ≥ 0.3)"
    histogram: Histogram | None
    histogram_note: str  # why there is no histogram, when there is none
    worst: list[ExampleView]
    best: list[ExampleView]
    classes: list[ClassRowView]
    not_counted: list[str]
    n_not_counted: int
    n_without_region: int
    ci_text: str = ""  # "95% interval [0.741, 0.774] (bca bootstrap)"
    noise_text: str = ""  # "within noise (could flip on another sample)" when the threshold is inside it


@dataclass
class ClassCell:
    """One (class, per-class expectation) cell of a dataset's class summary."""

    card_id: str
    outcome: str
    value_text: str


@dataclass
class ClassSummary:
    """A dataset's per-class expectations side by side: one row per class, one column per expectation."""

    columns: list[tuple[str, str, str]]  # (first card id, "file:line", the expectation's text)
    rows: list[tuple[str, list[ClassCell | None]]] = field(default_factory=list)


# ---------------------------------------------------------------- small formatters

def subject_text(r: ExpectationResult) -> str:
    """What an expectation is about, for the "Needs attention" list and card heads."""
    if r.dataset is not None:
        return f"dataset {r.dataset}" + (f" · class {r.group}" if r.group is not None else "")
    if r.image is not None:
        return f"image {r.image}"
    return ""


def measure_text(r: ExpectationResult, view: AggregateView | None) -> str:
    """The aggregate's name with the metric (and the per-image check for the share form)."""
    metric = r.metric or "value"
    agg = (r.aggregate or "").strip()
    if agg == "accuracy":
        return "accuracy"
    if agg == "share":
        check = _check_text(metric, view.per_image_op if view else None, view.per_image_threshold if view else None)
        return f"share of images with {check}"
    if agg.startswith("p") and agg[1:].replace(".", "", 1).isdigit():
        n = agg[1:]
        last = int(float(n)) % 100 if float(n) == int(float(n)) else -1
        suffix = "th" if last in (11, 12, 13) or last < 0 else {1: "st", 2: "nd", 3: "rd"}.get(last % 10, "th")
        return f"{n}{suffix} percentile of {metric}"
    return f"{agg} {metric}".strip()


def _check_text(metric: str, op: str | None, threshold: Any) -> str:
    if not op:
        return metric
    if threshold is None:
        return f"{metric} {fmt_op(op)}"
    return f"{metric} {fmt_op(op)} {fmt_pair(None, threshold)[1]}"


def _finite(x: Any) -> bool:
    return is_number(x) and math.isfinite(float(x))


def _share_text(view: AggregateView, n: int | None, metric: str, aggregate: str | None) -> str:
    if not _finite(view.share_passing):
        return ""
    of = f" of {n:,} images" if n is not None else ""
    if aggregate == "accuracy":
        return f"{fmt_prob(float(view.share_passing))}{of} classified correctly"  # type: ignore[arg-type]
    check = _check_text(metric, view.per_image_op, view.per_image_threshold)
    return f"{fmt_prob(float(view.share_passing))}{of} pass ({check})"  # type: ignore[arg-type]


# ---------------------------------------------------------------- histogram

def _bounds(threshold: Any) -> list[float]:
    items = threshold if isinstance(threshold, (list, tuple)) else [threshold]
    return [float(t) for t in items if _finite(t)]


def _passes(op: str, bounds: list[float], x: float) -> bool | None:
    """Whether value ``x`` meets ``op bounds`` (None when the op is not a numeric check)."""
    if op in (">=", ">", "<=", "<") and len(bounds) == 1:
        t = bounds[0]
        return {">=": x >= t, ">": x > t, "<=": x <= t, "<": x < t}[op]
    if op in ("between", "in", "outside", "not between", "not in") and len(bounds) == 2:
        inside = min(bounds) <= x <= max(bounds)
        return inside if op in ("between", "in") else not inside
    return None


def _zone(op: str | None, bounds: list[float], lo: float, hi: float) -> str:
    """``pass``/``fail`` when the whole bin [lo, hi) is on one side of the per-image check."""
    if not op or op not in _NUMERIC_OPS or not bounds:
        return "plain"
    # sample the bin's ends and every threshold inside it: the check is piecewise constant
    inner = [b for b in bounds if lo < b < hi]
    probes = [lo + 1e-9 * (hi - lo), *inner, hi - 1e-9 * (hi - lo)]
    results = {_passes(op, bounds, x) for x in probes}
    if results == {True}:
        return "pass"
    if results == {False}:
        return "fail"
    return "mixed" if None not in results else "plain"


def build_histogram(r: ExpectationResult, view: AggregateView) -> tuple[Histogram | None, str]:
    """The card's histogram, or ``None`` and a one-line reason (no values, malformed data)."""
    edges, counts = list(view.edges or []), list(view.counts or [])
    if not edges and not counts:
        return None, "no per-image values to draw"
    if len(edges) != len(counts) + 1 or not all(_finite(e) for e in edges) \
            or any(not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 0 for c in counts) \
            or any(b < a for a, b in zip(edges, edges[1:])):
        return None, "histogram data is malformed"
    e = [float(x) for x in edges]
    lo, hi = e[0], e[-1]
    span = (hi - lo) or 1.0
    plot_w = HIST_W - _PAD_L - _PAD_R
    plot_h = HIST_H - _PAD_T - _PAD_B
    base_y = _PAD_T + plot_h
    max_count = max(counts) if counts else 0

    def x_of(v: float) -> float:
        return _PAD_L + plot_w * (min(max(v, lo), hi) - lo) / span

    op = view.per_image_op if r.aggregate == "share" else None
    per_bounds = _bounds(view.per_image_threshold) if r.aggregate == "share" else []
    bars = []
    for i, c in enumerate(counts):
        x0, x1 = x_of(e[i]), x_of(e[i + 1])
        h = plot_h * c / max_count if max_count else 0.0
        bars.append(Bar(x=round(x0, 2), y=round(base_y - h, 2), w=round(max(x1 - x0 - 0.6, 0.4), 2), h=round(h, 2),
                        count=int(c), lo=fmt_num(e[i]), hi=fmt_num(e[i + 1]), zone=_zone(op, per_bounds, e[i], e[i + 1])))
    marks: list[Mark] = []
    if r.aggregate == "share":
        for b in per_bounds:
            marks.append(Mark(x=round(x_of(b), 2), kind="threshold", label=f"per-image threshold {fmt_num(b)}",
                              off_scale=not lo <= b <= hi))
    elif r.aggregate != "accuracy":  # mean, median, p90...: the aggregate is in the values' units
        for b in _bounds(r.threshold):
            marks.append(Mark(x=round(x_of(b), 2), kind="threshold", label=f"threshold {fmt_num(b)}",
                              off_scale=not lo <= b <= hi))
        if _finite(r.value):
            v = float(r.value)  # type: ignore[arg-type]
            marks.append(Mark(x=round(x_of(v), 2), kind="value", label=f"{r.aggregate or 'value'} {fmt_num(v)}",
                              off_scale=not lo <= v <= hi))
    ci = None
    if r.aggregate not in ("share", "accuracy") and _finite(r.ci_low) and _finite(r.ci_high):
        lo_ci, hi_ci = float(r.ci_low), float(r.ci_high)  # type: ignore[arg-type]
        label = f"{fmt_num((r.ci_level or 0.95) * 100)}% interval of the {r.aggregate or 'value'} [{fmt_num(lo_ci)}, {fmt_num(hi_ci)}]"
        ci = (round(x_of(lo_ci), 2), round(max(x_of(hi_ci), x_of(lo_ci) + 1.0), 2), label)
    n = int(sum(counts))
    axis = [(round(x_of(lo), 2), fmt_num(lo), "start"), (round(x_of((lo + hi) / 2), 2), fmt_num((lo + hi) / 2), "middle"),
            (round(x_of(hi), 2), fmt_num(hi), "end")]
    summary = (f"histogram of {n} per-image values from {fmt_num(lo)} to {fmt_num(hi)} in {len(counts)} bins"
               + "".join(f"; {m.label}" for m in marks) + (f"; {ci[2]}" if ci else ""))
    return Histogram(width=HIST_W, height=HIST_H, base_y=round(base_y, 2), bars=bars, marks=marks, axis=axis,
                     n=n, max_count=int(max_count), summary=summary, ci=ci), ""


# ---------------------------------------------------------------- examples and classes

def example_uris(r: ExpectationResult) -> Iterable[str | None]:
    """Every picture an aggregate card shows (for :class:`~.pics.PicTable`'s usage counts)."""
    view = r.aggregate_view
    if view is None:
        return
    for ex in shown_examples(view.examples):
        for p in ex.panels:
            yield p.uri
            yield p.outline


def shown_examples(examples: Sequence[Example]) -> list[Example]:
    """The examples a card shows: the worst :data:`MAX_WORST` and best :data:`MAX_BEST`, in the order the run gave them."""
    worst = [e for e in examples if e.role == "worst"][:MAX_WORST]
    best = [e for e in examples if e.role == "best"][:MAX_BEST]
    return worst + best


def _example_view(e: Example, pics: "PicTable") -> ExampleView:
    verdict = "" if e.passed is None else ("passes" if e.passed else "fails")
    return ExampleView(e=e, panels=[(p, pics(p.uri), pics(p.outline)) for p in e.panels],
                       value_text=fmt_num(e.value), verdict=verdict)


def _class_row(row: ClassRow, current: str | None) -> ClassRowView:
    share = fmt_prob(float(row.share_passing)) if _finite(row.share_passing) else "—"  # type: ignore[arg-type]
    verdict = "" if row.passed is None else ("passed" if row.passed else "failed")
    return ClassRowView(row=row, value_text=fmt_num(row.value), share_text=share, verdict=verdict,
                        current=current is not None and row.group == current)


def aggregate_card(r: ExpectationResult, pics: "PicTable") -> AggregateCard:
    """The aggregate part of ``r``'s card (``r.dataset`` and ``r.aggregate_view`` are set)."""
    view = r.aggregate_view or AggregateView()
    hist, note = build_histogram(r, view)
    chosen = shown_examples(view.examples)
    return AggregateCard(
        subject=subject_text(r),
        measure=measure_text(r, view),
        n_images=r.n_images,
        n_text=f"{r.n_images:,}" if isinstance(r.n_images, int) else "",
        share_text=_share_text(view, r.n_images, r.metric or "value", r.aggregate),
        histogram=hist,
        histogram_note=note,
        worst=[_example_view(e, pics) for e in chosen if e.role == "worst"],
        best=[_example_view(e, pics) for e in chosen if e.role == "best"],
        classes=[_class_row(c, r.group) for c in view.per_class],
        not_counted=list(view.not_counted),
        n_not_counted=int(view.n_not_counted or 0),
        n_without_region=int(view.n_without_region or 0),
        ci_text=ci_text(r),
        noise_text=NOISE if r.within_noise else "",
    )


class _Card(Protocol):
    """What :func:`class_summary` reads of a card (:class:`.context.CardView`)."""

    id: str
    r: ExpectationResult
    value_text: str


#: How each interval was made, in words.
_CI_METHODS = {"bca": "BCa bootstrap", "t": "Student's t", "order-statistic": "order statistics",
               "percentile": "percentile bootstrap", "wilson": "Wilson", "constant": "every value equal"}


def ci_text(r: ExpectationResult) -> str:
    """``95% interval [0.741, 0.774] (BCa bootstrap)``, ``... with 95% confidence required``; "" without one."""
    if not (_finite(r.ci_low) and _finite(r.ci_high)):
        return ""
    share = r.aggregate in ("share", "accuracy")
    ends = (f"{fmt_prob(float(r.ci_low))}, {fmt_prob(float(r.ci_high))}" if share  # type: ignore[arg-type]
            else f"{fmt_num(r.ci_low)}, {fmt_num(r.ci_high)}")
    level = fmt_num(float(r.ci_level or 0.95) * 100)
    how = _CI_METHODS.get(str(r.ci_method), str(r.ci_method or ""))
    text = f"{level}% interval [{ends}]" + (f" ({how})" if how else "")
    if r.confidence is not None:
        text += f"; the verdict needs all of it past the threshold ({level}% confidence)"
    return text


def class_summary(cards: Sequence[_Card]) -> ClassSummary | None:
    """The per-class items of one dataset as a class x expectation table (None without any)."""
    per_class = [c for c in cards if c.r.dataset is not None and c.r.group is not None]
    if not per_class:
        return None
    columns: dict[tuple[str, int, str], str] = {}
    for c in per_class:
        columns.setdefault((c.r.file, c.r.line, c.r.text), c.id)
    keys = list(columns)
    classes = list(dict.fromkeys(c.r.group for c in per_class))
    cells: dict[tuple[str, tuple[str, int, str]], ClassCell] = {}
    for c in per_class:
        cells[(c.r.group, (c.r.file, c.r.line, c.r.text))] = ClassCell(card_id=c.id, outcome=c.r.outcome, value_text=c.value_text)  # type: ignore[index]
    return ClassSummary(
        columns=[(columns[k], f"{k[0]}:{k[1]}", k[2]) for k in keys],
        rows=[(g, [cells.get((g, k)) for k in keys]) for g in classes],  # type: ignore[misc]
    )
