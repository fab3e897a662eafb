"""What the report's data (:mod:`.report_data`, :mod:`.dataset_results`) reads of the collection's
nodes, as protocols: those modules describe items without importing the collection that calls them
(which would make an import circle)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from vitaudit.audit.evaluate import Evaluator
    from vitaudit.spec import AuditSpec, Expectation, SpecError


class FileNode(Protocol):
    """An audit file (:class:`.audit_file.AuditFile`)."""

    rel: str
    spec: "AuditSpec"

    def evaluator(self) -> "Evaluator": ...


class ExpectationNode(Protocol):
    """An expectation's item (:class:`.collect.AuditItem`; ``group`` on a per-class aggregate item)."""

    nodeid: str
    expectation: "Expectation"
    parent: Any  # the image or dataset node, whose parent is the FileNode


class AggregateNode(ExpectationNode, Protocol):
    """A dataset aggregate's item (:class:`.dataset_items.AggregateItem`)."""

    group: str | None


class ErrorNode(Protocol):
    """A problem in the audit file (:class:`.collect.SpecErrorItem`)."""

    nodeid: str
    error: "SpecError"
    parent: Any  # the FileNode
