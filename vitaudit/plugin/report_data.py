"""Turning items and evaluations into the report's plain data (``vitaudit.results``)."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from vitaudit.results import ExpectationResult

from .identity import expectation_id

if TYPE_CHECKING:
    from vitaudit.spec import AuditSpec

    from .nodes import ErrorNode, ExpectationNode, FileNode
    from vitaudit.audit.evaluation import Evaluation


def base_result(item: "ExpectationNode", spec: "AuditSpec") -> dict[str, Any]:
    """What is known before running: the expectation itself (also for skipped items)."""
    exp = item.expectation
    # By what the model is (its spec), so "vit" in two audit files is not counted as one model.
    models = [spec.models[k].name if k in spec.models else k for k in exp.model_keys]
    dataset = exp.dataset is not None  # a dataset's key is not an image (the report says "dataset x")
    return ExpectationResult(
        nodeid=expectation_id(item),
        file=item.parent.parent.rel,
        line=exp.line,
        text=exp.text,
        kind=exp.kind,
        outcome="passed",
        image=None if dataset else exp.image,
        dataset=exp.dataset,
        models=models,
        methods=[r.label for r in exp.maps],
        metric=exp.metric,
        region=exp.region.label if exp.region is not None else None,
        op=exp.op,
        threshold=exp.value,
    ).to_dict()


def error_result(item: "ErrorNode") -> dict[str, Any]:
    err = item.error
    subject = err.image if err.image not in (None, "*") else None
    datasets = getattr(getattr(item.parent, "spec", None), "datasets", None) or {}
    in_dataset = subject is not None and subject in datasets
    return ExpectationResult(
        nodeid=expectation_id(item),
        file=item.parent.rel,
        line=err.line,
        text=err.text or "(audit file)",
        kind="error",
        outcome="error",
        message=f"{item.parent.rel}:{err.line}: {err.message}",
        image=None if in_dataset else subject,
        dataset=subject if in_dataset else None,
    ).to_dict()


def fill_result(result: dict[str, Any], item: "ExpectationNode", audit_file: "FileNode", ev: "Evaluation") -> None:
    """Add the measurement and the pictures (encoded here, in the worker)."""
    from . import cards

    exp = item.expectation
    session = audit_file.evaluator().session
    rel = audit_file.rel
    result["value"] = ev.value
    if ev.threshold is not None:  # a relative threshold, as resolved from its recorded baseline
        result["threshold"] = ev.threshold
        result["baseline"] = ev.baseline
    result["message"] = ev.summary + (f"; {ev.note}" if ev.note else "")
    result["topk"] = [asdict(p) for p in cards.topk(ev.topk)] if ev.topk else None
    if ev.maps:
        result["map_stats"] = ev.maps[0][1].stats
    if not session.pictures:  # --audit-no-report: nobody will look at them
        return
    rgb = session.image(audit_file.spec.images[exp.image]).to_uint8()
    result["image_uri"] = cards.image_uri(session, (rel, exp.image), rgb)
    if ev.maps:
        region_key = exp.region.label if exp.region is not None else None
        result["panels"] = [asdict(p) for p in cards.panels(session, rel, exp.image, rgb, ev, region_key)]
        refs = {r.label: r for r in exp.maps}
        for title, e in ev.maps:
            if title not in refs or session.outbox.sent((rel, exp.image, title)):
                continue  # e.g. the re-initialised model's map of a sanity check
            key = refs[title].model
            name = audit_file.spec.models[key].name if key in audit_file.spec.models else key
            view = cards.model_view(session, rel, exp.image, rgb, title, name, e)
            session.outbox.add_view((rel, exp.image, title), {
                "file": rel, "image": exp.image, "uri": result["image_uri"], "view": asdict(view),
            })
