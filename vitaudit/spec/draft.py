"""An expectation as read from either form, before names are checked against the declarations.

Both the sentence parser and the structured-form reader produce a :class:`Draft`; one builder
(:mod:`vitaudit.spec.build`) turns drafts into :class:`~vitaudit.spec.model.Expectation`, so the
two forms cannot drift apart. This module also holds the small text helpers both readers use.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml

from .errors import SentenceError
from .model import Label, MapRef, Relative

if TYPE_CHECKING:
    from .yamlload import YNode

NAME = r"[^\W\d][\w-]*"  # letters (any script), digits, _ and -, not starting with a digit or -
NAME_RE = re.compile(rf"^{NAME}$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


@dataclass
class Draft:
    """The parts of one expectation, names unchecked. ``lines`` maps a part (``"model"``,
    ``"region"``, ``"value"``, an option name...) to the line it was written on, when known."""

    metric: str
    model: str | None = None
    maps: tuple[MapRef, ...] = ()
    labels: tuple[Label, ...] = ()
    group_only: bool = False  # `top1 in <name>`: the name must be a `labels:` group
    k: int | None = None
    region: tuple[str, bool] | None = None  # (name, negate)
    op: str | None = None
    value: float | None = None
    relative: Relative | None = None  # a threshold written against a recorded value
    options: dict[str, object] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    aggregate: str | None = None  # dataset expectations: mean | median | min | max | p<N> | share | accuracy
    share: float | None = None  # ``for N% of images``, as a fraction
    group: str | None = None  # ``per class``
    confidence: float | None = None  # ``with 95% confidence``, as a fraction


def parse_number(text: str, what: str = "threshold") -> float:
    """``"0.4"`` -> ``0.4``; anything else raises with the offending text."""
    if not _NUMBER_RE.match(text.strip()):
        raise SentenceError(f"{what} must be a number, got '{text.strip()}'")
    return float(text)


def parse_label(text: str) -> Label:
    """A class as written in a sentence: ``"tabby, tabby cat"`` (quoted), ``281`` or ``tiger cat``."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        inner = text[1:-1].strip()
        if not inner:
            raise SentenceError("empty class name")
        return inner
    if not text:
        raise SentenceError("missing class name")
    if text.isdigit():
        return int(text)
    if text.startswith("-") and text[1:].isdigit():
        raise SentenceError(f"a class index cannot be negative, got {text}")
    if any(c in text for c in "[](){}\"'"):
        raise SentenceError(f"cannot read class name '{text}' (quote names with brackets or quotes)")
    return text


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quotes and brackets: ``a, "b, c", f(x, y)`` -> 3 parts."""
    parts: list[str] = []
    depth, quote, start = 0, "", 0
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quote or depth:
        raise SentenceError(f"unbalanced brackets or quotes in '{text}'")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def closing_paren(text: str, open_at: int) -> int:
    """Index of the ``)`` matching the ``(`` at ``open_at``."""
    depth, quote = 0, ""
    for i in range(open_at, len(text)):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
    raise SentenceError(f"missing ')' in '{text}'")


def option_value(value: object) -> object:
    """Make an option value hashable: lists become tuples."""
    if isinstance(value, list):
        return tuple(option_value(v) for v in value)
    if isinstance(value, dict):
        raise SentenceError("an option value cannot be a mapping")
    return value



def option_mapping(node: YNode, key: str, example: str, what: str) -> tuple[tuple[str, object], ...]:
    """A mapping of option values (``model_kwargs``, ``method_options``) as sorted pairs."""
    from .context import plain

    if not node.is_map:
        raise SentenceError(f"'{key}' must be a mapping like {example}, got {node.describe()}", node.line)
    out = {}
    for name, value in node.value.items():
        try:
            out[name] = option_value(plain(value))
        except SentenceError as exc:
            raise SentenceError(f"{what} '{name}': {exc.message}", value.line) from None
    return tuple(sorted(out.items()))

def parse_method_options(text: str) -> dict[str, object]:
    """``head_fusion=max, discard_ratio=0.9`` -> ``{"head_fusion": "max", "discard_ratio": 0.9}``.

    Values are read as YAML scalars (``true`` is a bool, ``0.9`` a float, ``max`` a string).
    """
    options: dict[str, object] = {}
    if not text.strip():
        return options
    for part in split_top(text):
        key, eq, raw = part.partition("=")
        key = key.strip()
        if not eq or not NAME_RE.match(key) or not raw.strip():
            raise SentenceError(f"method option '{part}' should look like name=value")
        if key in options:
            raise SentenceError(f"method option '{key}' given twice")
        try:
            value = yaml.safe_load(raw.strip())
        except yaml.YAMLError:
            raise SentenceError(f"cannot read the value of method option '{part}'") from None
        options[key] = option_value(value)
    return options


_MAPREF_RE = re.compile(rf"^(?P<model>{NAME})\.(?P<method>[A-Za-z_][A-Za-z0-9_+-]*)")


def parse_mapref_head(text: str) -> tuple[MapRef, str] | None:
    """Read ``model.method(opts)`` at the start of ``text``; return it and the rest, or ``None``."""
    m = _MAPREF_RE.match(text)
    if m is None:
        return None
    end = m.end()
    options: dict[str, object] = {}
    if end < len(text) and text[end] == "(":
        close = closing_paren(text, end)
        options = parse_method_options(text[end + 1 : close])
        end = close + 1
    ref = MapRef(m["model"], m["method"], tuple(sorted(options.items())))
    return ref, text[end:].strip()


def parse_mapref(text: str) -> MapRef:
    """A whole map reference: ``vit.rollout(head_fusion=max)`` or ``vit.gradcam for tabby``."""
    text = " ".join(text.split())
    head = parse_mapref_head(text)
    if head is None:
        raise SentenceError(f"'{text}' is not a map; write <model>.<method>, e.g. vit.rollout")
    ref, rest = head
    if not rest:
        return ref
    m = re.match(r"^for\s+(.+)$", rest, re.IGNORECASE)
    if m is None:
        raise SentenceError(f"unexpected '{rest}' after {ref.label} (a target class is written 'for <class>')")
    return MapRef(ref.model, ref.method, ref.options, parse_label(m[1]))
