"""Evaluating one expectation of an audit file: measure, compare, and say it in a sentence.

The measuring is the library's (``vitaudit.metrics``, ``vitaudit.faithfulness``,
``vitaudit.sanity``); this module fetches what an expectation refers to (models, images,
regions, maps, baselines), dispatches on the metric id, and words the outcome.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import numpy as np

from vitaudit.aggregate import OPS  # one table of comparison operators

from . import baselines, value_baselines
from .evaluation import Evaluation, fmt  # noqa: F401  (fmt: re-exported for the plugin)
from .session import AuditFailure, AuditInputError, AuditSession

if TYPE_CHECKING:
    from vitaudit.explanation import Explanation
    from vitaudit.models import AuditModel
    from vitaudit.spec import AuditSpec, Expectation, MapRef


class Evaluator:
    """Evaluates the expectations of one parsed audit file within a session."""

    #: Explanations kept at hand (with their working-size maps): the expectations of one image
    #: share maps, and items of an image run one after another.
    KEEP = 16

    def __init__(self, spec: "AuditSpec", session: AuditSession):
        self.spec = spec
        self.session = session
        self._recent: OrderedDict[tuple, "Explanation"] = OrderedDict()
        self._plans: dict[str, dict[str, list]] = {}  # model key -> image -> requests

    # ------------------------------------------------------------- resources
    def model(self, key: str) -> "AuditModel":
        return self.session.model(self.spec.models[key])

    def image(self, key: str):
        return self.session.image(self.spec.images[key])

    def explanation(self, ref: "MapRef", image_key: str) -> "Explanation":
        from vitaudit.engine import explain
        from vitaudit.explainers import ExplainerError
        from vitaudit.labels import LabelError

        key = (ref, image_key)
        hit = self._recent.get(key)
        if hit is not None:
            self._recent.move_to_end(key)
            return hit
        model = self.model(ref.model)
        self.prefetch(ref.model, image_key)
        try:
            target = self.single_class(model, ref.target) if ref.target is not None else None
            e = explain(model, self.image(image_key), (ref.method, dict(ref.options)), target=target,
                        cache=self.session.cache)
        except (ExplainerError, LabelError, ValueError) as exc:
            raise AuditInputError(f"{ref.label}: {exc}") from None
        e.max_side = self.session.max_side  # metrics, masks and pictures use e.working
        self._recent[key] = e
        while len(self._recent) > self.KEEP:
            self._recent.popitem(last=False)
        return e

    def prefetch(self, model_key: str, image_key: str) -> None:
        """One pass per image for everything this file wants of ``model_key``, in batches.

        At the first use of an image, it and the next images of the file (in file order,
        which is the order items run) are explained together, up to a batch; so every image
        runs once, in batches, with only a batch of maps waiting in the cache. In an xdist
        worker, which runs only some of the items, just the image at hand; and so too when recording
        (``--audit-update-baselines``): a batch's floats depend on which images share it, and the
        values and maps recorded must be byte-identical whether the run was serial or ``-n N``.
        """
        from vitaudit.engine import BatchFailed, default_batch_size, prefetch

        done = self.session.prefetched
        if (self.spec.path, model_key, image_key) in done:
            return
        model = self.model(model_key)
        plan = self._plan(model_key, model)
        if image_key not in plan:
            return
        order = list(plan)
        alone = self.session.in_worker or self.session.update_baselines
        size = 1 if alone else (self.session.batch_size or default_batch_size(model))
        chunk = [k for k in order[order.index(image_key):] if (self.spec.path, model_key, k) not in done][:size]
        images, requests = [], []
        for k in chunk:
            done.add((self.spec.path, model_key, k))
            try:
                images.append(self.image(k))
            except AuditInputError:  # the items of that image report it
                continue
            requests.append(plan[k])
        if images:
            try:
                prefetch(model, images, requests, batch_size=size, cache=self.session.cache)
            except BatchFailed:  # images too large for the device even alone: their items report it
                pass

    def _plan(self, model_key: str, model: "AuditModel") -> dict[str, list]:
        """Per image (file order), the distinct maps this file's expectations want of a model."""
        from vitaudit.engine import Request, resolve_method

        plans = self._plans
        if model_key in plans:
            return plans[model_key]
        wanted: dict[str, list] = {k: [] for k in self.spec.images}
        used: set[str] = set()
        for exp in self.spec.expectations:
            if exp.dataset is not None:  # a dataset's own pass serves it
                continue
            if exp.model == model_key:
                used.add(exp.image)
            for ref in exp.maps:
                if ref.model != model_key:
                    continue
                used.add(exp.image)
                try:
                    explainer, options = resolve_method(model, (ref.method, dict(ref.options)))
                    target = self.single_class(model, ref.target) if ref.target is not None else None
                except Exception:  # the item itself reports what is wrong
                    continue
                req = Request(explainer, options, target)
                if req not in wanted[exp.image]:
                    wanted[exp.image].append(req)
        plans[model_key] = {k: v for k, v in wanted.items() if k in used}
        return plans[model_key]

    def classes(self, model: "AuditModel", label: Any) -> list[int]:
        """The class indices a written label stands for (a ``labels:`` group: all its members)."""
        from vitaudit.labels import LabelError

        members = self.spec.label_groups.get(label) if isinstance(label, str) else None
        try:
            if members is not None:
                return list(dict.fromkeys(model.label_index(m) for m in members))
            return [model.label_index(label)]
        except LabelError as exc:
            raise AuditInputError(f"{exc} (model {model.name})") from None

    def single_class(self, model: "AuditModel", label: Any) -> int:
        idx = self.classes(model, label)
        if len(idx) != 1:
            raise AuditInputError(f"target {label!r} is a group of {len(idx)} classes; a map explains one class")
        return idx[0]

    def mask(self, exp: "Expectation", e: "Explanation") -> np.ndarray | None:
        """The expectation's region at ``e``'s working resolution."""
        if exp.region is None:
            return None
        return self.session.mask(exp.region, e.working_size, e.geometry.image_hw)

    # ------------------------------------------------------------- dispatch
    def evaluate(self, exp: "Expectation") -> Evaluation:
        from vitaudit.engine import BatchFailed
        from vitaudit.metrics import MetricError, NoSignalError

        handler = getattr(self, f"_{exp.kind}")
        try:
            if exp.relative is not None:
                store = value_baselines.store_for(self.session, self.spec.path)
                return value_baselines.evaluate_relative(exp, store, handler)
            return handler(exp)
        except BatchFailed as exc:  # out of device memory even for this image alone
            raise AuditInputError(str(exc)) from None
        except NoSignalError as exc:  # the model's map is empty: the expectation is not met
            raise AuditFailure(f"{exp.metric}: {exc}") from None
        except MetricError as exc:
            raise AuditInputError(f"cannot measure {exp.metric}: {exc}") from None

    def verdict(self, exp: "Expectation", value: float) -> bool:
        if exp.value is None and exp.relative is not None:  # --audit-update-baselines: being recorded
            return True
        return OPS[exp.op](value, exp.value)

    def expected(self, exp: "Expectation") -> str:
        rel = exp.relative
        if rel is None:
            return f"{exp.op} {fmt(exp.value)}"
        if rel.baseline is None:
            return f"{exp.op} {rel.text}; recording the baseline"
        from .value_baselines import said

        return f"{exp.op} {fmt(exp.value)}, {said(rel)}"

    # ------------------------------------------------------------- prediction
    def probs(self, model_key: str, image_key: str) -> np.ndarray:
        """The model's softmax on an image (from the pass that explained it, when there was one)."""
        from vitaudit.engine import predict

        self.prefetch(model_key, image_key)
        return predict(self.model(model_key), [self.image(image_key)], cache=self.session.cache,
                       batch_size=self.session.batch_size)[0]

    def baseline_key(self, exp: "Expectation") -> str:
        """Which image a stored baseline map belongs to (a dataset's evaluator names its image)."""
        return exp.image

    def _prediction(self, exp: "Expectation") -> Evaluation:
        model = self.model(exp.model)
        probs = self.probs(exp.model, exp.image)
        order = np.argsort(-probs, kind="stable")
        top1 = int(order[0])
        topk = [(model.labels[i], int(i), float(probs[i])) for i in order[:5]]
        said = f"top-1 is {model.labels[top1]!r} (p={probs[top1]:.3f})"
        wanted = [self.classes(model, lab) for lab in exp.labels]
        union = {i for group in wanted for i in group}
        names = ", ".join(repr(str(lab)) for lab in exp.labels)
        if exp.metric == "top1_is":
            return Evaluation(top1 in union, float(probs[top1]), f"expected top-1 {names}; {said}", topk=topk)
        if exp.metric == "top1_is_not":
            return Evaluation(top1 not in union, float(probs[top1]), f"expected top-1 not {names}; {said}", topk=topk)
        if exp.metric == "top1_in":
            return Evaluation(top1 in union, float(probs[top1]), f"expected top-1 in [{names}]; {said}", topk=topk)
        if exp.metric == "in_topk":
            ranks = [int(np.nonzero(order == i)[0][0]) + 1 for i in union]
            best = min(ranks)
            return Evaluation(best <= exp.k, float(best), f"expected {names} in the top-{exp.k}; best rank {best}, {said}", topk=topk)
        if exp.metric == "prob":
            p = float(probs[sorted(union)].sum())
            return Evaluation(self.verdict(exp, p), p, f"prob({names}) = {fmt(p)} (expected {self.expected(exp)}); {said}", topk=topk)
        raise AuditInputError(f"unknown prediction metric {exp.metric!r}")

    # ------------------------------------------------------------- localisation
    def _localisation(self, exp: "Expectation") -> Evaluation:
        from vitaudit import metrics

        ref = exp.maps[0]
        e = self.explanation(ref, exp.image)
        hm = e.working
        mask = self.mask(exp, e)
        region = exp.region.label
        maps = [(ref.label, e)]
        if exp.metric == "pointing_game":
            tol = float(exp.option("within", 0.0))
            sx, sy = e.scale
            hit = metrics.pointing_game(hm, mask, tolerance=tol * (sx + sy) / 2)  # in working pixels
            row, col = np.unravel_index(np.nanargmax(hm), hm.shape)
            peak = (int((row + 0.5) / sy), int((col + 0.5) / sx))  # in original pixels
            within = f" within {fmt(tol)} px" if tol else ""
            want_hit = exp.op != "misses"
            return Evaluation(hit == want_hit, 1.0 if hit else 0.0,
                              f"expected the map's peak to {'hit' if want_hit else 'miss'} '{region}'{within}; "
                              f"it {'hits' if hit else 'misses'} (peak at x={peak[1]}, y={peak[0]})",
                              maps=maps, mask=mask)
        if exp.metric == "mass_in":
            value, what = metrics.mass_in(hm, mask), f"mass in '{region}'"
        elif exp.metric == "energy_pointing_game":
            value, what = metrics.energy_pointing_game(hm, mask), f"energy in '{region}'"
        elif exp.metric == "iou_top":
            top = float(exp.option("top"))
            value, what = metrics.iou_top(hm, mask, top), f"IoU of the top {fmt(top)}% with '{region}'"
        elif exp.metric == "rank_accuracy":
            value, what = metrics.rank_accuracy(hm, mask), f"rank accuracy in '{region}'"
        else:
            raise AuditInputError(f"unknown localisation metric {exp.metric!r}")
        share = float(mask[np.isfinite(hm)].mean())
        return Evaluation(self.verdict(exp, value), value, f"{what} = {fmt(value)} (expected {self.expected(exp)})",
                          maps=maps, mask=mask, note=f"'{region}' covers {share:.0%} of the pixels the model saw")

    # ------------------------------------------------------------- comparison
    def _comparison(self, exp: "Expectation") -> Evaluation:
        from vitaudit import metrics

        a, b = (self.explanation(ref, exp.image) for ref in exp.maps)
        by = str(exp.option("by", "pearson"))
        value = metrics.similarity(a.working, b.working, by)
        labels = [ref.label for ref in exp.maps]
        return Evaluation(self.verdict(exp, value), value,
                          f"agreement ({by}) of {labels[0]} and {labels[1]} = {fmt(value)} (expected {self.expected(exp)})",
                          maps=[(labels[0], a), (labels[1], b)])

    # ------------------------------------------------------------- baseline
    def _baseline(self, exp: "Expectation") -> Evaluation:
        from vitaudit import metrics

        ref = exp.maps[0]
        e = self.explanation(ref, exp.image)
        path = baselines.path_for(self.spec.path, self.baseline_key(exp), ref)
        if self.session.update_baselines:
            done = "written to" if baselines.save(path, e.working) else "already up to date at"
            return Evaluation(True, None, f"baseline {done} {baselines.shown(path)}", maps=[(ref.label, e)],
                              note="written by --audit-update-baselines")
        stored = baselines.load(path)
        if stored is None:
            raise AuditFailure(
                f"no baseline for {ref.label} on '{self.baseline_key(exp)}' at {baselines.shown(path)}; create it with: "
                f"pytest {baselines.shown(self.spec.path)} --audit-update-baselines"
            )
        current = metrics.resize_map(e.working, stored.shape)
        by = str(exp.option("by", "pearson"))
        value = metrics.similarity(current, stored, by)
        return Evaluation(self.verdict(exp, value), value,
                          f"similarity ({by}) to the stored baseline = {fmt(value)} (expected {self.expected(exp)})",
                          maps=[(ref.label, e)],
                          extra_panels=[("baseline", stored, "map"), ("current", current, "map"),
                                        ("current - baseline", current - stored, "diff")])

    # ------------------------------------------------------------- faithfulness
    def _faithfulness(self, exp: "Expectation") -> Evaluation:
        import torch

        from vitaudit import faithfulness
        from vitaudit.preprocess import map_to_input

        ref = exp.maps[0]
        e = self.explanation(ref, exp.image)
        model = self.model(ref.model)
        x, _ = model.preprocessing(self.image(exp.image))
        saliency = map_to_input(e.grid, model.preprocessing.input_hw)
        target = e.target

        def score(batch: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                out = model.module(batch.to(model.device))
            return torch.softmax(out.float(), dim=-1)[:, target].cpu().numpy()

        fn = faithfulness.deletion_auc if exp.metric == "deletion_auc" else faithfulness.insertion_auc
        res = fn(x, saliency, score, steps=int(exp.option("steps", 16)), baseline=str(exp.option("baseline", "blur")),
                 batch_size=self.session.batch_size or 16)
        name = "deletion" if exp.metric == "deletion_auc" else "insertion"
        return Evaluation(self.verdict(exp, res.auc), res.auc,
                          f"{name} AUC of p({e.target_label!r}) = {fmt(res.auc)} (expected {self.expected(exp)}; "
                          f"{len(res.scores) - 1} steps, {res.baseline} baseline)",
                          maps=[(ref.label, e)], note="curve: " + " ".join(f"{s:.2f}" for s in res.scores))

    # ------------------------------------------------------------- sanity
    def _sanity(self, exp: "Expectation") -> Evaluation:
        from vitaudit import metrics
        from vitaudit.engine import explain

        ref = exp.maps[0]
        e = self.explanation(ref, exp.image)
        model = self.model(ref.model)
        layers = exp.option("layers", 1)
        randomized, names = self.session.randomized(model, layers)
        r = explain(randomized, self.image(exp.image), (ref.method, dict(ref.options)), target=e.target,
                    cache=self.session.cache)
        by = str(exp.option("by", "spearman"))
        r.max_side = self.session.max_side
        if r.no_signal:
            value = 0.0
            note = "the re-initialised model's map has no signal at all"
        else:
            value = metrics.similarity(e.working, r.working, by)
            note = ""
        return Evaluation(self.verdict(exp, value), value,
                          f"similarity ({by}) to the map after re-initialising {', '.join(names)} = {fmt(value)} "
                          f"(expected {self.expected(exp)}); a map that does not change explains the image, not the model",
                          maps=[(ref.label, e), (f"{ref.label}, top {len(names)} re-initialised", r)], note=note)
