"""What ``vitaudit init`` audits: the models and the dataset, as the command line gives them.

The dataset becomes the same declaration an audit file holds (``folder:``/``coco:``/``voc:``/``csv:``
with ``images:``, ``labels:``, ``regions:``, ``sample:``/``seed:``), with paths written relative to
the audit file being drafted, so the drafted file can be moved with its data. It is then read by
the normal loader (:func:`vitaudit.spec.parse_audit_file`), so ``init`` accepts exactly what the
format accepts and says so in the format's words.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitaudit.datasets.base import IMAGE_EXTENSIONS

#: Border regions added to every dataset to look for shortcuts: (name, box as fractions of the image).
#: Corners are an eighth of each side (a watermark's usual place); bands an eighth of the image deep.
BORDERS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("corner_top_left", (0.0, 0.0, 0.125, 0.125)),
    ("corner_top_right", (0.875, 0.0, 1.0, 0.125)),
    ("corner_bottom_left", (0.0, 0.875, 0.125, 1.0)),
    ("corner_bottom_right", (0.875, 0.875, 1.0, 1.0)),
    ("band_top", (0.0, 0.0, 1.0, 0.125)),
    ("band_bottom", (0.0, 0.875, 1.0, 1.0)),
    ("band_left", (0.0, 0.0, 0.125, 1.0)),
    ("band_right", (0.875, 0.0, 1.0, 1.0)),
)


class InitError(ValueError):
    """A command line ``vitaudit init`` cannot work from; one line."""


@dataclass
class InitOptions:
    """The command line of ``vitaudit init``, checked."""

    models: list[str]
    out: Path
    kind: str | None = None  # folder | coco | voc | csv; None: --images alone (no annotations)
    source: Path | None = None
    images: Path | None = None  # the image root (coco/voc), or the folder of --images alone
    labels: str | None = None  # folders | largest | None
    masks: str | None = None  # a mask template for region `mask_region`
    mask_region: str = "object"
    sample: int | None = None
    seed: int = 0
    pretrained: bool = False
    sanity_images: int = 8
    max_images: int = 50  # --images alone: at most this many image declarations
    extra: dict[str, Any] = field(default_factory=dict)


def model_key(name: str, taken: set[str]) -> str:
    """A model key from a model spec: ``fixture:vit-scenes`` -> ``vit_scenes``, unique among ``taken``."""
    base = name.split(":", 1)[-1].rsplit("/", 1)[-1]
    key = re.sub(r"[^0-9A-Za-z_]+", "_", base).strip("_").lower() or "model"
    if key[0].isdigit():
        key = f"m_{key}"
    out, i = key, 2
    while out in taken:
        out, i = f"{key}_{i}", i + 1
    taken.add(out)
    return out


def relative_to(path: Path, folder: Path) -> str:
    """``path`` written relative to ``folder`` with ``/`` (how the audit file will name it)."""
    return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()


def guess_kind(source: Path) -> str:
    """``--dataset PATH``: a ``.json`` is COCO, a ``.csv`` a manifest, a folder of ``.xml`` files Pascal
    VOC, any other folder a folder of images."""
    if source.suffix.lower() == ".json":
        return "coco"
    if source.suffix.lower() == ".csv":
        return "csv"
    if source.is_dir():
        if any(p.suffix.lower() == ".xml" for p in source.iterdir()):
            return "voc"
        return "folder"
    raise InitError(f"--dataset {source}: not a folder, a COCO .json or a .csv manifest")


def _has_class_folders(root: Path) -> bool:
    subdirs = [p for p in root.iterdir() if p.is_dir()]
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return bool(subdirs) and not loose


def dataset_decl(opts: InitOptions) -> dict[str, Any]:
    """The dataset declaration (a mapping to write under ``datasets:``), paths relative to the audit file."""
    if opts.kind is None or opts.source is None:
        raise InitError("no dataset given (--dataset, --folder, --coco, --voc or --csv)")
    here = opts.out.parent
    if not opts.source.exists():
        raise InitError(f"--{opts.kind} {opts.source}: no such file or folder")
    decl: dict[str, Any] = {opts.kind: relative_to(opts.source, here)}
    if opts.kind == "voc" and opts.images is None:
        raise InitError("a Pascal VOC dataset needs --images DIR (the folder its <filename>s are relative to)")
    if opts.images is not None and opts.kind in ("coco", "voc"):
        decl["images"] = relative_to(opts.images, here)
    labels = opts.labels
    if labels is None and opts.kind == "folder" and _has_class_folders(opts.source):
        labels = "folders"
    if labels not in (None, "none"):
        decl["labels"] = labels
    if opts.masks:
        template = Path(opts.masks)
        decl["regions"] = {opts.mask_region: {"mask": relative_to(template, here)}}
    regions = decl.setdefault("regions", {})
    for name, box in BORDERS:
        regions[name] = {"box": list(box), "units": "fraction"}
    if opts.sample is not None:
        decl["sample"] = int(opts.sample)
        decl["seed"] = int(opts.seed)
    return decl
