"""Collection and execution of dataset expectations: one item per aggregate (per class).

A dataset's items share one pass over its images (:mod:`.dataset_pass`), run at the first of
them; each item then aggregates the per-image values it needs and says the verdict in one
sentence that names the aggregate, the threshold, N and the worst images. Under pytest-xdist
the items of one (file, dataset) carry one ``xdist_group``, so ``--dist loadgroup`` keeps
them on one worker and no pass runs twice.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from vitaudit.audit.session import AuditFailure, AuditInputError
from vitaudit.image_values import ImageValues

from .collect import AuditItem

if TYPE_CHECKING:
    from vitaudit.aggregate import Verdict
    from vitaudit.datasets.base import Dataset
    from vitaudit.spec import Expectation

    from vitaudit.audit.dataset_pass import DatasetRun

#: How many images a failure sentence names.
NAMED = 5


def item_name(exp: "Expectation", group: str | None) -> str:
    """``vit.attention-mass_in[object,80%,per_class]`` -> ``...[object,80%,class=striped]``."""
    if group is None:
        return exp.id
    safe = group.replace("]", ")").replace("[", "(")
    if exp.id.endswith("]") and ",per_class]" in exp.id:
        return exp.id.replace(",per_class]", f",class={safe}]")
    return f"{exp.id}[class={safe}]"


class DatasetNode(pytest.Collector):
    """The expectations of one dataset of an audit file."""

    def __init__(self, *, dataset: "Dataset", expectations: list["Expectation"], **kwargs: Any):
        super().__init__(**kwargs)
        self.dataset = dataset
        self.expectations = expectations

    def collect(self) -> Iterator[pytest.Item]:
        xdist_group = f"{self.parent.rel}:{self.dataset.key}"
        suffix = f"@{xdist_group}" if _suffix_ourselves(self) else ""
        for exp in self.expectations:
            groups = list(self.dataset.classes) if exp.group == "class" else [None]
            for group in groups:
                name = item_name(exp, group)
                item = AggregateItem.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}{suffix}",
                                                 expectation=exp, group=group)
                item.xdist_group = xdist_group  # the suffix .identity strips again
                if not suffix:
                    item.add_marker(pytest.mark.xdist_group(xdist_group))
                yield item


def _suffix_ourselves(node: pytest.Collector) -> bool:
    """Under ``--dist loadgroup`` on pytest >= 9.2, whose structured node ids pytest-xdist can no
    longer rename (pytest-xdist#1386): give our ids their ``@group`` suffix ourselves, as xdist
    does, so the scheduler still keeps a dataset's items on one worker."""
    if not getattr(node.config.option, "loadgroup", False):
        return False
    return "_nodeid" not in vars(node)  # older pytest keeps a plain string there, which xdist renames


class AggregateItem(AuditItem):
    """One aggregate expectation over a dataset (or over one class of it)."""

    def __init__(self, *, group: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.group = group

    def describe(self) -> str:
        text = self.expectation.text
        return f"{text} [class {self.group}]" if self.group is not None else text

    def runtest(self) -> None:
        from vitaudit.aggregate import verdict

        from . import dataset_results, report_data
        from vitaudit.audit.value_baselines import MissingBaseline

        exp = self.expectation
        audit_file = self.parent.parent
        start = time.perf_counter()
        result = report_data.base_result(self, audit_file.spec)
        result.update(image=None, dataset=exp.dataset, aggregate=exp.aggregate, group=self.group)
        self.vitaudit_results = [result]
        try:
            run = audit_file.dataset_run(exp.dataset)
            problem = run.problems.get(exp.id)
            if problem is not None:
                raise problem
            values = ImageValues.of(run.values.get(exp.id, []))
            if self.group is not None:
                values = values.of_label(self.group)
            unreadable = self._unreadable(run)
            if len(values) and values.n_errors == len(values):  # the same problem on every image: one clear error
                first = values[0]
                raise AuditInputError(f"none of its {len(values)} images could be measured; "
                                      f"first, {first.image}: {first.error}")
            try:
                exp, recording = self._threshold(exp)
            except MissingBaseline as missing:  # the images were measured: the row keeps them
                v = verdict(exp.aggregate, values, exp.op, 0.0, exp.share)
                dataset_results.fill(result, self, audit_file, run, values, v, exp)
                raise AuditFailure(f"{self.where()}: {missing}") from None
            v = verdict(exp.aggregate, values, exp.op, exp.value if not recording else 0.0, exp.share,
                        confidence=None if recording else exp.confidence)
            if exp.relative is not None and exp.relative.uses_ci and v.within_noise:
                # 'baseline - ci' puts the threshold at the noise's edge by design: not news
                from dataclasses import replace as _replace

                v = _replace(v, within_noise=False)
            if recording:
                self._value_store().record(self._key(), v.value, per_image=values.per_image(),
                                           ci=v.interval.half_width if v.interval is not None else
                                           (0.0 if v.value is not None else None))  # no interval: no margin
        except AuditInputError as exc:
            self.input_error = True
            raise AuditInputError(f"{self.where()}: {exp.text!r} on dataset '{exp.dataset}': {exc}") from None
        finally:
            result["duration"] = time.perf_counter() - start
        dataset_results.fill(result, self, audit_file, run, values, v, exp)
        skipped = self._skipped(run)
        if skipped:
            result["message"] = f"{result['message']}; {skipped}"
        if recording or (exp.kind == "baseline" and audit_file.evaluator().session.update_baselines):
            what = "value recorded as the baseline" if recording else f"baselines written for {len(values)} images"
            result["message"] = f"{result['message']}; {what} (--audit-update-baselines)"
            return
        if unreadable and run.dataset.on_error == "fail":
            raise AuditFailure(f"{self.where()}: {exp.text!r} failed: {unreadable} "
                               "(or add on_error: skip to the dataset to count them out)")
        if not v.passed:
            raise AuditFailure(self.aggregate_sentence(run, values, v, exp))

    def _key(self) -> str:
        from vitaudit.audit.value_baselines import key_for

        return key_for(self.expectation) + (f"[{self.group}]" if self.group is not None else "")

    def _value_store(self):
        from vitaudit.audit.value_baselines import store_for

        audit_file = self.parent.parent
        return store_for(audit_file.evaluator().session, audit_file.spec.path)

    def _threshold(self, exp: "Expectation") -> tuple["Expectation", bool]:
        """``exp`` with a relative threshold made from its recorded value (or, while
        ``--audit-update-baselines`` records it, unchanged and ``True``)."""
        if exp.relative is None:
            return exp, False
        if self.parent.parent.evaluator().session.update_baselines:
            return exp, True
        from vitaudit.audit.value_baselines import resolved

        return resolved(exp, self._key(), self._value_store()), False

    def _skipped(self, run: "DatasetRun") -> str:
        """``1 unreadable image skipped (on_error: skip): data/x.png`` when the dataset skips them."""
        bad = run.unreadable
        if not bad or run.dataset.on_error != "skip":
            return ""
        names = ", ".join(name for _, name, _ in bad[:NAMED]) + (f" and {len(bad) - NAMED} more" if len(bad) > NAMED else "")
        return f"{len(bad)} unreadable image{'s' if len(bad) != 1 else ''} skipped (on_error: skip): {names}"

    def _unreadable(self, run: "DatasetRun") -> str:
        bad = run.unreadable
        if not bad:
            return ""
        more = f" and {len(bad) - NAMED} more" if len(bad) > NAMED else ""
        head = f"{len(bad)} image{'s' if len(bad) != 1 else ''} of dataset '{run.dataset.key}' could not be read"
        causes = {_cause(name, cause) for _, name, cause in bad}
        if len(causes) == 1 and len(bad) > 1:  # one cause for all (an endpoint down): said once
            return f"{head}: {causes.pop()} ({', '.join(name for _, name, _ in bad[:NAMED])}{more})"
        named = "; ".join(f"{name} ({cause})" for _, name, cause in bad[:NAMED])
        return f"{head}: {named}{more}"

    def aggregate_sentence(self, run: "DatasetRun", values: ImageValues, v: "Verdict",
                           exp: "Expectation") -> str:
        from vitaudit.aggregate import worst_and_best
        from vitaudit.verdict_text import aggregate_summary

        from vitaudit.audit.evaluation import fmt
        from vitaudit.audit.value_baselines import difference

        n = v.n_images
        counted = self._counted(run, n)
        if v.value is not None:
            said = aggregate_summary(exp, v, counted)
        elif exp.aggregate == "share":
            said = f"no image to count (expected at least {exp.share:.0%} of images)"
        else:
            said = f"no {exp.aggregate}: no image has a value (expected {exp.op} {fmt(exp.value)})"
        if exp.relative is not None:
            said += f"; {difference(v.value, exp.relative.baseline)}"
        worst, _ = worst_and_best(values, exp.op, worst=NAMED, best=0, yes_no=exp.metric == "pointing_game")
        shown = [f"{w.image} {'no value' if w.value is None else fmt(w.value)}" for w in worst
                 if w.passed is not True]
        if shown:
            said += f"; worst: {', '.join(shown)}"
        if v.n_missing:
            first = values.first(~values.has_value)
            said += f"; {v.n_missing} without a value (first: {first.image}: {first.error})"
        skipped = self._skipped(run)
        if skipped:
            said += f"; {skipped}"
        context = f"dataset '{exp.dataset}'" + (f", class '{self.group}'" if self.group is not None else "")
        context += self.models_said()
        return f"{self.where()}: {exp.text!r} failed: {said} [{context}]"

    def _counted(self, run: "DatasetRun", n: int) -> str:
        """``300 images``, or ``120 of 300 images (those with 'dog')`` for a region not on all."""
        exp = self.expectation
        everyone = len(run.dataset.samples) - len(run.unreadable)
        if self.group is not None:
            everyone = sum(1 for s in run.dataset.samples if s.label == self.group)
        noun = "image" if n == 1 else "images"
        if exp.region is not None and n < everyone:
            return f"{n} of {everyone} {noun} (those with '{exp.region.region.name}')"
        return f"{n} {noun}"


def _cause(name: str, cause: str) -> str:
    """What went wrong, without the image's own name (``cannot read image s3://a.png: endpoint
    down`` -> ``endpoint down``), so images that failed for one reason can share one sentence."""
    for lead in (f"cannot read image {name}: ", f"image object not found: {name}"):
        if cause.startswith(lead):
            return cause[len(lead):] or "not found"
    return cause.replace(name, "<image>")
