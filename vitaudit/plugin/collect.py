"""Collection: an audit file becomes a pytest File, each image a Collector, each expectation an Item.

Ids read ``audits/audit_pets.yaml::goat::vit.attention-mass_in[goat]``. A problem in the file
never stops the others: each spec error becomes a failing item at its own file and line, and
the file's valid expectations still run.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from .identity import project_relative
from .session import AuditFailure, AuditInputError, AuditSession, warm_imports

if TYPE_CHECKING:
    from vitaudit.spec import AuditSpec, Expectation, SpecError

SESSION_KEY = pytest.StashKey[AuditSession]()


def audit_session(config: pytest.Config) -> AuditSession:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        session = AuditSession(config)
        config.stash[SESSION_KEY] = session
    return session


class AuditFile(pytest.File):
    """One ``audit_*.yaml`` file."""

    spec: "AuditSpec"

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        from vitaudit.spec import parse_audit_file

        self.spec = parse_audit_file(self.path)
        self.rel = project_relative(self.config, self.path)  # see .identity
        session = audit_session(self.config)
        if session.update_baselines:
            from .value_baselines import stale_keys

            stale = stale_keys(self.spec)
            if stale:
                session.outbox.stale.append({"file": str(self.path.absolute()), "rel": self.rel, "keys": stale,
                                             "prune": not self.spec.errors})
        if self.spec.expectations:
            cams = any(m.method not in ("attention", "rollout") for e in self.spec.expectations for m in e.maps)
            warm_imports(["vitaudit.engine"] + (["pytorch_grad_cam"] if cams else []) + ["vitaudit.report"])
        for err in self.spec.errors:
            yield SpecErrorItem.from_parent(self, name=f"error@L{err.line}", error=err)
        by_image: dict[str, list["Expectation"]] = {}
        for exp in self.spec.expectations:
            by_image.setdefault(exp.image, []).append(exp)
        for image, exps in by_image.items():
            if exps[0].dataset is not None:
                from .dataset_items import DatasetNode

                yield DatasetNode.from_parent(self, name=image, dataset=self.spec.datasets[image], expectations=exps)
            else:
                yield ImageNode.from_parent(self, name=image, expectations=exps)

    def dataset_run(self, key: str):
        """The pass over dataset ``key`` for every expectation of this file on it (run once)."""
        runs = getattr(self, "_dataset_runs", None)
        if runs is None:
            runs = self._dataset_runs = {}
        if key not in runs:
            from .dataset_pass import run_dataset
            from .progress import Progress

            ev = self.evaluator()
            # only the expectations this session runs (-k, --lf, --deselect leave the others out)
            chosen = {it.expectation.id for it in getattr(self.session, "items", [])
                      if isinstance(it, AuditItem) and it.parent.parent is self}
            exps = [e for e in self.spec.expectations if e.dataset == key and (not chosen or e.id in chosen)]
            dataset = self.spec.datasets[key]
            progress = Progress(self.config, f"{self.rel}::{key}")
            runs[key] = run_dataset(ev, dataset, exps, batch_size=ev.session.batch_size, progress=progress)
            progress.close(len(dataset.samples), len(dataset.samples))
        return runs[key]

    def evaluator(self):
        ev = getattr(self, "_evaluator", None)
        if ev is None:
            from .evaluate import Evaluator

            ev = self._evaluator = Evaluator(self.spec, audit_session(self.config))
        return ev


class ImageNode(pytest.Collector):
    """The expectations of one image of an audit file."""

    def __init__(self, *, expectations: list["Expectation"], **kwargs: Any):
        super().__init__(**kwargs)
        self.expectations = expectations

    def collect(self) -> Iterator[pytest.Item]:
        for exp in self.expectations:
            # An explicit nodeid, so that pytest reads "...::vit-top1_in[ram]" the same way when it
            # parses ids back (--lf, --deselect): the bracket part as params, like parametrized tests.
            yield AuditItem.from_parent(self, name=exp.id, nodeid=f"{self.nodeid}::{exp.id}", expectation=exp)


class _Reported(pytest.Item):
    """Items that hand an ExpectationResult to the report (see the makereport hook)."""

    vitaudit_results: list[dict[str, Any]]
    input_error: bool = False

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None):  # type: ignore[override]
        if isinstance(excinfo.value, (AuditFailure, AuditInputError)) and self.config.getoption("tbstyle", "auto") != "long":
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.line - 1, self.describe()


class AuditItem(_Reported):
    """One expectation: measure it, compare it, and say what happened in one sentence."""

    def __init__(self, *, expectation: "Expectation", **kwargs: Any):
        super().__init__(**kwargs)
        self.expectation = expectation
        self.line = expectation.line
        self.vitaudit_results = []
        for mark in expectation.marks:
            self.add_marker(getattr(pytest.mark, mark.name)(*mark.args, **mark.kwargs))
        kind = expectation.kind
        self.add_marker(getattr(pytest.mark, f"audit_{kind}"))
        self.user_properties.append(("audit", f"{self.parent.parent.rel}:{self.line}"))

    def describe(self) -> str:
        return self.expectation.text

    def where(self) -> str:
        return f"{self.parent.parent.rel}:{self.line}"

    def runtest(self) -> None:
        from . import report_data

        exp = self.expectation
        audit_file: AuditFile = self.parent.parent  # type: ignore[assignment]
        ev = audit_file.evaluator()
        start = time.perf_counter()
        result = report_data.base_result(self, audit_file.spec)
        self.vitaudit_results = [result]
        try:
            evaluation = ev.evaluate(exp)
        except AuditInputError as exc:
            self.input_error = True
            raise AuditInputError(f"{self.where()}: {exp.text!r} on '{exp.image}': {exc}") from None
        except AuditFailure as exc:
            raise AuditFailure(f"{self.where()}: {exc}") from None
        finally:
            result["duration"] = time.perf_counter() - start
        report_data.fill_result(result, self, audit_file, evaluation)
        if not evaluation.passed:
            raise AuditFailure(self.failure_sentence(evaluation))

    def models_said(self) -> str:
        """``, model vit = fixture:vit-scenes; cnn = ...`` for the failure sentence's context."""
        spec = self.parent.parent.spec
        models = [f"{k} = {spec.models[k].name}" for k in self.expectation.model_keys if k in spec.models]
        return f", model {'; '.join(models)}" if models else ""

    def failure_sentence(self, evaluation) -> str:
        exp = self.expectation
        context = f"image '{exp.image}'" + self.models_said()
        note = f"; {evaluation.note}" if evaluation.note and not evaluation.note.startswith("curve") else ""
        return f"{self.where()}: {exp.text!r} failed: {evaluation.summary} [{context}{note}]"


class SpecErrorItem(_Reported):
    """A problem in the audit file itself, shown as a failing item at its line."""

    def __init__(self, *, error: "SpecError", **kwargs: Any):
        super().__init__(**kwargs)
        self.error = error
        self.line = error.line
        self.input_error = True
        self.vitaudit_results = []
        self.add_marker(pytest.mark.audit_error)
        self.user_properties.append(("audit", f"{self.parent.rel}:{self.line}"))

    def describe(self) -> str:
        return self.error.text or self.error.message

    def runtest(self) -> None:
        from . import report_data

        self.vitaudit_results = [report_data.error_result(self)]
        raise AuditInputError(f"{self.parent.rel}:{self.error.line}: {self.error.message}")

