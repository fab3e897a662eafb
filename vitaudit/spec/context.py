"""Shared state while reading one audit file: where it is, and the errors found so far."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SentenceError, SpecError, did_you_mean
from .yamlload import YNode


_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)$")


@dataclass
class Ctx:
    """The audit file being read (``file`` as given, ``base_dir`` absolute) and its errors."""

    file: str
    base_dir: Path
    errors: list[SpecError] = field(default_factory=list)

    def error(self, line: int, message: str, image: str | None = None, text: str | None = None) -> SpecError:
        err = SpecError(self.file, line, message, image, text)
        self.errors.append(err)
        return err

    def resolve(self, relative: str) -> str:
        """An absolute, normalised path for ``relative`` (relative to the audit file's folder)."""
        path = Path(os.path.expanduser(relative))
        if not path.is_absolute():
            path = self.base_dir / path
        return os.path.normpath(str(path))


def check_keys(ctx: Ctx, node: YNode, allowed: tuple[str, ...], where: str) -> list[SpecError]:
    """Report every key of mapping ``node`` not in ``allowed``, with a suggestion."""
    found = []
    for key, key_node in node.keys.items():
        if key not in allowed:
            found.append(ctx.error(key_node.line, f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}; "
                                                  f"keys: {', '.join(allowed)}"))
    return found


def scalar_str(node: YNode, what: str) -> str:
    """A non-empty string (numbers are taken as written); raise :class:`SentenceError` otherwise."""
    if not node.is_scalar or node.value is None or isinstance(node.value, bool) or node.raw.strip() == "":
        raise SentenceError(f"{what} must be a string, got {node.describe()}", node.line)
    return node.raw


def scalar_bool(node: YNode, what: str) -> bool:
    if not node.is_scalar or not isinstance(node.value, bool):
        raise SentenceError(f"{what} must be true or false, got {node.describe()}", node.line)
    return node.value


def scalar_int(node: YNode, what: str, minimum: int | None = None) -> int:
    value = node.value
    if not node.is_scalar or isinstance(value, bool) or not isinstance(value, int):
        raise SentenceError(f"{what} must be a whole number, got {node.describe()}", node.line)
    if minimum is not None and value < minimum:
        raise SentenceError(f"{what} must be >= {minimum}, got {value}", node.line)
    return value


def scalar_number(node: YNode, what: str) -> float:
    """A number; an unquoted ``1e-3`` (a string to YAML 1.1, a number to YAML 1.2) counts too."""
    value = node.value
    if node.is_scalar and isinstance(value, str) and not node.quoted and _NUMBER_RE.match(value):
        return float(value)
    if not node.is_scalar or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SentenceError(f"{what} must be a number, got {node.describe()}", node.line)
    return float(value)


def label_of(node: YNode, what: str = "a class"):
    """A class from a YAML scalar: an int stays an int, anything else is the text as written."""
    if not node.is_scalar or node.value is None or node.raw.strip() == "":
        raise SentenceError(f"{what} must be a class name or index, got {node.describe()}", node.line)
    if isinstance(node.value, int) and not isinstance(node.value, bool) and not node.quoted:
        return node.value
    return node.raw.strip()


def plain(node: YNode) -> object:
    """The plain Python value of a node (scalars as YAML reads them, lists, dicts)."""
    if node.is_scalar:
        return node.value
    if node.is_seq:
        return [plain(item) for item in node.value]
    return {k: plain(v) for k, v in node.value.items()}
