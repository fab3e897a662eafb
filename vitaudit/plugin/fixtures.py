"""Fixtures for audits written in Python; their checks appear in the same report as YAML audits.

    def test_cat_is_found(audit_model, explain, audit):
        model = audit_model("efficientnet_lite0", pretrained=True)
        e = explain(model, "skimage:chelsea", "gradcam")
        audit.top1_in(e, ["tabby", "tiger cat", "Egyptian cat"])
        audit.check(e, "mass_in", box(0, 0, 400, 300), ">", 0.8)
"""
from __future__ import annotations

import inspect
import os
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pytest

from vitaudit.aggregate import OPS
from vitaudit.audit.evaluation import fmt
from vitaudit.audit.session import AuditFailure

from .collect import audit_session
from .identity import expectation_id, project_relative

if TYPE_CHECKING:
    from vitaudit.explanation import Explanation
    from vitaudit.models import AuditModel


@pytest.fixture(scope="session")
def audit_model(pytestconfig: pytest.Config) -> Callable[..., "AuditModel"]:
    """``audit_model(spec, **load_model_kwargs)``: a model loaded once per session (per worker)."""
    session = audit_session(pytestconfig)
    models: dict[str, Any] = {}

    def load(spec: str, **kwargs: Any) -> "AuditModel":
        from vitaudit.models import load_model
        from vitaudit.registry import WeightsUnavailable

        kwargs.setdefault("device", session.device)
        key = repr((spec, sorted(kwargs.items(), key=lambda kv: kv[0])))
        if key not in models:
            try:
                models[key] = load_model(spec, **kwargs)
            except WeightsUnavailable as exc:
                models[key] = exc
            else:
                m = models[key]
                session.outbox.models.append({"key": spec, "spec": f"{spec} [{m.weights}]", "family": m.family,
                                              "checkpoint": m.checkpoint, "checkpoint_sha256": m.checkpoint_sha256,
                                              "device": str(m.device), "error": None})
        loaded = models[key]
        if isinstance(loaded, BaseException):
            pytest.skip(str(loaded))
        return loaded

    return load


def _image(image: Any):
    from vitaudit.images import load_image, skimage_image

    if isinstance(image, str) and image.startswith("skimage:"):
        return skimage_image(image[len("skimage:"):])
    return load_image(image)


@pytest.fixture
def explain(request: pytest.FixtureRequest) -> Callable[..., "Explanation"]:
    """``explain(model, image, method="gradcam", *, target=None)``, through the session's cache."""
    session = audit_session(request.config)

    def run(model: "AuditModel", image: Any, method: Any = "gradcam", *, target: Any = None) -> "Explanation":
        from vitaudit.engine import explain as _explain

        loaded = _image(image)
        e = _explain(model, loaded, method, target=target, cache=session.cache)
        e._vitaudit_image = loaded  # type: ignore[attr-defined]  (for the report's pictures)
        return e

    return run


class AuditRecorder:
    """Checks for Python audits: each records a card in the report and fails the test with a sentence."""

    def __init__(self, request: pytest.FixtureRequest):
        self.request = request
        self.session = audit_session(request.config)
        self.item = request.node
        if not hasattr(self.item, "vitaudit_results"):
            self.item.vitaudit_results = []
        self.rel = project_relative(request.config, request.path)

    # ------------------------------------------------------------------ checks
    def check(self, e: "Explanation", metric: str, region: Any, op: str = ">", value: float | None = None,
              *, text: str | None = None, **options: Any) -> float:
        """A localisation check (mass_in, energy_pointing_game, iou_top, rank_accuracy, pointing_game)."""
        __tracebackhide__ = True  # a failure's traceback ends at the user's line, not in here
        from vitaudit import metrics

        mask, region_name = self._mask(region, e.heatmap.shape)
        if metric == "pointing_game":
            hit = metrics.pointing_game(e.heatmap, mask, tolerance=float(options.get("within", 0)))
            return self._record(text or f"{e.model_name}.{e.method} pointing game hits {region_name}", "pointing_game",
                                hit, 1.0 if hit else 0.0, None, None,
                                f"the map's peak {'hits' if hit else 'misses'} '{region_name}'", [e], mask)
        funcs = {"mass_in": metrics.mass_in, "energy_pointing_game": metrics.energy_pointing_game,
                 "rank_accuracy": metrics.rank_accuracy,
                 "iou_top": lambda h, m: metrics.iou_top(h, m, float(options["top"]))}
        if metric not in funcs:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(list(funcs) + ['pointing_game'])}")
        if op not in OPS or value is None:
            raise ValueError(f"give an operator ({', '.join(OPS)}) and a threshold")
        measured = funcs[metric](e.heatmap, mask)
        # In the words of an audit file's sentence: "mass in face", "iou(top 20%, face)".
        words = {"mass_in": "mass in {}", "energy_pointing_game": "energy pointing game in {}",
                 "rank_accuracy": "rank accuracy in {}", "iou_top": f"iou(top {options.get('top', 0):g}%, {{}})"}[metric]
        return self._record(text or f"{e.model_name}.{e.method} {words.format(region_name)} {op} {value}", metric,
                            OPS[op](measured, value), measured, op, value,
                            f"{words.format(repr(region_name))} = {fmt(measured)} (expected {op} {fmt(value)})", [e], mask)

    def agreement(self, a: "Explanation", b: "Explanation", op: str, value: float, *, by: str = "pearson",
                  text: str | None = None) -> float:
        __tracebackhide__ = True
        from vitaudit import metrics

        measured = metrics.similarity(a.heatmap, b.heatmap, by)
        return self._record(text or f"agreement({a.model_name}.{a.method}, {b.model_name}.{b.method}) {op} {value}",
                            "agreement", OPS[op](measured, value), measured, op, value,
                            f"agreement ({by}) = {fmt(measured)} (expected {op} {fmt(value)})", [a, b], None)

    def top1_in(self, e: "Explanation", labels: Sequence[Any], *, text: str | None = None) -> bool:
        __tracebackhide__ = True
        from vitaudit.labels import LabelSet

        ls = LabelSet(e.labels)
        wanted = {ls.index(lab) for lab in labels}
        label, index, p = e.top1
        ok = index in wanted
        self._record(text or f"{e.model_name} top1 in {list(labels)}", "top1_in", ok, p, None, None,
                     f"top-1 is {label!r} (p={p:.3f})", [], None, topk=e.topk(5))
        return ok

    # ------------------------------------------------------------------ recording
    def _check_id(self, text: str) -> str:
        """One identity per check (``vitaudit compare`` matches on it): the test's, then what the
        check says; ``-2``, ``-3`` ... for the same words twice in one test."""
        base = f"{expectation_id(self.item)}::{text}"
        taken = {r.get("nodeid") for r in self.item.vitaudit_results}
        new, n = base, 1
        while new in taken:
            n += 1
            new = f"{base}-{n}"
        return new

    def _mask(self, region: Any, size: tuple[int, int]) -> tuple[np.ndarray, str]:
        from vitaudit.regions import Region, RegionRef, rasterize_ref

        if isinstance(region, Region):
            region = RegionRef(region)
        if isinstance(region, RegionRef):
            return rasterize_ref(region, size), region.label
        mask = np.asarray(region, dtype=bool)
        if mask.shape != size:
            raise ValueError(f"mask of shape {mask.shape} does not match the image ({size})")
        return mask, "mask"

    def _record(self, text: str, metric: str, passed: bool, measured: float | None, op: str | None,
                threshold: float | None, summary: str, maps: list, mask: np.ndarray | None,
                topk: list | None = None) -> Any:
        __tracebackhide__ = True
        from vitaudit.results import ExpectationResult, Panel, Prediction

        from . import cards

        start = time.perf_counter()
        caller = inspect.stack()[2]
        line = caller.lineno if os.path.abspath(caller.filename) == str(self.request.path) else self.item.location[1] + 1
        panels, image_uri, stats = [], None, None
        source = maps[0] if maps else None
        loaded = getattr(source, "_vitaudit_image", None)
        key = (self.rel, self.item.name)
        if loaded is not None:
            from vitaudit.metrics import map_stats

            rgb = loaded.to_uint8()
            image_uri = cards.image_uri(self.session, key, rgb)
            for i, e in enumerate(maps):
                title = f"{e.model_name}.{e.method}@{e.target}"
                uri = cards.overlay_uri(self.session, key + (title,), rgb, e.working)
                outline = (cards.outline_uri(self.session, key, rgb, mask, ("mask", len(self.item.vitaudit_results)))
                           if i == 0 and mask is not None else None)
                panels.append(Panel(title=f"{e.model_name}.{e.method}", uri=uri, caption=f"explains {e.target_label!r}",
                                    outline=outline))
            stats = map_stats(source.heatmap)
        result = ExpectationResult(
            nodeid=self._check_id(text), file=self.rel, line=line, text=text, kind="python",
            outcome="passed" if passed else "failed", message=summary, image=self.item.name,
            models=list(dict.fromkeys(e.model_name for e in maps)), methods=[e.method for e in maps],
            metric=metric, op=op, threshold=threshold, value=None if measured is None else float(measured),
            duration=time.perf_counter() - start, map_stats=stats, panels=panels, image_uri=image_uri,
            topk=[Prediction(lab, i, p) for lab, i, p in topk] if topk else None,
        )
        self.item.vitaudit_results.append(asdict(result))
        if not passed:
            raise AuditFailure(f"{self.rel}:{line}: {text!r} failed: {summary}")
        return measured if measured is not None else passed


@pytest.fixture
def audit(request: pytest.FixtureRequest) -> AuditRecorder:
    """Checks whose results are cards in the audit report (see :class:`AuditRecorder`)."""
    return AuditRecorder(request)
