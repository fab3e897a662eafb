"""Load YAML into a tree of :class:`YNode` that remembers the line of every key, item and scalar.

PyYAML's ``compose`` gives nodes with marks; we convert them once into plain ``YNode`` objects
(mapping keys as written, scalar values as the safe loader would construct them) so the rest of
the parser never deals with PyYAML, and every error can point at the offending line.

Parsing runs under a :class:`YamlBudget` (file size, nesting depth, alias uses, and the node
count once aliases are expanded), counted while PyYAML composes the file: a "billion laughs"
of nested aliases is 2 KB on disk but a billion nodes once expanded, and it fails at the alias
that crosses the budget instead of growing the process until the kernel kills it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from .errors import SpecError

_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class YamlBudget:
    """Limits no real audit file reaches (the shipped ones are under 15 KB and 3,000 nodes).

    At the limits parsing takes about 8 s and 250 MB; past them it stops where a limit is crossed.
    """

    max_bytes: int = 4 * 2**20
    max_depth: int = 64
    max_aliases: int = 10_000
    max_nodes: int = 200_000  # after expanding aliases

    def describe(self) -> str:
        return (f"at most {self.max_bytes // 2**20} MiB, {self.max_depth} levels of nesting, "
                f"{self.max_aliases:,} alias uses and {self.max_nodes:,} nodes with aliases expanded")


DEFAULT_BUDGET = YamlBudget()


class _OverBudget(yaml.MarkedYAMLError):
    """Raised while composing when the file would pass a :class:`YamlBudget` limit."""


class _BudgetLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting what composing the document costs with aliases expanded.

    ``expanded`` counts nodes as they would be after expanding every alias: a node adds 1, an
    alias adds the expanded size of the node it names (known, since anchors precede aliases).
    """

    def __init__(self, source: str, budget: YamlBudget) -> None:
        super().__init__(source)
        self.budget = budget
        self.expanded = 0
        self.aliases = 0
        self.depth = 0
        self.sizes: dict[int, int] = {}

    def _over(self, mark: Any, what: str) -> _OverBudget:
        return _OverBudget(problem=f"{what}; audit files are limited to {self.budget.describe()}",
                           problem_mark=mark)

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        budget = self.budget
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            self.aliases += 1
            if self.aliases > budget.max_aliases:
                raise self._over(event.start_mark, f"more than {budget.max_aliases:,} alias uses")
            self.expanded += self.sizes.get(id(node), 1)  # unknown: an alias inside its own anchor
            if self.expanded > budget.max_nodes:
                raise self._over(event.start_mark, f"the alias *{event.anchor} expands the file past "
                                                   f"{budget.max_nodes:,} nodes")
            return node
        mark = self.peek_event().start_mark
        self.depth += 1
        if self.depth > budget.max_depth:
            raise self._over(mark, f"nesting deeper than {budget.max_depth} levels")
        before = self.expanded
        self.expanded += 1
        if self.expanded > budget.max_nodes:
            raise self._over(mark, f"more than {budget.max_nodes:,} nodes")
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        self.sizes[id(node)] = self.expanded - before
        return node


def _compose(source: str, budget: YamlBudget) -> yaml.Node | None:
    loader = _BudgetLoader(source, budget)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


@dataclass(eq=False)
class YNode:
    """A YAML node with its 1-based ``line``.

    - ``kind == "scalar"``: ``value`` is the constructed Python value (str, int, float, bool,
      None, date...), ``raw`` the scalar as written (without quotes), ``quoted`` whether it was
      quoted.
    - ``kind == "seq"``: ``value`` is a ``list[YNode]``.
    - ``kind == "map"``: ``value`` is a ``dict[str, YNode]`` keyed by the keys as written;
      ``keys`` holds the key nodes (for their lines).
    ``text`` is the node's source on one line (whitespace collapsed); ``end_line`` its last line.
    """

    kind: Literal["scalar", "seq", "map"]
    line: int
    value: Any
    end_line: int = 0
    raw: str = ""
    quoted: bool = False
    text: str = ""
    keys: dict[str, "YNode"] = field(default_factory=dict)

    @property
    def is_map(self) -> bool:
        return self.kind == "map"

    @property
    def is_seq(self) -> bool:
        return self.kind == "seq"

    @property
    def is_scalar(self) -> bool:
        return self.kind == "scalar"

    def key_line(self, key: str) -> int:
        """Line of ``key`` in this mapping (the mapping's own line if absent)."""
        node = self.keys.get(key)
        return node.line if node is not None else self.line

    def describe(self) -> str:
        """A short noun for messages: ``a mapping``, ``a list``, ``the string 'x'``, ..."""
        if self.kind == "map":
            return "a mapping" if self.value else "an empty mapping"
        if self.kind == "seq":
            return "a list" if self.value else "an empty list"
        v = self.value
        if v is None:
            return "nothing (null)"
        if isinstance(v, bool):
            return f"the boolean {self.raw}"
        if isinstance(v, (int, float)):
            return f"the number {self.raw}"
        return f"'{self.raw}'"


def load_yaml(source: str, file: str, budget: YamlBudget = DEFAULT_BUDGET) -> tuple[YNode | None, list[SpecError]]:
    """Parse ``source``; return the root node (``None`` for an empty document) and errors.

    Invalid YAML, or YAML past ``budget``, gives ``(None, [one error at the line where it
    happens])``. Duplicate keys and unsupported tags are reported but do not stop loading.
    """
    size = len(source.encode("utf-8"))
    if size > budget.max_bytes:
        line = source[: budget.max_bytes].count("\n") + 1
        return None, [SpecError(file, line, f"audit file too large: {size / 2**20:.1f} MiB; audit files are "
                                            f"limited to {budget.describe()}")]
    try:
        root = _compose(source, budget)
    except _OverBudget as exc:
        return None, [SpecError(file, exc.problem_mark.line + 1, f"YAML over budget: {exc.problem}")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        line = max(1, min(line, source.count("\n") + (0 if source.endswith("\n") else 1)))
        problem = exc.problem or exc.context or "cannot be parsed"
        context = ""
        if exc.context and exc.problem:
            context = f" ({exc.context}"
            if exc.context_mark is not None and exc.context_mark.line + 1 < line:
                context += f" started at line {exc.context_mark.line + 1}"
            context += ")"
        return None, [SpecError(file, line, f"invalid YAML: {problem}{context}{_hint(exc)}")]
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error we know is marked
        return None, [SpecError(file, 1, f"invalid YAML: {exc}")]
    if root is None:
        return None, []
    errors: list[SpecError] = []
    converter = _Converter(source, file, errors)
    return converter.convert(root), errors


class _Converter:
    def __init__(self, source: str, file: str, errors: list[SpecError]) -> None:
        self.source = source
        self.file = file
        self.errors = errors
        self.constructor = yaml.SafeLoader("")
        self.active: set[int] = set()
        self.texts: dict[int, str] = {}

    def text_of(self, node: yaml.Node) -> str:
        """The node's source on one line; computed once per node, so aliases share the string."""
        text = self.texts.get(id(node))
        if text is None:
            text = _WS.sub(" ", self.source[node.start_mark.index : node.end_mark.index]).strip()
            self.texts[id(node)] = text
        return text

    def convert(self, node: yaml.Node) -> YNode:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                problem = getattr(exc, "problem", None) or str(exc)
                self.errors.append(SpecError(self.file, line, f"invalid YAML value: {problem}"))
                value = node.value
            return YNode("scalar", line, value, _end_line(node, self.source), raw=str(node.value),
                         quoted=node.style in ("'", '"'), text=self.text_of(node))
        if id(node) in self.active:
            self.errors.append(SpecError(self.file, line, "recursive YAML alias"))
            return YNode("scalar", line, None, line, raw="", text="")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = [self.convert(item) for item in node.value]
                return YNode("seq", line, items, _end_line(node, self.source), text=self.text_of(node))
            return self.convert_map(node, line)
        finally:
            self.active.discard(id(node))

    def convert_map(self, node: yaml.MappingNode, line: int) -> YNode:
        explicit = [(k, v) for k, v in node.value if not _is_merge_key(k)]
        try:
            self.constructor.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        except yaml.YAMLError as exc:
            self.errors.append(SpecError(self.file, line, f"invalid YAML merge key: {exc}"))
        explicit_ids = {id(k) for k, _ in explicit}
        merged = [(k, v) for k, v in node.value if id(k) not in explicit_ids]
        values: dict[str, YNode] = {}
        keys: dict[str, YNode] = {}
        for pairs, from_merge in ((explicit, False), (merged, True)):
            for key_node, value_node in pairs:
                key_line = key_node.start_mark.line + 1
                if not isinstance(key_node, yaml.ScalarNode):
                    if not from_merge:
                        self.errors.append(SpecError(
                            self.file, key_line, "a key must be a plain name, not a list or mapping"))
                    continue
                key = str(key_node.value)
                if key in values:
                    if not from_merge:
                        self.errors.append(SpecError(
                            self.file, key_line,
                            f"duplicate key '{key}' (first at line {keys[key].line}); the first one is kept"))
                    continue
                keys[key] = YNode("scalar", key_line, key, key_line, raw=key, text=key)
                values[key] = self.convert(value_node)
        return YNode("map", line, values, _end_line(node, self.source), text=self.text_of(node), keys=keys)


def _is_merge_key(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:merge"


def _end_line(node: yaml.Node, source: str) -> int:
    """Last line holding the node (a block node's end mark can sit on the next item's line)."""
    body = source[node.start_mark.index : node.end_mark.index].rstrip(" \t\r\n-")
    return node.start_mark.line + 1 + body.count("\n")


def _hint(exc: "yaml.MarkedYAMLError") -> str:
    """What the two YAML traps of audit files need (docs/audit-format.md warns about both): an
    unquoted ``>`` (or ``<``, ``|``) and a bare ``*``, which YAML reads as syntax."""
    problem = exc.problem or ""
    context = exc.context or ""
    if "while scanning an alias" in context:
        return '; a bare * is a YAML alias: quote it, "*": <sentence> (every image)'
    for ch in "><|":
        if f"character '{ch}'" in problem:
            return f"; quote the operator: op: \"{ch}\" (YAML reads a bare {ch} as syntax)"
    return ""
