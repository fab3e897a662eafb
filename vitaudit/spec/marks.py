"""``xfail:``, ``skip:`` and ``marks:`` (per expectation or for the whole file) -> :class:`Mark`."""
from __future__ import annotations

import re

from .context import scalar_bool
from .errors import SentenceError, did_you_mean
from .model import Mark
from .yamlload import YNode

MARK_KEYS = ("xfail", "skip", "marks")
XFAIL_KEYS = ("reason", "strict", "run")
_MARK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def read_marks(node: YNode) -> tuple[tuple[Mark, ...], set[str]]:
    """Marks from the ``xfail``/``skip``/``marks`` keys of mapping ``node``, and which of
    ``xfail``/``skip`` it sets (``xfail: false`` sets it too: it cancels a file-level xfail)."""
    marks: list[Mark] = []
    overridden: set[str] = set()
    for name in ("skip", "xfail"):
        if name in node.value:
            overridden.add(name)
            mark = _skip_or_xfail(name, node.value[name])
            if mark is not None:
                marks.append(mark)
    if "marks" in node.value:
        marks.extend(_mark_list(node.value["marks"]))
    return tuple(marks), overridden


def combine(file_marks: tuple[Mark, ...], own: tuple[Mark, ...], overridden: set[str]) -> tuple[Mark, ...]:
    """File-level marks, minus the ``xfail``/``skip`` the expectation sets itself, then its own."""
    kept = tuple(m for m in file_marks if m.name not in overridden)
    return kept + tuple(m for m in own if m not in kept)


def _skip_or_xfail(name: str, node: YNode) -> Mark | None:
    if node.is_scalar and isinstance(node.value, bool):
        return Mark(name) if node.value else None
    if node.is_scalar and isinstance(node.value, str) and node.value.strip():
        return Mark(name, (), {"reason": node.value.strip()})
    if node.is_map:
        kwargs: dict[str, object] = {}
        allowed = XFAIL_KEYS if name == "xfail" else ("reason",)
        for key, value in node.value.items():
            if key not in allowed:
                raise SentenceError(f"unknown key '{key}' in {name}{did_you_mean(key, allowed)}; "
                                    f"keys: {', '.join(allowed)}", node.keys[key].line)
            if key == "reason":
                if not value.is_scalar or not isinstance(value.value, str):
                    raise SentenceError(f"{name} reason must be a string, got {value.describe()}", value.line)
                kwargs[key] = value.value
            else:
                kwargs[key] = scalar_bool(value, f"xfail '{key}'")
        return Mark(name, (), kwargs)
    shape = "a reason string, true/false, or {reason: ..., strict: true}" if name == "xfail" else \
        "a reason string, true/false, or {reason: ...}"
    raise SentenceError(f"'{name}' must be {shape}, got {node.describe()}", node.line)


def _mark_list(node: YNode) -> list[Mark]:
    items = [node] if node.is_scalar else node.value if node.is_seq else None
    if items is None:
        raise SentenceError(f"'marks' must be a list of mark names like [slow], got {node.describe()}", node.line)
    marks = []
    for item in items:
        if not item.is_scalar or not isinstance(item.value, str) or not _MARK_NAME.match(item.value):
            raise SentenceError(f"a mark is a name like slow, got {item.describe()}", item.line)
        marks.append(Mark(item.value))
    return marks
