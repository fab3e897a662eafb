"""Turning a dataset aggregate into the report's plain data (``vitaudit.results``).

Everything an aggregate card shows is decided here, in the worker: the histogram, the
per-class rows and the few example pictures (the worst and the best images, recomputed one
small batch at a time: the pass keeps no maps). ``per_image`` lists every image counted, for
``audit.json``: a :class:`~vitaudit.per_image.PerImage` view of the pass's columns, not a dict per image.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from vitaudit.aggregate import by_group, histogram, verdict, worst_and_best
from vitaudit.batching import ItemFailure
from vitaudit.image_values import ImageValues
from vitaudit.results import AggregateView, ClassRow, Example, Panel

if TYPE_CHECKING:
    from vitaudit.aggregate import Verdict

    from .nodes import AggregateNode, FileNode
    from vitaudit.audit.dataset_pass import DatasetRun

#: Example pictures per card: the worst and the best images.
WORST, BEST = 6, 3
#: Unreadable images listed by name on a card (the rest are counted).
LISTED = 20


def fill(result: dict[str, Any], item: "AggregateNode", audit_file: "FileNode", run: "DatasetRun",
         values: ImageValues, v: "Verdict", exp) -> None:
    """``exp``: the item's expectation, its threshold resolved when it is relative."""
    share = exp.aggregate == "share"
    result["value"] = v.value
    result["n_images"] = v.n_images
    result["op"] = ">=" if share else exp.op
    result["threshold"] = exp.share if share else exp.value
    result["per_image"] = values.per_image()  # columns, read as dicts (vitaudit.per_image)
    if exp.relative is not None:
        result["baseline"] = exp.relative.baseline
    if v.interval is not None:
        result.update(v.interval.to_dict())
    result["confidence"] = v.confidence
    result["within_noise"] = v.within_noise
    everyone = [s for s in run.dataset.samples if item.group is None or s.label == item.group]
    with_region = everyone if exp.region is None else \
        [s for s in everyone if exp.region.region.name in s.regions]
    edges, counts = histogram(values, marks=[exp.value] if exp.value is not None else [])
    view = AggregateView(
        per_image_op=exp.op if share else None,
        per_image_threshold=exp.value if share else None,
        share_passing=v.share_passing,
        edges=edges,
        counts=counts,
        per_class=_per_class(item, exp, run, values) if run.dataset.classes else [],
        not_counted=[f"{name}: {cause}" for _, name, cause in run.unreadable[:LISTED]],
        n_not_counted=len(run.unreadable),
        n_without_region=len(everyone) - len(with_region),
    )
    if audit_file.evaluator().session.pictures:
        view.examples = _examples(item, audit_file, run, values)
    result["aggregate_view"] = asdict(view)
    result["message"] = _summary(exp, v)


def _summary(exp, v: "Verdict") -> str:
    from vitaudit.verdict_text import aggregate_summary

    return aggregate_summary(exp, v)


def _per_class(item: "AggregateNode", exp, run: "DatasetRun", values: ImageValues) -> list[ClassRow]:
    """Every class's aggregate and verdict, for any aggregate on a labelled dataset (the accuracy
    card too; a per-class item shows its class among the others).

    A class's verdict is against the expectation's threshold; under a relative threshold ``per
    class``, against that class's own recorded value (one per class in ``values.json``). A relative
    threshold over the whole dataset is one recorded value, which says nothing of a class: no
    verdict there."""
    all_values = ImageValues.of(run.values.get(exp.id, [])) if item.group is not None else values
    rows = []
    for group, vals in by_group(all_values).items():
        bar = _class_threshold(item, exp, group)
        g = verdict(exp.aggregate, vals, exp.op or ">", bar if bar is not None else float("-inf"), exp.share)
        rows.append(ClassRow(group=group, n_images=g.n_images, value=g.value, share_passing=g.share_passing,
                             passed=g.passed if bar is not None else None))
    return rows


def _class_threshold(item: "AggregateNode", exp, group: str) -> float | None:
    """The threshold class ``group`` is held to (see :func:`_per_class`); None when it has none."""
    import math

    if exp.value is None:  # being recorded
        return None
    if exp.relative is None or group == item.group:
        return exp.value
    if item.group is None or exp.relative.uses_ci:
        return None
    from vitaudit.audit.value_baselines import key_for

    entry = item._value_store().get(key_for(item.expectation) + f"[{group}]")
    base = entry.get("value") if entry else None
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not math.isfinite(base):
        return None
    return exp.relative.threshold(float(base))


def _maps(model, images: list, requests: list, cache) -> list:
    """Each image's entry with ``requests``' maps, computed once per session (or an
    :class:`~vitaudit.batching.ItemFailure` for an image that did not fit on the device)."""
    from vitaudit.engine import BatchFailed, prefetch, run_batch

    try:
        return prefetch(model, images, [requests] * len(images), batch_size=len(images), cache=cache)
    except BatchFailed:  # the ones that fit are cached; say which did not
        return run_batch(model, images, [requests] * len(images))


def _examples(item: "AggregateNode", audit_file: "FileNode", run: "DatasetRun",
              values: ImageValues) -> list[Example]:
    """The worst and best images as overlays with the region outlined, in one small batch."""
    from . import cards
    from vitaudit.audit.dataset_pass import Plan, SampleEvaluator, decoded

    exp = item.expectation
    worst, best = worst_and_best(values, exp.op, WORST, BEST, yes_no=exp.metric == "pointing_game")
    chosen = [(w, "worst") for w in worst] + [(b, "best") for b in best]
    if not chosen:
        return []
    evaluator = audit_file.evaluator()
    plan = Plan(evaluator, [exp])  # the pictures need the maps only: a relative threshold plays no part
    sample_ev = SampleEvaluator(evaluator, plan, run.dataset)
    samples = [run.dataset.samples[x.index] for x, _ in chosen]
    session = evaluator.session
    rel = audit_file.rel
    out = []
    for batch, images in decoded(samples, len(samples)):
        ok = [(s, im) for s, im in zip(batch, images) if not isinstance(im, BaseException)]
        # A prediction's pictures are the images themselves: no forward. Maps go through the
        # session's cache, so an image pictured by several items (the per-class ones, or
        # expectations on the same maps) is explained once.
        entries = {key: _maps(model, [im for _, im in ok], plan.requests[key], session.cache)
                   for key, model in plan.models.items()} if exp.maps else {}
        pictures = {}
        for j, (sample, loaded) in enumerate(ok):
            mine = {key: entries[key][j] for key in entries}
            if any(isinstance(e, ItemFailure) for e in mine.values()):
                continue  # did not fit on the device: no picture
            sample_ev.at(sample, loaded, mine)
            key = f"{exp.dataset}/{sample.name}"
            rgb = loaded.to_uint8()
            if not exp.maps:  # a prediction: the picture itself
                pictures[sample.index] = [Panel(title=sample.name, uri=cards.image_uri(session, (rel, key), rgb),
                                                caption=f"label {sample.label!r}" if sample.label else "")]
                continue
            try:
                ev = sample_ev.evaluate(exp)
            except Exception:  # noqa: BLE001 - an image without a value still gets its place, unpictured
                continue
            region_key = exp.region.label if exp.region is not None else None
            pictures[sample.index] = cards.panels(session, rel, key, rgb, ev, region_key)
        for x, role in chosen:
            out.append(Example(image=x.image, value=x.value, passed=x.passed, role=role, label=x.label,
                               panels=pictures.get(x.index, [])))
    return out
