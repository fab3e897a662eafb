"""The numbers of each audit item as JUnit properties, so CI test viewers show them.

Under ``--junitxml`` each ``<testcase>`` then carries ``<property name="metric" value="mass_in"/>``,
``value``, ``threshold`` and ``kind`` (and ``baseline`` for a threshold relative to a recorded value), and
``id``, the expectation's identity in ``audit.json`` (the same in serial and xdist runs, from any rootdir).
Items for problems in an audit file carry them too (``kind`` = ``error``).
pytest's junitxml writes an item's ``user_properties`` from its teardown report, so they are added to
the item when its result is known, in the call phase; under pytest-xdist they travel with the reports.
"""
from __future__ import annotations

from typing import Any

#: The properties every audit item records, in this order (an empty value when it has none).
NAMES = ("kind", "metric", "value", "threshold")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return str(value)


def properties(result: dict[str, Any]) -> list[tuple[str, str]]:
    """``[("kind", "localisation"), ("metric", "mass_in"), ("value", "0.61"), ("threshold", "0.5")]``,
    plus ``op`` and ``baseline`` when the expectation has them."""
    out = [(name, _text(result.get(name))) for name in NAMES]
    for extra in ("op", "baseline"):
        if result.get(extra) is not None:
            out.append((extra, _text(result[extra])))
    return out


def record(item, results: list[dict[str, Any]]) -> None:
    """Add the properties of an audit item's result to ``item.user_properties`` (once)."""
    if getattr(item, "_vitaudit_junit", False) or len(results) != 1:
        return  # Python audits with several checks keep their own properties
    item._vitaudit_junit = True
    # The run-independent id (vitaudit.plugin.identity): the testcase's name is pytest's node id,
    # which moves with the rootdir and carries pytest-xdist's group suffix under --dist loadgroup.
    item.user_properties.append(("id", str(results[0].get("nodeid", ""))))
    item.user_properties.extend(properties(results[0]))
