"""``audit.json``: the run for machines (CI dashboards), small and strict JSON.

Layout (``format: "vitaudit-audit/1"``)::

    {"format": ..., "pictures": "omitted",
     "summary": {"status", "total", "<outcome>": n..., "duration", "started_at", "interrupted",
                 "by_file": {file: {outcome: n}}, "by_model": {model: {outcome: n}}},
     "expectations": [{"nodeid", "file", "line", "text", "kind", "outcome",
                       "metric", "region", "value", "op", "threshold", "baseline", "models", "methods",
                       "image", "message", "duration", "map_stats"}, ...],
     "run": RunResults.to_dict() with pictures emptied}

Pictures are dropped by default (``Panel.uri``, ``ModelView.overlay``, ``ImageView.uri`` become
``""``; ``layer_grid`` and ``image_uri`` become ``null``): they are 95 %+ of the bytes and the
HTML report already has them. ``RunResults.from_dict(doc["run"])`` gives back the run minus
its pictures (:func:`strip_pictures`); pass ``pictures=True`` to keep them and get the whole run.
NaN and infinities become ``null`` so that every JSON parser (``JSON.parse`` included) reads it.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from vitaudit.results import OUTCOMES, ExpectationResult, RunResults

FORMAT = "vitaudit-audit/1"
#: Outcomes that make the run fail (pytest's rule: a non-strict xpass does not).
FAILING = ("failed", "error")


def strip_pictures(run: RunResults) -> RunResults:
    """A copy of ``run`` without any picture (the shape ``audit.json`` stores by default)."""
    results = [
        dataclasses.replace(
            r, image_uri=None, panels=[dataclasses.replace(p, uri="", outline=None) for p in r.panels]
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
    }


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
        "run": (run if pictures else strip_pictures(run)).to_dict(),
    }
    return clean(doc)
