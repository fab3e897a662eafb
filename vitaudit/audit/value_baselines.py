"""Recorded values for relative thresholds (``>= baseline - 0.05``), in the manner of pytest-regressions.

``pytest audits/ --audit-update-baselines`` records the measured value of every expectation whose
threshold is written against ``baseline`` (and, for dataset aggregates, the per-image values); later
runs compare with it. One file per audit file, beside its map baselines::

    audits/baselines/audit_scenes/values.json

JSON with sorted keys, one value per line and a trailing newline, so that a change reviews as a
small diff. Values are kept at full precision: an unchanged model reproduces them exactly.

Recording never writes from an item: under pytest-xdist several workers would race on the file.
Each item puts what it recorded into the session's outbox; the values travel on the test reports
to the controller (like the report's results), which merges them into each file once, atomically,
at the end of the session (:func:`write_recorded`).

The API the evaluators use (image expectations here; dataset aggregates call the same):

- :func:`store_for` -> the :class:`Store` of one audit file in this process;
- :func:`resolve` -> ``(threshold, baseline)`` of an expectation, or :class:`MissingBaseline`;
- :meth:`Store.record` -> queue a measured value (and per-image values) for writing;
- :func:`evaluate_relative` wraps a measuring function with both.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import baselines
from .session import AuditFailure, AuditInputError

if TYPE_CHECKING:
    from vitaudit.spec import Expectation

    from .evaluation import Evaluation
    from .session import AuditSession

FORMAT = "vitaudit-values/1"
FILE_NAME = "values.json"


class MissingBaseline(AuditFailure):
    """No recorded value for an expectation with a relative threshold."""


def path_for(audit_file: str | Path) -> Path:
    """``audits/baselines/audit_scenes/values.json`` for ``audits/audit_scenes.yaml``."""
    audit = Path(audit_file).absolute()
    stem = audit.name[: -len(".yaml")] if audit.name.endswith(".yaml") else audit.stem
    return audit.parent / "baselines" / baselines._safe(stem) / FILE_NAME


def key_for(exp: "Expectation") -> str:
    """An expectation's key in the file: what it measures, ``<image>::<id>`` with the id as the
    expectation's words make it (:func:`vitaudit.spec.ids.base_id`: subject, metric, classes or
    region, options, aggregate), never the ordinal the item id adds to a repeated line, nor an
    ``id:`` the user set. So adding, deleting or renaming other lines changes no key, and changing a
    tolerance keeps the recorded value; lines that measure the same thing share it (they would
    record the same number).

    Dataset aggregates use ``<dataset>::<id>`` (with ``[<class>]`` appended for per-class items).
    """
    from vitaudit.spec.ids import base_id

    subject = exp.image if exp.image is not None else getattr(exp, "dataset", None)
    return f"{subject}::{base_id(exp)}"


def stale_keys(spec) -> list[str]:
    """Keys in the values file of ``spec`` (an :class:`~vitaudit.spec.AuditSpec`) that no expectation of
    it records any more: deleted or reworded lines."""
    try:
        entries = read(path_for(spec.path))
    except AuditInputError:
        return []
    wanted: set[str] = set()
    per_class: list[str] = []
    for exp in spec.expectations:
        if exp.relative is None:
            continue
        key = key_for(exp)
        if exp.group is not None:
            per_class.append(key + "[")
        else:
            wanted.add(key)
    return sorted(k for k in entries if k not in wanted and not k.startswith(tuple(per_class)))


def update_command(audit_file: str | Path) -> str:
    return f"pytest {baselines.shown(audit_file)} --audit-update-baselines"


def read(path: Path, audit_file: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The entries of a values file (``{}`` when there is none): key -> ``{"value": x[, "per_image": {...}]}``."""
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        values = doc["values"]
        if doc.get("format") != FORMAT or not isinstance(values, dict):
            raise ValueError(f"not a {FORMAT} document")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fix = f"; record it again with: {update_command(audit_file)}" if audit_file else ""
        raise AuditInputError(f"cannot read value baselines {baselines.shown(path)}: {exc}{fix}") from None
    return {k: v if isinstance(v, dict) else {"value": v} for k, v in values.items()}


def render(entries: dict[str, dict[str, Any]], audit_name: str) -> str:
    """The file's text: stable order and layout (sorted keys, one value per line)."""
    values = {}
    for key in sorted(entries):
        entry = entries[key]
        per_image = entry.get("per_image")
        if not per_image and entry.get("ci") is None:
            values[key] = entry["value"]
            continue
        values[key] = {"value": entry["value"]}
        if entry.get("ci") is not None:  # dataset aggregates: the confidence interval's half-width
            values[key]["ci"] = entry["ci"]
        if per_image:
            values[key]["per_image"] = dict(sorted(per_image.items()))
    doc = {"format": FORMAT, "audit": audit_name, "values": values}
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _per_image(per_image: Any) -> dict[str, float | None] | None:
    """``[{"image", "value", ...}]`` (as in results) or ``{image: value}`` -> ``{image: value}``."""
    if per_image is None:
        return None
    if isinstance(per_image, dict):
        return {str(k): _number(v) for k, v in per_image.items()}
    return {str(row["image"]): _number(row.get("value")) for row in per_image}


@dataclass
class Store:
    """The recorded values of one audit file, as this process sees them."""

    audit_file: str
    session: "AuditSession"
    path: Path = field(init=False)
    _entries: dict[str, dict[str, Any]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.path = path_for(self.audit_file)

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = read(self.path, self.audit_file)
        return self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        return self.entries.get(key)

    def record(self, key: str, value: float | None, per_image: Any = None, ci: float | None = None) -> None:
        """Queue ``value`` (and the per-image values and the confidence interval's half-width ``ci``, for
        dataset aggregates) to be written as ``key``'s baseline by the controller at the end of the session."""
        entry = {"file": str(Path(self.audit_file).absolute()), "key": key, "value": _number(value)}
        if per_image is not None:
            entry["per_image"] = _per_image(per_image)
        if ci is not None:
            entry["ci"] = _number(ci)
        self.session.outbox.values.append(entry)


def store_for(session: "AuditSession", audit_file: str) -> Store:
    """The :class:`Store` of ``audit_file`` in this session (read once per process)."""
    stores = session.value_stores
    if audit_file not in stores:
        stores[audit_file] = Store(audit_file, session)
    return stores[audit_file]


def resolve(exp: "Expectation", key: str, store: Store) -> tuple[float, float]:
    """``(threshold, baseline)`` of an expectation with a relative threshold.

    Raises :class:`MissingBaseline` (a failure naming the command that records it) when ``key``
    has no recorded value, and :class:`AuditInputError` when the recorded value is not a number.
    """
    assert exp.relative is not None, "resolve() is for expectations with a relative threshold"
    entry = store.get(key)
    if entry is None:
        raise MissingBaseline(f"no recorded value for {exp.text!r} ({key}) in {baselines.shown(store.path)}; "
                              f"record it with: {update_command(store.audit_file)}")
    baseline = entry.get("value")
    if isinstance(baseline, bool) or not isinstance(baseline, (int, float)) or not math.isfinite(baseline):
        raise AuditInputError(f"the recorded value of {key} in {baselines.shown(store.path)} is {baseline!r}, "
                              f"not a number; record it again with: {update_command(store.audit_file)}")
    relative = exp.relative
    if relative.uses_ci:
        ci = entry.get("ci")
        if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not math.isfinite(ci):
            raise MissingBaseline(f"no recorded confidence interval for {exp.text!r} ({key}) in "
                                  f"{baselines.shown(store.path)} ('{relative.text}' needs one); "
                                  f"record it with: {update_command(store.audit_file)}")
        relative = replace(relative, ci=float(ci))
    return relative.threshold(float(baseline)), float(baseline)


def recorded_ci(key: str, store: Store) -> float | None:
    """The confidence-interval half-width recorded with ``key`` (``None`` when there is none)."""
    ci = (store.get(key) or {}).get("ci")
    return float(ci) if isinstance(ci, (int, float)) and not isinstance(ci, bool) else None


def resolved(exp: "Expectation", key: str, store: Store) -> "Expectation":
    """``exp`` with its threshold made from the recorded value (``value`` set, ``relative.baseline`` set,
    and ``relative.ci`` for ``baseline - ci``)."""
    threshold, baseline = resolve(exp, key, store)
    ci = recorded_ci(key, store) if exp.relative.uses_ci else None
    return replace(exp, value=threshold, relative=replace(exp.relative, baseline=baseline, ci=ci))


def said(relative) -> str:
    """``baseline - 0.05 with baseline 0.6``, or ``the baseline`` (:func:`vitaudit.verdict_text.relative_said`)."""
    from vitaudit.verdict_text import relative_said

    return relative_said(relative)


def difference(value: float | None, baseline: float) -> str:
    """``difference from the baseline: -0.188`` (the sentence before it gives the value and the baseline)."""
    from .evaluation import fmt

    if value is None:
        return f"baseline {fmt(baseline)}"
    return f"difference from the baseline: {value - baseline:+.3g}"


def evaluate_relative(exp: "Expectation", store: Store, measure: Callable[["Expectation"], "Evaluation"],
                      key: str | None = None) -> "Evaluation":
    """Measure an expectation whose threshold is relative: record its value (``--audit-update-baselines``)
    or compare it with the recorded one, saying baseline, value and difference."""
    key = key or key_for(exp)
    if store.session.update_baselines:
        ev = measure(exp)  # exp.value is None: the verdict passes, the summary says it is being recorded
        store.record(key, ev.value)
        ev.passed = ev.value is not None
        ev.note = (f"value recorded as the baseline in {baselines.shown(store.path)} "
                   f"(written by --audit-update-baselines)")
        return ev
    exp = resolved(exp, key, store)
    ev = measure(exp)
    ev.threshold = exp.value
    ev.baseline = exp.relative.baseline
    ev.summary += f"; {difference(ev.value, ev.baseline)}"
    return ev


def write_recorded(entries: Iterable[dict[str, Any]], stale: Iterable[dict[str, Any]] = ()) -> list[Path]:
    """On the controller: merge recorded values into each audit file's values file, atomically.

    Entries of expectations not run this time are kept; ``stale`` (``{"file", "keys", "prune"}`` per
    audit file, from :func:`stale_keys` at collection) are removed where ``prune`` is true (the audit
    file had no errors, so no key is stale only because its line failed to parse). Returns the files
    written.
    """
    from vitaudit.report.atomic import atomic_write_text

    by_file: dict[str, dict[str, dict[str, Any]]] = {}
    for e in entries:
        by_file.setdefault(e["file"], {})[e["key"]] = {k: v for k, v in e.items() if k in ("value", "per_image", "ci")}
    prune: dict[str, set[str]] = {}
    for s in stale:
        if s.get("prune") and s.get("keys"):
            prune.setdefault(s["file"], set()).update(s["keys"])
            by_file.setdefault(s["file"], {})
    written = []
    for audit_file, new in sorted(by_file.items()):
        path = path_for(audit_file)
        try:
            merged = read(path)
        except AuditInputError:  # a broken file is replaced by what was just recorded
            merged = {}
        merged.update(new)
        for key in prune.get(audit_file, ()):
            if key not in new:
                merged.pop(key, None)
        text = render(merged, Path(audit_file).name)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        written.append(path)
    return written
