"""``audit.json``: the run for machines (CI dashboards), small and strict JSON.

Layout (``format: "vitaudit-audit/1"``)::

    {"format": ..., "pictures": "omitted",
     "summary": {"status", "total", "<outcome>": n..., "duration", "started_at", "interrupted",
                 "by_file": {file: {outcome: n}}, "by_model": {model: {outcome: n}}},
     "expectations": [{"nodeid", "file", "line", "text", "kind", "outcome",
                       "metric", "region", "value", "op", "threshold", "baseline", "models", "methods",
                       "image", "message", "duration", "map_stats",
                       "dataset", "aggregate", "n_images", "group", "per_image",
                       "ci_low", "ci_high", "ci_level", "ci_method", "confidence", "within_noise"}, ...],
     "run": RunResults.to_dict() with pictures emptied and per-image lists moved out}

Dataset expectations fill ``dataset``, ``aggregate`` (``mean``, ``share``, ``accuracy``...),
``n_images``, ``group`` (the class, or null) and ``per_image``: ``[{"image": path relative to
the audit file, "value", "passed"}, ...]`` for every image counted; ``value``/``threshold`` are
the aggregate's. Those keys are null on single-image rows. A per-image list is written once, in
its row: ``run.results[i].per_image`` is null, and :func:`run_from_document` puts it back.
``ci_low``/``ci_high`` are the aggregate's confidence interval at ``ci_level`` (0.95, or the level
of ``with N% confidence``, then also in ``confidence``), made by ``ci_method``; ``within_noise`` is
true when a plain threshold lies inside it.
Beyond 10,000 images a row's list goes to ``audit.values.parquet`` beside the JSON (the row then
has ``per_image_file`` and ``per_image_count``; :mod:`.values_file`).

Pictures are dropped by default (``Panel.uri``, ``ModelView.overlay``, ``ImageView.uri`` become
``""``; ``layer_grid`` and ``image_uri`` become ``null``): they are 95 %+ of the bytes and the
HTML report already has them. ``RunResults.from_dict(doc["run"])`` gives back the run minus
its pictures (:func:`strip_pictures`) and per-image lists (:func:`run_from_document` restores
those); pass ``pictures=True`` to keep the pictures.
NaN and infinities become ``null`` so that every JSON parser (``JSON.parse`` included) reads it.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from vitaudit.per_image import PerImage
from vitaudit.results import OUTCOMES, AggregateView, ExpectationResult, Panel, RunResults

FORMAT = "vitaudit-audit/1"
#: Outcomes that make the run fail (pytest's rule: a non-strict xpass does not).
FAILING = ("failed", "error")


def _strip_panels(panels: list[Panel]) -> list[Panel]:
    return [dataclasses.replace(p, uri="", outline=None) for p in panels]


def _strip_view(view: AggregateView | None) -> AggregateView | None:
    if view is None:
        return None
    examples = [dataclasses.replace(e, panels=_strip_panels(e.panels)) for e in view.examples]
    return dataclasses.replace(view, examples=examples)


def strip_pictures(run: RunResults) -> RunResults:
    """A copy of ``run`` without any picture (the shape ``audit.json`` stores by default)."""
    results = [
        dataclasses.replace(
            r, image_uri=None, panels=_strip_panels(r.panels), aggregate_view=_strip_view(r.aggregate_view)
        )
        for r in run.results
    ]
    images = [
        dataclasses.replace(
            iv, uri="", views=[dataclasses.replace(v, overlay="", layer_grid=None) for v in iv.views]
        )
        for iv in run.images
    ]
    return dataclasses.replace(run, results=results, images=images)


def clean(obj: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, tuples to lists, NaN/inf to None."""
    if isinstance(obj, PerImage):  # read column-wise: NaN and infinities are None there already
        return obj.json_rows()
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (str, bool)) or obj is None:
        return obj
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalar
        return clean(obj.item())
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        f = float(obj)
        return f if math.isfinite(f) else None
    if hasattr(obj, "tolist"):  # small numpy arrays in map_stats
        return clean(obj.tolist())
    return str(obj)


def _tally(results: list[ExpectationResult], key) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in results:
        for k in key(r):
            row = out.setdefault(k, {o: 0 for o in OUTCOMES})
            row[r.outcome] = row.get(r.outcome, 0) + 1
    return dict(sorted(out.items()))


def expectation_row(r: ExpectationResult) -> dict[str, Any]:
    """The few fields a dashboard plots for one expectation."""
    return {
        "nodeid": r.nodeid, "file": r.file, "line": r.line, "text": r.text, "kind": r.kind,
        "outcome": r.outcome,
        "metric": r.metric, "region": r.region, "value": r.value, "op": r.op, "threshold": r.threshold,
        "baseline": r.baseline, "models": r.models, "methods": r.methods, "image": r.image, "message": r.message,
        "duration": r.duration, "map_stats": r.map_stats,
        "dataset": r.dataset, "aggregate": r.aggregate, "n_images": r.n_images, "group": r.group,
        "per_image": r.per_image,
        "ci_low": r.ci_low, "ci_high": r.ci_high, "ci_level": r.ci_level, "ci_method": r.ci_method,
        "confidence": r.confidence, "within_noise": r.within_noise,
    }


def _without_per_image(run: RunResults) -> RunResults:
    """``run`` with per-image lists left to the expectation rows (a 10,000-image list is written once)."""
    if all(r.per_image is None for r in run.results):
        return run
    return dataclasses.replace(run, results=[dataclasses.replace(r, per_image=None) for r in run.results])


def run_from_document(doc: dict[str, Any], base_dir: str | None = None) -> RunResults:
    """The :class:`RunResults` an ``audit.json`` document holds, per-image lists included
    (``base_dir``: the JSON's folder, where a row's ``per_image_file`` is)."""
    if base_dir is not None:
        from .values_file import join

        doc = join(doc, base_dir)
    run = RunResults.from_dict(doc["run"])
    for r, row in zip(run.results, doc.get("expectations", [])):
        if row.get("nodeid") == r.nodeid and row.get("per_image") is not None:
            r.per_image = row["per_image"]
    return run


def audit_document(run: RunResults, pictures: bool = False) -> dict[str, Any]:
    """The whole ``audit.json`` document as plain JSON values."""
    counts = {o: 0 for o in OUTCOMES}
    for r in run.results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    problems = sum(counts.get(o, 0) for o in FAILING)
    status = "interrupted" if run.interrupted else ("failed" if problems else "passed")
    doc = {
        "format": FORMAT,
        "pictures": "included" if pictures else "omitted",
        "summary": {
            "status": status, "total": len(run.results), **counts,
            "duration": run.duration, "started_at": run.started_at, "interrupted": run.interrupted,
            "by_file": _tally(run.results, lambda r: [r.file]),
            "by_model": _tally(run.results, lambda r: list(dict.fromkeys(r.models))),
        },
        "expectations": [expectation_row(r) for r in run.results],
        "run": _without_per_image(run if pictures else strip_pictures(run)).to_dict(),
    }
    return clean(doc)
