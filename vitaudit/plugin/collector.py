"""The controller's side: gather every item's results (also from xdist workers) and write the report.

Results arrive attached to test reports (``report.vitaudit``), which pytest-xdist serialises
from the workers through ``pytest_report_to_serializable``; in one process they are the same
objects. The report is written at the end of the session whatever happened (failures,
Ctrl-C, a crash in one item), atomically, and only when audits ran.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

#: Dataset verdicts within noise listed at the end of a run (the rest are counted).
NOISE_LISTED = 10


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(device: str) -> dict[str, str]:
    env = {name: _version(dist) for name, dist in
           (("vitaudit", "vitaudit"), ("torch", "torch"), ("timm", "timm"), ("grad-cam", "grad-cam"))}
    env["python"] = platform.python_version()
    env["platform"] = platform.platform(terse=True)
    env["device"] = device
    try:
        import torch

        if torch.cuda.is_available():
            env["cuda"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # pragma: no cover - torch always imports where audits ran
        pass
    return env


def executor_environment(passes: list[dict[str, Any]]) -> dict[str, str]:
    """The Run section's lines about where dataset passes ran: ``executor`` (and on Ray the
    cluster's address), ``workers`` (each as ``IP node NODE_ID pid PID DEVICE``)."""
    if not passes:
        return {}
    kinds = sorted({p["executor"] for p in passes})
    addresses = sorted({p["address"] for p in passes if p.get("address")})
    env = {"executor": ", ".join(kinds) + (f" (cluster {', '.join(addresses)})" if addresses else "")}
    workers = sorted({w for p in passes for w in p.get("workers", [])})
    if workers:
        env["workers"] = f"{len(workers)}: " + "; ".join(workers[:16]) + (" ..." if len(workers) > 16 else "")
    return env


@dataclass(eq=False)
class Collector:
    """Registered as a pytest plugin on the controller; its methods below are hooks."""

    config: pytest.Config
    started: float = field(default_factory=time.time)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # nodeid -> results
    views: dict[tuple, dict[str, Any]] = field(default_factory=dict)  # (file, image) -> ImageView dict
    models: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    recorded: list[dict[str, Any]] = field(default_factory=list)  # values recorded as baselines
    stale: dict[str, dict[str, Any]] = field(default_factory=dict)  # audit file -> its stale recorded-value keys
    executors: list[dict[str, Any]] = field(default_factory=list)  # where each dataset pass ran
    written: Path | None = None
    values_written: list[Path] = field(default_factory=list)
    summaries: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # problems worth a line at the end (a bad --audit-compare)

    def add(self, report: pytest.TestReport) -> None:
        payload = getattr(report, "vitaudit", None)
        if not payload:
            return
        for info in payload.get("models", []):
            self.models.setdefault((info["key"], info["spec"], info.get("device")), info)
        for v in payload.get("views", []):
            iv = self.views.setdefault((v["file"], v["image"]), {"file": v["file"], "image": v["image"], "uri": v["uri"], "views": []})
            if all((x["model"], x["method"]) != (v["view"]["model"], v["view"]["method"]) for x in iv["views"]):
                iv["views"].append(v["view"])
        self.recorded.extend(payload.get("values", []))
        for s in payload.get("stale", []):  # every xdist worker collects every file: once each
            self.stale.setdefault(s["file"], s)
        self.executors.extend(payload.get("executors", []))
        if payload.get("results"):
            self.results[report.nodeid] = payload["results"]

    def run_results(self, exitstatus: int | pytest.ExitCode):
        from vitaudit.results import ExpectationResult, ImageView, ModelInfo, RunResults

        device = self.config.getoption("audit_device") or self.config.getini("audit_device") or "auto"
        started = dt.datetime.fromtimestamp(self.started).astimezone().isoformat(timespec="seconds")
        results = [ExpectationResult.from_dict(r) for rs in self.results.values() for r in rs]
        results.sort(key=lambda r: r.file)  # stable: items keep the order they ran in within a file
        return RunResults(
            started_at=started,
            duration=time.time() - self.started,
            command=" ".join(["pytest", *map(str, self.config.invocation_params.args)]),
            environment={**environment(device), **executor_environment(self.executors)},
            models=[ModelInfo(**m) for m in self.models.values()],
            results=results,
            images=[ImageView.from_dict(v) for v in self.views.values()],
            interrupted=int(exitstatus) in (int(pytest.ExitCode.INTERRUPTED), int(pytest.ExitCode.INTERNAL_ERROR)),
        )

    def _path(self, option: str) -> Path | None:
        value = self.config.getoption(option)
        if not value:
            return None
        path = Path(value)
        return path if path.is_absolute() else Path(self.config.invocation_params.dir) / path

    def comparison(self, run):
        """The comparison with ``--audit-compare OLD.json`` (None without it, or when it cannot be read)."""
        old = self._path("audit_compare")
        if old is None:
            return None
        from vitaudit.compare import CompareError, Row, compare, load

        try:
            rows = load(old)
        except CompareError as exc:
            self.notes.append(f"--audit-compare: {exc}")
            return None
        return compare(rows, [Row.from_dict(r.to_dict()) for r in run.results],
                       old_name=str(self.config.getoption("audit_compare")), new_name="this run")

    def write(self, exitstatus: int | pytest.ExitCode) -> Path | None:
        """Write the report (unless ``--audit-no-report``) and the Markdown summary (when asked for)."""
        if not self.results:
            return None
        run = self.run_results(exitstatus)
        comparison = self.comparison(run)
        html = None
        if not self.config.getoption("audit_no_report"):
            from vitaudit.report import write_report

            html = Path(self.config.getoption("audit_report") or self.config.getini("audit_report"))
            if not html.is_absolute():
                html = Path(self.config.invocation_params.dir) / html
            write_report(run, html, html.with_suffix(".json"), comparison=comparison)
            self.written = html
        summary_path = self._path("audit_summary")
        if summary_path is not None or os.environ.get("GITHUB_STEP_SUMMARY"):
            from . import summary

            self.summaries = summary.write(summary.markdown(run, html, comparison), summary_path)
        return html

    # ------------------------------------------------------------------ hooks
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.add(report)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.recorded or self.stale:  # once, here: xdist workers never write the values files themselves
            from vitaudit.audit.value_baselines import write_recorded

            self.values_written = write_recorded(self.recorded, self.stale.values())
            for s in self.stale.values():
                what = "pruned" if s["prune"] else "kept (the audit file has errors; fix them and record again)"
                self.notes.append(f"{s['rel']}: {len(s['keys'])} recorded value(s) no expectation records any more, "
                                  f"{what}: {', '.join(s['keys'])}")
        self.write(exitstatus)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        from vitaudit.verdict_text import noise_lines

        noisy = noise_lines([r for rs in self.results.values() for r in rs])
        if self.written is not None or self.values_written or self.summaries or self.notes or noisy:
            terminalreporter.write_sep("-", "vitaudit")
        if noisy:
            terminalreporter.write_line(f"{len(noisy)} dataset verdict{'s' if len(noisy) != 1 else ''} within noise "
                                        "(the threshold is inside the 95% interval):", yellow=True)
            for line in noisy[:NOISE_LISTED]:
                terminalreporter.write_line(f"  {line}", yellow=True)
            if len(noisy) > NOISE_LISTED:
                terminalreporter.write_line(f"  ... and {len(noisy) - NOISE_LISTED} more (within_noise in audit.json)",
                                            yellow=True)
        for path in self.values_written:
            terminalreporter.write_line(f"value baselines: {path}")
        for path in self.summaries:
            terminalreporter.write_line(f"summary: {path}")
        for note in self.notes:
            terminalreporter.write_line(note, yellow=True)
        if self.written is not None:
            terminalreporter.write_line(f"audit report: {self.written} (JSON: {self.written.with_suffix('.json')})")
