"""Collection: an audit file (:mod:`.audit_file`) becomes a pytest File, each image a Collector, each
expectation an Item.

Ids read ``audits/audit_pets.yaml::goat::vit.attention-mass_in[goat]``. A problem in the file
never stops the others: each spec error becomes a failing item at its own file and line, and
the file's valid expectations still run.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from vitaudit.audit.session import AuditFailure, AuditInputError, AuditSession

from .options import session_for

if TYPE_CHECKING:
    from vitaudit.spec import Expectation, SpecError

    from .nodes import FileNode

SESSION_KEY = pytest.StashKey[AuditSession]()


def audit_session(config: pytest.Config) -> AuditSession:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        session = session_for(config)
        config.stash[SESSION_KEY] = session
    return session


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
        audit_file: "FileNode" = self.parent.parent
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

