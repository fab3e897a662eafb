"""``parse_audit_file``: read an audit YAML file into an :class:`AuditSpec`, collecting every error."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .aggregates import image_sentence_error, parse_dataset_sentence
from .build import Declarations, build
from .context import Ctx, check_keys, scalar_str
from .datasets import parse_datasets
from .decls import parse_label_groups, parse_models
from .draft import Draft
from .errors import SentenceError, did_you_mean
from .ids import assign_ids
from .images import parse_images
from .marks import MARK_KEYS, combine, read_marks
from .model import AuditSpec, Expectation, Mark
from .sentences import parse_sentence
from .structured import STRUCTURED_KEYS, parse_structured
from .yamlload import YNode, load_yaml

TOP_KEYS = ("models", "labels", "images", "datasets", "expect", "marks", "xfail", "skip")
ITEM_OPTION_KEYS = ("id",) + MARK_KEYS
_SHAPE = "a mapping with models:, images: and expect:"


def parse_audit_file(path: str | Path) -> AuditSpec:
    """Parse one audit file. Never raises for bad content: problems are in ``AuditSpec.errors``."""
    file = str(path)
    ctx = Ctx(file, Path(file).absolute().parent)
    source = _read(ctx, Path(file))
    if source is None:
        return AuditSpec(path=file, errors=tuple(ctx.errors))
    root, yaml_errors = load_yaml(source, file)
    ctx.errors.extend(yaml_errors)
    if root is None:
        if not yaml_errors:
            ctx.error(1, f"empty audit file: expected {_SHAPE}")
        return AuditSpec(path=file, errors=tuple(ctx.errors))
    if not root.is_map:
        ctx.error(root.line, f"an audit file is {_SHAPE}, got {root.describe()}")
        return AuditSpec(path=file, errors=tuple(ctx.errors))
    check_keys(ctx, root, TOP_KEYS, "the audit file")
    values = root.value
    decls = Declarations()
    decls.models, decls.bad_models = parse_models(ctx, values.get("models"))
    decls.label_groups = parse_label_groups(ctx, values.get("labels"))
    parse_images(ctx, values.get("images"), decls)
    images = values.get("images")
    image_lines = {k: n.line for k, n in images.keys.items()} if images is not None and images.is_map else {}
    parse_datasets(ctx, values.get("datasets"), decls, image_lines)
    file_marks: tuple[Mark, ...] = ()
    try:
        file_marks, _ = read_marks(root)
    except SentenceError as exc:
        ctx.error(exc.line or root.line, f"file-level {exc.message}")
    expectations: list[Expectation] = []
    expect = values.get("expect")
    if expect is None:
        ctx.error(root.line, "the audit file has no 'expect:' list, so nothing to check")
    elif not expect.is_seq:
        ctx.error(expect.line, f"'expect' must be a list of expectations (- <image>: <sentence>), "
                               f"got {expect.describe()}")
    elif not expect.value:
        ctx.error(root.key_line("expect"), "'expect' is empty: add expectations like - <image>: <sentence>")
    else:
        for item in expect.value:
            expectations.extend(_expectation(ctx, item, decls, file_marks))
    errors = sorted(ctx.errors, key=lambda e: e.line)
    return AuditSpec(path=file, models=decls.models, label_groups=decls.label_groups, images=decls.images,
                     datasets=decls.datasets, expectations=tuple(assign_ids(expectations)), errors=tuple(errors))


def _read(ctx: Ctx, path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        ctx.error(1, f"cannot read audit file: {exc.strerror or exc}")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        ctx.error(data[: exc.start].count(b"\n") + 1, "the audit file is not UTF-8 text")
        return None


def _expectation(ctx: Ctx, item: YNode, decls: Declarations, file_marks: tuple[Mark, ...]) -> list[Expectation]:
    """The expectations of one ``expect:`` item (several for ``"*"``); errors go to ``ctx``."""
    image_key = _image_key_of(item)
    text = _text_of(item, image_key)
    try:
        if not item.is_map:
            hint = "; add the image: - <image>: <sentence>" if item.is_scalar else ""
            raise SentenceError(f"an expectation is '- <image>: <sentence>' or a mapping with metric:, "
                                f"got {item.describe()}{hint}", item.line)
        if "metric" in item.value or "image" in item.value or "dataset" in item.value:
            image_key, draft = parse_structured(item)
        else:
            image_key, draft, text = _sentence_item(item, decls)
        own_marks, overridden = read_marks(item)
        marks = combine(file_marks, own_marks, overridden)
        user_id = _user_id(item)
    except SentenceError as exc:
        ctx.error(exc.line or item.line, exc.message, image=image_key, text=text)
        return []
    if image_key == "*":
        images = decls.image_order
        if not images:
            ctx.error(item.line, "'*' means every image, but the file declares no images", image="*", text=text)
    else:
        images = [image_key]
    out = []
    for image in images:
        try:
            exp = build(draft, image, decls)
        except SentenceError as exc:
            ctx.error(exc.line or item.line, exc.message, image=image, text=text)
            continue
        out.append(replace(exp, id=user_id, text=text, file=ctx.file, line=item.line, marks=marks))
    return out


def _sentence_item(item: YNode, decls: Declarations) -> tuple[str, Draft, str]:
    """``- <image>: <sentence>`` (plus option keys): image key, draft, one-line text."""
    keys = [k for k in item.value if k not in ITEM_OPTION_KEYS]
    if not keys:
        raise SentenceError("an expectation needs '<image>: <sentence>' besides its options", item.line)
    if len(keys) > 1:
        images = [k for k in keys if k in decls.image_order or k in decls.datasets or k in decls.bad_datasets
                  or k == "*"]
        others = [k for k in keys if k not in images]
        if any(k in STRUCTURED_KEYS for k in others):
            raise SentenceError("a structured expectation needs 'metric' and 'image'", item.line)
        if len(images) == 1:
            key = others[0]
            raise SentenceError(f"unknown key '{key}' in expectation{did_you_mean(key, ITEM_OPTION_KEYS)}; "
                                f"an item is '<image>: <sentence>' plus {', '.join(ITEM_OPTION_KEYS)}",
                                item.key_line(key))
        raise SentenceError(f"one '<image>: <sentence>' per item, found {', '.join(repr(k) for k in keys)}",
                            item.key_line(keys[1]))
    image = keys[0]
    node = item.value[image]
    if not node.is_scalar or not isinstance(node.value, str):
        raise SentenceError(f"expected a sentence after '{image}:', got {node.describe()}", node.line)
    sentence = " ".join(node.value.split())
    text = f"{image}: {sentence}"
    on_dataset = image not in decls.images and (image in decls.datasets or image in decls.bad_datasets)
    try:
        draft = parse_dataset_sentence(sentence) if on_dataset else parse_sentence(sentence)
    except SentenceError as exc:
        if not on_dataset:
            exc = image_sentence_error(sentence, image, exc)
        raise SentenceError(exc.message + _spaced_region_hint(sentence, image, decls), exc.line or node.line) from None
    draft.lines["image"] = item.key_line(image)
    return image, draft, text


def _spaced_region_hint(sentence: str, subject: str, decls) -> str:
    """``; region names have no spaces: write traffic_light for 'traffic light'`` when the sentence
    names a region of its image or dataset with spaces (COCO and VOC names become ``traffic_light``)."""
    if subject in decls.images:
        names = list(getattr(decls.images[subject], "regions", {}) or {})
    else:
        names = list(getattr(decls.datasets.get(subject), "region_names", ()) or ())
    lowered = f" {sentence.lower()} "
    for name in names:
        spaced = name.replace("_", " ")
        if spaced != name and f" {spaced.lower()} " in lowered:
            return f"; region names have no spaces: write {name} for '{spaced}'"
    return ""


def _text_of(item: YNode, image_key: str | None) -> str:
    """The item on one line: ``goat: <sentence>`` for the sentence form, else its source."""
    if item.is_map and image_key is not None and not {"image", "metric", "dataset"} & set(item.value):
        node = item.value[image_key]
        if node.is_scalar and isinstance(node.value, str):
            return f"{image_key}: {' '.join(node.value.split())}"
    return item.text if item.line == item.end_line else _render(item)


def _image_key_of(item: YNode) -> str | None:
    """The image an item is about, as far as can be told before parsing it (for error reports)."""
    if not item.is_map:
        return None
    if "image" in item.value or "metric" in item.value or "dataset" in item.value:
        node = item.value.get("image", item.value.get("dataset"))
        return node.raw if node is not None and node.is_scalar else None
    keys = [k for k in item.value if k not in ITEM_OPTION_KEYS]
    return keys[0] if keys else None


def _user_id(item: YNode) -> str:
    if "id" not in item.value:
        return ""
    value = scalar_str(item.value["id"], "'id'")
    if "::" in value or not value.strip():
        raise SentenceError(f"'id' cannot contain '::', got '{value}'", item.value["id"].line)
    return value.strip()


def _render(node: YNode) -> str:
    """A multi-line structured expectation on one line, as a flow mapping."""
    if node.is_scalar:
        return f'"{node.raw}"' if node.quoted or not node.raw else node.raw
    if node.is_seq:
        return "[" + ", ".join(_render(item) for item in node.value) + "]"
    return "{" + ", ".join(f"{k}: {_render(v)}" for k, v in node.value.items()) + "}"
