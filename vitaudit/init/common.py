"""What both ways of ``vitaudit init`` share: the result, the models, and reading a drafted file back."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .source import InitError, InitOptions, model_key


@dataclass
class InitResult:
    """What ``init`` wrote."""

    path: Path
    expectations: int
    xfail: int
    findings: list[str] = field(default_factory=list)
    values: Path | None = None


def say_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def check_out(out: Path) -> None:
    if not (out.name.startswith("audit_") and out.name.endswith(".yaml")):
        raise InitError(f"--out {out}: pytest collects files named audit_*.yaml; name it e.g. "
                        f"{out.with_name('audit_' + out.stem + '.yaml')}")
    out.parent.mkdir(parents=True, exist_ok=True)


def load_models(opts: InitOptions) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """The models as :class:`~.plan.ModelInfo` and their declarations (``models:``)."""
    import vitaudit

    from .plan import ModelInfo

    taken: set[str] = set()
    infos, decls = [], {}
    for name in opts.models:
        try:
            model = vitaudit.load_model(name, pretrained=True if opts.pretrained else None)
        except (ValueError, OSError) as exc:
            raise InitError(f"--model {name}: {exc}") from None
        key = model_key(name, taken)
        infos.append(ModelInfo(key, name, model.family, tuple(model.labels)))
        decls[key] = {"name": name, **({"pretrained": True} if opts.pretrained else {})}
    return infos, decls


def parse_text(path: Path, text: str, declarations_only: bool = False):
    """Write ``text`` to ``path`` and read it with the normal loader; its first problem as :class:`InitError`.

    ``declarations_only``: the file has no expectations yet (only its models and datasets are checked)."""
    from vitaudit.spec import parse_audit_file

    path.write_text(text, encoding="utf-8")
    spec = parse_audit_file(path)
    errors = [e for e in spec.errors if not (declarations_only and e.message.startswith("'expect'"))]
    if errors:
        e = errors[0]
        raise InitError(f"{e.file}:{e.line}: {e.message}")
    return spec
