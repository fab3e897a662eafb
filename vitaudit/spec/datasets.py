"""``datasets:`` section -> :class:`~vitaudit.datasets.base.Dataset` objects, errors at file:line.

A dataset declaration names one source (``folder:``, ``coco:``, ``voc:`` or ``csv:``) and
options; the loaders in :mod:`vitaudit.datasets` read the source. Any problem breaks the whole
dataset (recorded in ``Declarations.bad_datasets`` so expectations naming it can say why).
Loading reads annotation files and lists folders but decodes no image, so a 10,000-image
dataset parses in a fraction of a second.
"""
from __future__ import annotations

import os

from vitaudit.datasets import assemble
from vitaudit.datasets.base import Dataset, DatasetError, Sample
from vitaudit.regions import Region
from vitaudit.storage import Store, StorageError, is_uri, parent

from .build import Declarations
from .context import Ctx, check_keys, scalar_int, scalar_str
from .dataset_hub import HUB_KEYS, check_hub_keys, hub_request, not_local
from .draft import NAME_RE
from .errors import SentenceError, did_you_mean, one_of
from .storage_decl import store_of
from .images import REGION_KEYS, RESERVED_IMAGE_KEYS, UNITS, _box, _check_points, _polygon
from .yamlload import YNode

SOURCES = ("folder", "coco", "voc", "csv", "parquet", "hf", "webdataset")
#: Sources read as tables (a row or a tar sample per image), with a column mapping (spec.dataset_columns).
TABLE_SOURCES = ("parquet", "hf", "webdataset")
DATASET_KEYS = SOURCES + ("images", "labels", "regions", "sample", "seed", "on_error", "storage_options", "cache", "retry_for",
                          "columns", "classes", "box_format") + HUB_KEYS
ON_ERROR = ("fail", "skip")
#: ``labels:`` values each source accepts (a CSV's classes come from its ``label`` column).
LABELS = {"folder": ("folders",), "coco": ("largest",), "voc": ("largest",), "csv": (), "parquet": (), "hf": (),
          "webdataset": ()}
_SHAPE = "{folder: <path>} (or coco:, voc:, csv:)"


def parse_datasets(ctx: Ctx, node: YNode | None, decls: Declarations, image_lines: dict[str, int]) -> None:
    """Fill ``decls.datasets``/``bad_datasets``/``dataset_order``; ``image_lines`` are the image
    keys (and their lines), which dataset keys may not reuse."""
    if node is None:
        return
    if not node.is_map:
        ctx.error(node.line, f"'datasets' must be a mapping of dataset keys to {_SHAPE}, got {node.describe()}")
        return
    for key, value in node.value.items():
        key_line = node.keys[key].line
        decls.dataset_order.append(key)
        before = len(ctx.errors)
        dataset = _dataset(ctx, key, key_line, value, image_lines)
        if dataset is not None and len(ctx.errors) == before:
            decls.datasets[key] = dataset
        else:
            first = ctx.errors[before] if len(ctx.errors) > before else None
            decls.bad_datasets[key] = f"line {first.line}: {first.message}" if first else f"line {key_line}"


def _dataset(ctx: Ctx, key: str, key_line: int, node: YNode, image_lines: dict[str, int]) -> Dataset | None:
    if not NAME_RE.match(key) or key in RESERVED_IMAGE_KEYS:
        why = "is reserved" if key in RESERVED_IMAGE_KEYS else "must be a name of letters, digits, '_' and '-'"
        ctx.error(key_line, f"dataset key '{key}' {why}")
        return None
    if key in image_lines:
        ctx.error(key_line, f"dataset key '{key}' is also an image key (line {image_lines[key]}); images and "
                            "datasets share one name space, so rename one")
        return None
    if not node.is_map:
        ctx.error(node.line, f"dataset '{key}' must be a mapping like {_SHAPE}, got {node.describe()}")
        return None
    check_keys(ctx, node, DATASET_KEYS, f"dataset '{key}'")
    sources = [k for k in SOURCES if k in node.value]
    if not sources:
        ctx.error(key_line, f"dataset '{key}' needs one of folder: (images below a folder), coco: (a COCO JSON), "
                            "voc: (a folder of Pascal VOC XML files), csv: (a CSV manifest), parquet: (Parquet "
                            "files), hf: (a datasets save_to_disk folder or a hub dataset id) or webdataset: (tar shards)")
        return None
    if len(sources) > 1:
        ctx.error(node.key_line(sources[1]), f"dataset '{key}' has both {sources[0]} and {sources[1]}; keep one")
        return None
    kind = sources[0]
    try:
        options = _options(ctx, key, kind, node)
        options["store"] = store_of(ctx, node)
        regions = _regions(ctx, node.value.get("regions"))
    except SentenceError as exc:
        ctx.error(exc.line or key_line, exc.message)
        return None
    try:
        samples, root = _load(ctx, kind, node, options)
        samples = assemble.add_regions(samples, root, regions, options["store"])
        size = len(samples)
        if options["sample"] is not None:
            samples = assemble.subset(samples, options["sample"], options["seed"])
        return assemble.make_dataset(key, kind, samples, size=size, on_error=options["on_error"],
                                     file=ctx.file, line=key_line)
    except DatasetError as exc:
        ctx.error(_field_line(node, exc.field, key_line), f"dataset '{key}': {exc}")
        return None


def _options(ctx: Ctx, key: str, kind: str, node: YNode) -> dict:
    """``labels``, ``sample``, ``seed``, ``on_error`` (defaults filled in); ``images`` checked."""
    values = node.value
    out: dict = {"labels": None, "sample": None, "seed": 0, "on_error": "fail"}
    if "images" in values and kind not in ("coco", "voc"):
        raise SentenceError(f"'images' applies to coco: and voc: datasets (the folder their file names are "
                            f"relative to), not to {kind}:", node.key_line("images"))
    if "labels" in values:
        word = scalar_str(values["labels"], "'labels'")
        allowed = LABELS[kind]
        if not allowed:
            where = "the CSV's 'label' column" if kind == "csv" else "its label column (columns: {label: ...})"
            raise SentenceError(f"a {kind}: dataset takes its classes from {where}; drop 'labels'",
                                values["labels"].line)
        if word not in allowed:
            raise SentenceError(f"'labels' of a {kind}: dataset must be {one_of(allowed)}, got '{word}'"
                                f"{did_you_mean(word, allowed)}", values["labels"].line)
        out["labels"] = word
    tabular = ("columns", "classes", "box_format")
    for k in tabular:
        if k in values and kind not in TABLE_SOURCES:
            raise SentenceError(f"'{k}' applies to parquet:, hf: and webdataset: datasets, not to {kind}:",
                                node.key_line(k))
    check_hub_keys(kind, node)
    if "sample" in values:
        out["sample"] = scalar_int(values["sample"], "'sample'", 1)
    if "seed" in values:
        out["seed"] = scalar_int(values["seed"], "'seed'", 0)
        if "sample" not in values:
            raise SentenceError("'seed' only picks the subset that 'sample: N' draws; add sample: or drop seed",
                                values["seed"].line)
    if "on_error" in values:
        word = scalar_str(values["on_error"], "'on_error'")
        if word not in ON_ERROR:
            raise SentenceError(f"'on_error' must be {one_of(ON_ERROR)}, got '{word}'{did_you_mean(word, ON_ERROR)}",
                                values["on_error"].line)
        out["on_error"] = word
    return out


def _load(ctx: Ctx, kind: str, node: YNode, options: dict) -> tuple[list[Sample], str]:
    """The loader's samples and the root folder their relative paths (and templates) start from."""
    store: Store = options["store"]
    if kind in TABLE_SOURCES:
        return _load_table(ctx, kind, node, store)
    path = existing(ctx, node, kind, store, folder=kind in ("folder", "voc"))
    images = existing(ctx, node, "images", store, folder=True) if "images" in node.value else None
    base = str(ctx.base_dir)
    labels = options["labels"]
    if kind == "folder":
        from vitaudit.datasets.folder import load_folder

        return load_folder(path, base_dir=base, labels=labels == "folders", store=store), path
    if kind == "coco":
        from vitaudit.datasets.coco import load_coco

        root = images or parent(path)
        return load_coco(path, images_dir=root, base_dir=base, labels=labels, store=store), root
    if kind == "voc":
        from vitaudit.datasets.voc import load_voc

        if images is None:
            raise DatasetError("a voc: dataset needs 'images': the folder its <filename> entries are relative to "
                               "(JPEGImages in the VOC layout)", "voc")
        return load_voc(path, images_dir=images, base_dir=base, labels=labels, store=store), images
    from vitaudit.datasets.csvlist import load_csv

    return load_csv(path, base_dir=base, store=store), parent(path)


def _load_table(ctx: Ctx, kind: str, node: YNode, store: Store) -> tuple[list[Sample], str]:
    from .dataset_columns import parse_columns

    try:
        columns = parse_columns(node, kind)
    except SentenceError as exc:
        raise DatasetError(exc.message, "columns") from None
    base = str(ctx.base_dir)
    try:
        spec = scalar_str(node.value[kind], f"'{kind}'")
    except SentenceError as exc:
        raise DatasetError(exc.message, kind) from None
    spec = spec if is_uri(spec) else ctx.resolve(spec)
    if is_uri(spec):
        try:
            from vitaudit.storage import check_backend

            check_backend(spec)
        except StorageError as exc:
            raise DatasetError(str(exc), kind) from None
    if kind == "parquet":
        from vitaudit.datasets.parquet import load_parquet

        return load_parquet(spec, columns, base_dir=base, store=store)
    if kind == "hf":
        hub = hub_request(ctx, node)
        if hub is not None:
            from vitaudit.datasets.hfhub import load_hub

            return load_hub(hub, columns, store=store, missing_hint=not_local(ctx, hub.repo_id))
        from vitaudit.datasets.hfdisk import load_hf

        return load_hf(existing(ctx, node, "hf", store, folder=True), columns, base_dir=base, store=store)
    from vitaudit.datasets.webdataset import load_webdataset

    return load_webdataset(spec, columns, base_dir=base, store=store)


WHAT = {"folder": "dataset folder", "coco": "COCO JSON file", "voc": "VOC annotation folder", "csv": "CSV file",
        "images": "images folder", "hf": "datasets save_to_disk folder"}


def existing(ctx: Ctx, node: YNode, key: str, store: Store, folder: bool, what: str | None = None) -> str:
    """The absolute path or URI that ``node[key]`` names, checked to be an existing folder or file
    (a URI: one metadata request; a missing backend is named with the extra to install)."""
    try:
        rel = scalar_str(node.value[key], f"'{key}'")
    except SentenceError as exc:
        raise DatasetError(exc.message, key) from None
    what = what or WHAT[key]
    if is_uri(rel):
        try:
            found = store.kind(rel)
        except StorageError as exc:
            raise DatasetError(str(exc), key) from None
        except OSError as exc:
            raise DatasetError(f"cannot reach {what} {rel}: {exc}", key) from None
        if found is None or (found == "directory") != folder:
            why = "not found" if found is None else ("is a file, not a folder" if folder else "is a folder, not a file")
            raise DatasetError(f"{what} {why}: {rel}", key)
        return rel
    path = ctx.resolve(rel)
    if folder and not os.path.isdir(path):
        why = "is a file, not a folder" if os.path.exists(path) else "not found"
        raise DatasetError(f"{what} {why}: {rel} (looked for {path})", key)
    if not folder and not os.path.isfile(path):
        why = "is a folder, not a file" if os.path.isdir(path) else "not found"
        raise DatasetError(f"{what} {why}: {rel} (looked for {path})", key)
    return path


def _regions(ctx: Ctx, node: YNode | None) -> dict[str, Region | assemble.MaskTemplate]:
    out: dict[str, Region | assemble.MaskTemplate] = {}
    if node is None:
        return out
    if not node.is_map:
        raise SentenceError(f"'regions' of a dataset must map region names to {{mask: <template>}} or "
                            f"{{box: [x0, y0, x1, y1]}}, got {node.describe()}", node.line)
    for name, value in node.value.items():
        out[name] = _region(ctx, name, node.keys[name].line, value)
    return out


def _region(ctx: Ctx, name: str, key_line: int, node: YNode) -> Region | assemble.MaskTemplate:
    if not NAME_RE.match(name) or name.lower() == "not":
        why = "is reserved" if name.lower() == "not" else "must be a name of letters, digits, '_' and '-'"
        raise SentenceError(f"region name '{name}' {why}", key_line)
    if not node.is_map:
        raise SentenceError(f"region '{name}' must be a mapping like {{mask: \"masks/{{stem}}.png\"}} or "
                            f"{{box: [x0, y0, x1, y1]}}, got {node.describe()}", node.line)
    for key, key_node in node.keys.items():
        if key not in REGION_KEYS:
            raise SentenceError(f"unknown key '{key}' in region '{name}'{did_you_mean(key, REGION_KEYS)}; "
                                f"keys: {', '.join(REGION_KEYS)}", key_node.line)
    shapes = [k for k in ("box", "polygon", "mask") if k in node.value]
    if not shapes:
        raise SentenceError(f"region '{name}' needs one of box, polygon or mask (a template such as "
                            "\"masks/{stem}.png\")", key_line)
    if len(shapes) > 1:
        raise SentenceError(f"region '{name}' has both {shapes[0]} and {shapes[1]}; keep one",
                            node.key_line(shapes[1]))
    kind = shapes[0]
    units = "px"
    if "units" in node.value:
        units = scalar_str(node.value["units"], "'units'")
        if units not in UNITS:
            raise SentenceError(f"'units' must be {one_of(UNITS)}, got '{units}'{did_you_mean(units, UNITS)}",
                                node.value["units"].line)
        if kind == "mask":
            raise SentenceError("'units' does not apply to a mask", node.value["units"].line)
    shape = node.value[kind]
    if kind == "mask":
        template = scalar_str(shape, f"mask template of region '{name}'")
        try:
            assemble.check_template(template, "")
        except DatasetError as exc:
            raise SentenceError(f"region '{name}': {exc}", shape.line) from None
        return assemble.MaskTemplate(name, template, str(ctx.base_dir), ctx.file, key_line)
    try:
        points = _box(shape) if kind == "box" else _polygon(shape)
        _check_points(kind, points, units, None, shape)
    except SentenceError as exc:
        raise SentenceError(f"region '{name}': {exc.message}", exc.line or key_line) from None
    return Region(name, kind, points, units, None, ctx.file, key_line)  # type: ignore[arg-type]


def _field_line(node: YNode, field: str | None, default: int) -> int:
    """The line of the declaration key a :class:`DatasetError` blames (``regions.<name>`` too)."""
    if not field:
        return default
    head, _, rest = field.partition(".")
    if head not in node.value:
        return default
    if rest:
        sub = node.value[head]
        return sub.key_line(rest) if sub.is_map and rest in sub.keys else sub.line
    return node.value[head].line
