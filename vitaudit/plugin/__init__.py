"""The pytest plugin, registered through the ``pytest11`` entry point: installing vitaudit enables it.

- collection (:mod:`.audit_file`, :mod:`.collect`): ``audit_*.yaml`` / ``*.audit.yaml`` files -> image -> expectation items;
- execution (:mod:`vitaudit.audit`, the pytest-free core): one model load per session, one pass per
  image, a sentence per failure;
- reporting (:mod:`.collector`): results travel on the test reports (xdist-safe) to the controller,
  which writes ``reports/audit.html`` and ``reports/audit.json`` at the end of the session.

Importing this module is cheap (no torch): pytest loads it for every run.
"""
from __future__ import annotations

from typing import Any

import pytest

from .audit_file import AuditFile
from .collect import AuditItem, SpecErrorItem, audit_session
from .fixtures import audit, audit_model, explain  # noqa: F401  (fixtures)

COLLECTOR_KEY = pytest.StashKey["Collector"]()
KINDS = ("prediction", "localisation", "comparison", "baseline", "faithfulness", "sanity", "error")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vitaudit", "explanation audits (vitaudit)")
    group.addoption("--audit-report", dest="audit_report", default=None, metavar="PATH",
                    help="write the HTML audit report here (default: reports/audit.html; JSON beside it)")
    group.addoption("--audit-device", dest="audit_device", default=None,
                    help="device for audit models: auto (CUDA when present), cpu, cuda, cuda:1 ...")
    group.addoption("--audit-batch-size", dest="audit_batch_size", type=int, default=None,
                    help="images per forward pass (default: 8 on CPU, 32 on CUDA)")
    group.addoption("--audit-max-side", dest="audit_max_side", type=int, default=None, metavar="PX",
                    help="working resolution: metrics, masks and pictures use maps whose longest side is at "
                         "most PX (default 1024; 0: the original size)")
    group.addoption("--audit-update-baselines", dest="audit_update_baselines", action="store_true",
                    help="write (or refresh) the stored baseline maps instead of comparing with them")
    group.addoption("--audit-no-report", dest="audit_no_report", action="store_true",
                    help="do not write the HTML/JSON audit report")
    group.addoption("--audit-compare", dest="audit_compare", default=None, metavar="OLD.json",
                    help="compare with an earlier run's audit.json: a 'changed since' section and a delta on each card")
    group.addoption("--audit-summary", dest="audit_summary", default=None, metavar="PATH",
                    help="write a Markdown summary of the audit here (also appended to $GITHUB_STEP_SUMMARY "
                         "when that is set)")
    parser.addini("audit_report", "path of the HTML audit report", default="reports/audit.html")
    parser.addini("audit_device", "device for audit models", default="auto")
    parser.addini("audit_batch_size", "images per forward pass", default="0")
    parser.addini("audit_max_side", "longest side of the working resolution (0: original size)", default="1024")
    from .options import add_executor_options

    add_executor_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for kind in KINDS:
        config.addinivalue_line("markers", f"audit_{kind}: a vitaudit {kind} expectation")
    _check_device(config)
    from .options import check_executor

    check_executor(config)
    audit_session(config)
    if not hasattr(config, "workerinput"):  # the controller, or a single process
        from .collector import Collector

        collector = Collector(config)
        config.stash[COLLECTOR_KEY] = collector
        config.pluginmanager.register(collector, "vitaudit-collector")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave the Ray cluster a pass joined (and stop one this run started), if any did."""
    import sys

    if "vitaudit.audit.ray_cluster" in sys.modules:
        sys.modules["vitaudit.audit.ray_cluster"].disconnect()


def _check_device(config: pytest.Config) -> None:
    """A device this machine lacks stops the run with one line, before any item fails on it."""
    device = config.getoption("audit_device") or config.getini("audit_device") or "auto"
    if device in ("auto", "cpu"):
        return  # no torch import for the common cases
    from vitaudit.models import device_problem

    problem = device_problem(device)
    if problem is not None:
        source = "--audit-device" if config.getoption("audit_device") else "the ini key audit_device ="
        raise pytest.UsageError(f"{source} {device}: {problem}")


def pytest_collect_file(file_path, parent: pytest.Collector):
    from vitaudit.spec import is_audit_file

    if is_audit_file(file_path.name):
        return AuditFile.from_parent(parent, path=file_path)
    return None


def _outcome(item: pytest.Item, report: pytest.TestReport) -> str:
    xfail = hasattr(report, "wasxfail")
    if report.passed:
        return "xpassed" if xfail else "passed"
    if report.skipped:
        return "xfailed" if xfail else "skipped"
    return "error" if getattr(item, "input_error", False) else "failed"


def _message(report: pytest.TestReport, fallback: str) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if hasattr(report, "wasxfail") and report.wasxfail:
        return f"xfail: {report.wasxfail}" + (f"; {fallback}" if fallback else "")
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr).strip()
        return text.splitlines()[-1] if "\n" in text and text.startswith("[XPASS") else text
    return fallback


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """The audit core's ModelSkipped (weights that cannot be had here) is a skip at the item's line."""
    from vitaudit.audit.session import ModelSkipped

    try:
        return (yield)
    except ModelSkipped as exc:
        raise pytest.skip.Exception(str(exc), _use_item_location=True) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]):
    report = yield
    session = audit_session(item.config)
    final = report.when == "call" or (report.when == "setup" and not report.passed)
    results = list(getattr(item, "vitaudit_results", None) or [])
    if final and isinstance(item, AuditItem) and not results:
        from .report_data import base_result

        results = [base_result(item, item.parent.parent.spec)]
    if final and results:
        if isinstance(item, (AuditItem, SpecErrorItem)):
            from .junit import record

            record(item, results)
        for r in results:
            if r.get("kind") != "python":  # a Python audit's checks carry their own outcome
                r["outcome"] = _outcome(item, report)
                r["message"] = _message(report, r.get("message", ""))
            elif hasattr(report, "wasxfail") and r["outcome"] in ("passed", "failed"):
                r["outcome"] = {"passed": "xpassed", "failed": "xfailed"}[r["outcome"]]
    payload = session.outbox.drain()
    if final and results:
        payload["results"] = results
    if any(payload.values()):
        report.vitaudit = payload  # type: ignore[attr-defined]
    return report


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report):
    data = yield
    payload = getattr(report, "vitaudit", None)
    if data is not None and payload:
        data["vitaudit"] = _plain_payload(payload)
    return data


def _plain_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with per-image columns (:class:`~vitaudit.per_image.PerImage`) as plain lists,
    which pytest-xdist can send (``ExpectationResult.from_dict`` makes them columns again)."""
    from vitaudit.per_image import PerImage

    results = payload.get("results")
    if not results or not any(isinstance(r.get("per_image"), PerImage) for r in results):
        return payload
    return {**payload, "results": [{**r, "per_image": r["per_image"].to_plain()}
                                   if isinstance(r.get("per_image"), PerImage) else r for r in results]}


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(config: pytest.Config, data: dict[str, Any]):
    report = yield
    if report is not None and isinstance(data, dict) and "vitaudit" in data:
        report.vitaudit = data["vitaudit"]
    return report
