"""The registry of explanation methods, and parsing of ``"name(option=value, ...)"``."""
from __future__ import annotations

import ast
import difflib
import re
from typing import Any

from .attention import AttentionExplainer, RolloutExplainer
from .base import Explainer, ExplainerError, ForwardContext, Needs
from .cam import (
    CamExplainer,
    EigenCAMExplainer,
    GradCAMExplainer,
    GradCAMPlusPlusExplainer,
    HiResCAMExplainer,
    LayerCAMExplainer,
    ScoreCAMExplainer,
)

METHODS: dict[str, Explainer] = {}


def register(explainer: Explainer) -> Explainer:
    """Add a method to the registry under its ``name``."""
    METHODS[explainer.name] = explainer
    return explainer


for _cls in (AttentionExplainer, RolloutExplainer, GradCAMExplainer, GradCAMPlusPlusExplainer,
             HiResCAMExplainer, ScoreCAMExplainer, EigenCAMExplainer, LayerCAMExplainer):
    register(_cls())


def get_method(name: str) -> Explainer:
    try:
        return METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(METHODS), n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ExplainerError(f"unknown method {name!r}{hint}; methods: {', '.join(METHODS)}") from None


_CALL = re.compile(r"^\s*([A-Za-z_][\w+]*)\s*(?:\((.*)\))?\s*$")


def parse_method(text: str) -> tuple[str, dict[str, Any]]:
    """``"rollout(head_fusion=max, discard_ratio=0.9)"`` -> ``("rollout", {...})``."""
    m = _CALL.match(text)
    if not m:
        raise ExplainerError(f"cannot read method {text!r}; write name or name(option=value, ...)")
    name, args = m.group(1), m.group(2)
    options: dict[str, Any] = {}
    if args and args.strip():
        for part in args.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip().isidentifier():
                raise ExplainerError(f"cannot read option {part.strip()!r} of {text!r}; write option=value")
            try:
                options[key.strip()] = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                options[key.strip()] = value.strip()
    return name, options


def method_key(name: str, options: dict[str, Any]) -> str:
    """Canonical text of a method: its name and the options that differ from the defaults."""
    defaults = METHODS[name].defaults if name in METHODS else {}
    shown = {k: v for k, v in options.items() if k not in defaults or defaults[k] != v}
    if not shown:
        return name
    return f"{name}(" + ", ".join(f"{k}={shown[k]!r}" for k in sorted(shown)) + ")"


__all__ = [
    "METHODS", "Explainer", "ExplainerError", "ForwardContext", "Needs", "CamExplainer",
    "register", "get_method", "parse_method", "method_key",
]
