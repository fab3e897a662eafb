"""Turn a :class:`~vitaudit.results.RunResults` into what the template lays out.

The template stays dumb: every count, grouping, number format and picture reference is
computed here, in plain Python that tests can reach. Pictures are validated (only raster
``data:image/...;base64`` URIs are let through) and de-duplicated: a URI used once is inlined
in its ``<img src>``; one used several times (the original photo shown on every card of an
image, a model's overlay reused by a prediction card) is written once in the JSON data block
and put in place by the report's script.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from vitaudit.results import OUTCOMES, ExpectationResult, ImageView, ModelView, Panel, Prediction, RunResults

from .aggregates import (
    AggregateCard, ClassSummary, aggregate_card, class_summary, example_uris, shown_examples, subject_text,
)
from .jsondoc import FAILING
from .pics import Pic, PicTable, valid_uri  # noqa: F401  (valid_uri: also the report's)
from .format import fmt_duration, fmt_num, fmt_op, fmt_pair, fmt_prob, is_number

#: Outcomes that need a human: the "failures only" filter and "needs attention" list keep these
#: (an xpass is not a failure for pytest, but its xfail marker is now stale).
PROBLEMS = frozenset({"failed", "error", "xpassed"})

#: Environment keys shown first, in this order; the rest follow alphabetically.
ENV_ORDER = ("vitaudit", "python", "torch", "torchvision", "timm", "grad-cam", "numpy", "opencv", "device",
             "executor", "workers", "platform")

def all_uris(run: RunResults) -> Iterable[str | None]:
    """Every picture URI the page will show (for :class:`PicTable`'s usage counts)."""
    for r in run.results:
        yield r.image_uri
        for p in r.panels:
            yield p.uri
            yield p.outline
        yield from example_uris(r)
    for iv in run.images:
        yield iv.uri
        for v in iv.views:
            yield v.overlay
            yield v.layer_grid


@dataclass
class Counts:
    """How many expectations ended with each outcome."""

    by_outcome: dict[str, int] = field(default_factory=lambda: {o: 0 for o in OUTCOMES})

    def add(self, outcome: str) -> None:
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())

    @property
    def problems(self) -> int:
        return sum(n for o, n in self.by_outcome.items() if o in PROBLEMS)


@dataclass
class Gauge:
    """Where the value and the passing zone sit on a 0..1 bar (percentages)."""

    value: float
    zone_from: float
    zone_to: float
    ticks: list[float]
    ci_from: float | None = None  # the value's confidence interval (dataset aggregates), when in [0, 1]
    ci_to: float | None = None


@dataclass
class CardView:
    """One expectation, ready to lay out."""

    id: str
    r: ExpectationResult
    problem: bool
    value_text: str
    op_text: str
    threshold_text: str
    gauge: Gauge | None
    panels: list[tuple[Panel, Pic, Pic]]  # (panel, picture, outline laid over it)
    image: Pic
    topk: list[tuple[Prediction, str, float]]  # prediction, "63.2 %", bar width in %
    stats: list[tuple[str, str]]
    warnings: list[str]
    search: str
    subject: str = ""  # "image cat_001", "dataset scenes · class cat": what the expectation is about
    agg: AggregateCard | None = None  # dataset expectations: histogram, examples, per-class table
    delta: str = ""  # against an earlier run (--audit-compare), see .changes


@dataclass
class ViewCell:
    """One model's view of an image in the side-by-side strip."""

    v: ModelView
    overlay: Pic
    grid: Pic
    top1_text: str
    rows: list[str]
    cols: list[str]


@dataclass
class ImageGroup:
    """The cards of one image (or one dataset) of one audit file, with the models' views of that image."""

    key: str | None
    original: Pic
    views: list[ViewCell]
    cards: list[CardView]
    counts: Counts
    dataset: bool = False  # ``key`` names a dataset: its aggregate cards
    classes: ClassSummary | None = None  # a dataset's per-class items side by side


@dataclass
class FileGroup:
    """One audit file's section."""

    file: str
    images: list[ImageGroup]
    counts: Counts


def _gauge(r: ExpectationResult) -> Gauge | None:
    """A 0..1 bar for fraction-like metrics (mass, IoU, ...); None when the numbers are not in [0, 1]."""
    bounds = r.threshold if isinstance(r.threshold, (list, tuple)) else [r.threshold]
    nums = [r.value, *bounds]
    if not all(is_number(x) and math.isfinite(float(x)) and 0.0 <= float(x) <= 1.0 for x in nums):
        return None
    pct = [100.0 * float(b) for b in bounds]
    op = (r.op or "").strip()
    if op in (">=", ">") and len(pct) == 1:
        zone = (pct[0], 100.0)
    elif op in ("<=", "<") and len(pct) == 1:
        zone = (0.0, pct[0])
    elif op in ("between", "in") and len(pct) == 2:
        zone = (min(pct), max(pct))
    else:
        zone = (0.0, 0.0)
    ci_from = ci_to = None
    if all(is_number(x) and 0.0 <= float(x) <= 1.0 for x in (r.ci_low, r.ci_high)):
        ci_from, ci_to = 100.0 * float(r.ci_low), 100.0 * float(r.ci_high)  # type: ignore[arg-type]
    return Gauge(value=100.0 * float(r.value), zone_from=zone[0], zone_to=zone[1], ticks=pct,  # type: ignore[arg-type]
                 ci_from=ci_from, ci_to=ci_to)


def _stats(map_stats: dict[str, Any] | None) -> tuple[list[tuple[str, str]], list[str]]:
    """Map statistics as (name, text) pairs, plus warnings worth a badge (no signal, unseen pixels)."""
    if not map_stats:
        return [], []
    warnings = []
    if map_stats.get("no_signal"):
        warnings.append("the map has no signal")
    nan_fraction = map_stats.get("nan_fraction")
    if is_number(nan_fraction) and float(nan_fraction) > 0:
        warnings.append(f"{fmt_prob(float(nan_fraction))} of the image not seen")
    stats = [(str(k), fmt_num(v) if not isinstance(v, (list, dict)) else str(v)) for k, v in map_stats.items()]
    return stats, warnings


def _search_text(r: ExpectationResult) -> str:
    parts = [r.nodeid, f"{r.file}:{r.line}", r.text, r.kind, r.outcome, r.message, r.image or "",
             *r.models, *r.methods, r.metric or "", r.region or "",
             r.dataset or "", r.group or "", r.aggregate or ""]
    if r.aggregate_view is not None:  # the images shown (worst / best), never the whole per-image list
        parts += [e.image for e in shown_examples(r.aggregate_view.examples)]
    parts += [p.label for p in r.topk or []]
    parts += [p.title for p in r.panels]
    return " ".join(str(p) for p in parts).lower()


def card_view(index: int, r: ExpectationResult, pics: PicTable) -> CardView:
    """Everything one card shows, formatted."""
    value_text, threshold_text = fmt_pair(r.value, r.threshold)
    stats, warnings = _stats(r.map_stats)
    topk = []
    for p in r.topk or []:
        prob = float(p.prob) if is_number(p.prob) and math.isfinite(float(p.prob)) else 0.0
        topk.append((p, fmt_prob(prob), round(100.0 * min(max(prob, 0.0), 1.0), 1)))
    return CardView(
        id=f"c{index}",
        r=r,
        problem=r.outcome in PROBLEMS,
        value_text=value_text,
        op_text=fmt_op(r.op),
        threshold_text=threshold_text if r.threshold is not None else "",
        gauge=_gauge(r) if r.value is not None and r.threshold is not None else None,
        panels=[(p, pics(p.uri), pics(p.outline)) for p in r.panels],
        image=pics(r.image_uri),
        topk=topk,
        stats=stats,
        warnings=warnings,
        search=_search_text(r),
        subject=subject_text(r),
        agg=aggregate_card(r, pics) if r.dataset is not None and r.aggregate_view is not None else None,
    )


def view_cell(v: ModelView, pics: PicTable) -> ViewCell:
    """One model's overlay and top-1, plus the per-layer x per-head labels when it has a mosaic."""
    top1 = f"{v.top1.label} · {fmt_prob(v.top1.prob)}" if v.top1 is not None else ""
    layers, heads = v.layer_grid_shape or (0, 0)
    return ViewCell(
        v=v,
        overlay=pics(v.overlay),
        grid=pics(v.layer_grid),
        top1_text=top1,
        rows=[f"L{i + 1}" for i in range(int(layers))],
        cols=[f"H{i + 1}" for i in range(int(heads))],
    )


def _group_key(r: ExpectationResult) -> tuple[str, str] | None:
    """("dataset", key) or ("image", key); None for expectations about neither (Python audits)."""
    if r.dataset is not None:
        return ("dataset", r.dataset)
    return ("image", r.image) if r.image is not None else None


def group_results(run: RunResults, pics: PicTable) -> tuple[list[FileGroup], list[CardView]]:
    """Cards grouped by audit file (sorted) then image or dataset (first appearance; cards about
    neither last)."""
    cards = [card_view(i, r, pics) for i, r in enumerate(run.results)]
    views: dict[tuple[str, str], ImageView] = {(iv.file, iv.image): iv for iv in run.images}
    by_file: dict[str, dict[tuple[str, str] | None, list[CardView]]] = {}
    for c in sorted(cards, key=lambda c: (c.r.file, c.r.line, int(c.id[1:]))):
        by_file.setdefault(c.r.file, {}).setdefault(_group_key(c.r), []).append(c)
    for iv in run.images:  # images that have a view but no card still get their strip
        by_file.setdefault(iv.file, {}).setdefault(("image", iv.image), [])
    files = []
    for file in sorted(by_file):
        images, file_counts = [], Counts()
        keys = [k for k in by_file[file] if k is not None] + ([None] if None in by_file[file] else [])
        for key in keys:
            group_cards = by_file[file][key]
            counts = Counts()
            for c in group_cards:
                counts.add(c.r.outcome)
                file_counts.add(c.r.outcome)
            is_dataset = key is not None and key[0] == "dataset"
            iv = views.get((file, key[1])) if key is not None and not is_dataset else None
            images.append(ImageGroup(
                key=key[1] if key is not None else None,
                original=pics(iv.uri) if iv else Pic(),
                views=[view_cell(v, pics) for v in iv.views] if iv else [],
                cards=group_cards,
                counts=counts,
                dataset=is_dataset,
                classes=class_summary(group_cards) if is_dataset else None,
            ))
        files.append(FileGroup(file=file, images=images, counts=file_counts))
    return files, cards


def environment_rows(env: dict[str, Any]) -> list[tuple[str, str]]:
    """The environment table: well-known keys first, then the rest alphabetically."""
    known = [k for k in ENV_ORDER if k in env]
    rest = sorted(k for k in env if k not in ENV_ORDER)
    return [(k, str(env[k])) for k in known + rest]


def build_context(run: RunResults, nonce: str, comparison: Any = None) -> dict[str, Any]:
    """The template's whole context, and the JSON handed to the page's script under ``data``.

    ``comparison`` (a :class:`vitaudit.compare.Comparison` of an earlier run with this one) adds the
    "changed since" section and each card's delta (:mod:`.changes`)."""
    pics = PicTable(all_uris(run))
    files, cards = group_results(run, pics)
    changes = None
    if comparison is not None:
        from .changes import card_delta, changes_view

        for c in cards:
            c.delta = card_delta(comparison, c.r.nodeid, c.r.value, c.r.outcome)
        changes = changes_view(comparison, {c.r.nodeid: c.id for c in cards})
    total, per_model, per_dataset = Counts(), {}, {}
    for r in run.results:
        total.add(r.outcome)
        for m in dict.fromkeys(r.models):
            per_model.setdefault(m, Counts()).add(r.outcome)
        if r.dataset is not None:
            per_dataset.setdefault(r.dataset, Counts()).add(r.outcome)
    models = sorted({m for r in run.results for m in r.models} | {v.model for iv in run.images for v in iv.views})
    failing = sum(total.by_outcome.get(o, 0) for o in FAILING)
    status = "interrupted" if run.interrupted else ("failed" if failing else "passed")
    datasets = sorted(per_dataset)
    data = {
        "images": pics.shared,
        "cards": [
            {"id": c.id, "outcome": c.r.outcome, "file": c.r.file, "models": list(c.r.models),
             "dataset": c.r.dataset, "search": c.search}
            for c in cards
        ],
    }
    return {
        "run": run,
        "nonce": nonce,
        "status": status,
        "outcomes": OUTCOMES,
        "total": total,
        "per_file": [(f.file, f.counts) for f in files],
        "per_model": sorted(per_model.items()),
        "per_dataset": sorted(per_dataset.items()),
        "environment": environment_rows(run.environment),
        "duration": fmt_duration(run.duration),
        "files": files,
        "models": models,
        "datasets": datasets,
        "problems": [c for c in sorted(cards, key=lambda c: (c.r.file, c.r.line)) if c.problem],
        "n_cards": len(cards),
        "changes": changes,
        "data": data,
    }
