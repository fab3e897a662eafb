"""``models:`` and ``labels:`` sections -> :class:`ModelDecl` and label groups."""
from __future__ import annotations

import os

from .context import Ctx, check_keys, label_of, scalar_bool, scalar_int, scalar_str
from .draft import NAME_RE, option_mapping
from .errors import SentenceError, did_you_mean, one_of
from .model import CROPS, Label, ModelDecl
from .yamlload import YNode

MODEL_KEYS = ("name", "pretrained", "checkpoint", "num_classes", "labels", "target_layer", "crop", "seed",
              "model_kwargs")


def parse_models(ctx: Ctx, node: YNode | None) -> tuple[dict[str, ModelDecl], dict[str, str]]:
    """Valid models, and ``key -> "line N: problem"`` for the broken ones."""
    models: dict[str, ModelDecl] = {}
    bad: dict[str, str] = {}
    if node is None:
        return models, bad
    if not node.is_map:
        ctx.error(node.line, f"'models' must be a mapping of model keys to {{name: ...}}, got {node.describe()}")
        return models, bad
    for key, value in node.value.items():
        key_line = node.keys[key].line
        before = len(ctx.errors)
        decl = _model(ctx, key, key_line, value)
        if decl is not None and len(ctx.errors) == before:
            models[key] = decl
        else:
            first = ctx.errors[before] if len(ctx.errors) > before else None
            bad[key] = f"line {first.line}: {first.message}" if first else f"line {key_line}"
    return models, bad


def _model(ctx: Ctx, key: str, key_line: int, node: YNode) -> ModelDecl | None:
    if not NAME_RE.match(key):
        ctx.error(key_line, f"model key '{key}' must be a name of letters, digits, '_' and '-' (no dots)")
        return None
    if not node.is_map:
        ctx.error(node.line, f"model '{key}' must be a mapping like {{name: resnet50, pretrained: true}}, "
                             f"got {node.describe()}")
        return None
    check_keys(ctx, node, MODEL_KEYS, f"model '{key}'")
    fields: dict[str, object] = {}
    try:
        if "name" not in node.value:
            raise SentenceError(f"model '{key}' needs a 'name' (a timm name, torchvision:NAME, fixture:NAME...)",
                                key_line)
        fields["name"] = scalar_str(node.value["name"], "model 'name'")
    except SentenceError as exc:
        ctx.error(exc.line or key_line, exc.message)
    readers = {
        "pretrained": lambda n: scalar_bool(n, "'pretrained'"),
        "checkpoint": lambda n: _existing_file(ctx, n, "checkpoint"),
        "num_classes": lambda n: scalar_int(n, "'num_classes'", 1),
        "target_layer": lambda n: scalar_str(n, "'target_layer'"),
        "crop": lambda n: _crop(n),
        "seed": lambda n: scalar_int(n, "'seed'"),
        "model_kwargs": _model_kwargs,
    }
    for name, read in readers.items():
        if name in node.value:
            try:
                fields[name] = read(node.value[name])
            except SentenceError as exc:
                ctx.error(exc.line or node.value[name].line, exc.message)
    labels, labels_path = None, None
    if "labels" in node.value:
        try:
            labels, labels_path = _labels(ctx, node.value["labels"])
        except SentenceError as exc:
            ctx.error(exc.line or node.value["labels"].line, exc.message)
    if "name" not in fields:
        return None
    if fields.get("pretrained") is True and "checkpoint" in fields:
        ctx.error(node.key_line("checkpoint"), f"model '{key}' has both pretrained: true and a checkpoint; keep one")
    n = fields.get("num_classes")
    if labels is not None and n is not None and len(labels) != n:
        ctx.error(node.value["labels"].line, f"model '{key}' has num_classes: {n} but {len(labels)} labels")
    return ModelDecl(key=key, labels=labels, labels_path=labels_path, file=ctx.file, line=key_line,
                     **fields)  # type: ignore[arg-type]


def _existing_file(ctx: Ctx, node: YNode, what: str) -> str:
    from vitaudit.storage import Store, is_uri

    rel = scalar_str(node, f"'{what}'")
    if is_uri(rel):  # checked with one metadata request; credentials from the environment
        try:
            found = Store().kind(rel)
        except OSError as exc:
            raise SentenceError(f"{what} file {rel}: {exc}", node.line) from None
        if found != "file":
            raise SentenceError(f"{what} file {'not found' if found is None else 'is a folder, not a file'}: {rel}",
                                node.line)
        return rel
    path = ctx.resolve(rel)
    if not os.path.isfile(path):
        missing = "is a folder, not a file" if os.path.isdir(path) else "not found"
        raise SentenceError(f"{what} file {missing}: {rel} (looked for {path})", node.line)
    return path


def _labels(ctx: Ctx, node: YNode) -> tuple[tuple[str, ...], str | None]:
    """A list of class names, or a text file with one per line (blank lines ignored); and that file."""
    if node.is_scalar:
        path = _existing_file(ctx, node, "labels")
        try:
            from vitaudit.storage import read_bytes

            labels = tuple(line.strip() for line in read_bytes(path).decode("utf-8").splitlines() if line.strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise SentenceError(f"cannot read labels file {node.raw}: {exc}", node.line) from None
        if not labels:
            raise SentenceError(f"labels file {node.raw} has no labels", node.line)
        return labels, path
    if not node.is_seq or not node.value:
        raise SentenceError(f"'labels' must be a list of class names or a path to a text file, "
                            f"got {node.describe()}", node.line)
    return tuple(scalar_str(item, "a label") for item in node.value), None


def _model_kwargs(node: YNode) -> tuple[tuple[str, object], ...]:
    return option_mapping(node, "model_kwargs", "{img_size: 64}", "model_kwargs")


def _crop(node: YNode) -> str:
    value = scalar_str(node, "'crop'")
    if value not in CROPS:
        raise SentenceError(f"'crop' must be {one_of(CROPS)}, got '{value}'{did_you_mean(value, CROPS)}", node.line)
    return value


def parse_label_groups(ctx: Ctx, node: YNode | None) -> dict[str, tuple[Label, ...]]:
    """``labels:`` at the top level: group name -> classes (names or indices), as written."""
    groups: dict[str, tuple[Label, ...]] = {}
    if node is None:
        return groups
    if not node.is_map:
        ctx.error(node.line, f"'labels' must map group names to lists of classes, got {node.describe()}")
        return groups
    for name, value in node.value.items():
        if not value.is_seq or not value.value:
            ctx.error(value.line, f"label group '{name}' must be a non-empty list of classes, got {value.describe()}")
            continue
        try:
            groups[name] = tuple(label_of(item, f"a class of group '{name}'") for item in value.value)
        except SentenceError as exc:
            ctx.error(exc.line or value.line, exc.message)
            continue
        for item, label in zip(value.value, groups[name]):
            if isinstance(label, int) and label < 0:
                ctx.error(item.line, f"a class index cannot be negative, got {label}")
                del groups[name]
                break
    return groups
