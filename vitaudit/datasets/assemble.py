"""From a loader's samples to a :class:`Dataset`: declared regions, a seeded subset, the totals.

Declared regions are the same for every loader: a fixed box/polygon (one shared source for
all samples) or a per-image mask *template* such as ``masks/{stem}.png``, whose placeholders
are filled from each image's path below the dataset's root:

- ``{name}``: the file name (``0003.png``); ``{stem}``: without its extension (``0003``);
- ``{relpath}``: the path below the root without the extension (``striped/0003``);
- ``{label}``: the image's class.

A template is resolved relative to the audit file, unless it is a URI
(``s3://bucket/masks/{stem}.png``, read with the dataset's storage options). Every image must
have its mask file: a template that misses some is a declaration error naming how many and
the first few (checked with one listing per mask folder, reading no mask).
"""
from __future__ import annotations

import os
import string
from dataclasses import dataclass, replace
from typing import Mapping

import numpy as np

from vitaudit.regions import Region
from vitaudit.storage import Store, is_uri, join

from .base import Dataset, DatasetError, OnError, Sample
from .paths import FileIndex, first_few
from .regions import Declared, uri_mask

PLACEHOLDERS: tuple[str, ...] = ("stem", "name", "relpath", "label")


@dataclass(frozen=True)
class MaskTemplate:
    """A per-image mask file: ``template`` with :data:`PLACEHOLDERS`, relative to ``base_dir``."""

    name: str
    template: str
    base_dir: str
    file: str = ""
    line: int = 0


def check_template(template: str, field: str) -> None:
    """Raise :class:`DatasetError` unless ``template`` only uses named :data:`PLACEHOLDERS`."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise DatasetError(f"mask template '{template}' is malformed ({exc}); write placeholders as "
                           f"{{stem}}, and braces as {{{{ }}}}", field) from None
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conv:
            from vitaudit.spec.errors import did_you_mean  # messages only; no import cycle at load

            raise DatasetError(f"mask template '{template}' has unknown placeholder {{{name}}}"
                               f"{did_you_mean(name, PLACEHOLDERS)}; placeholders: "
                               + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS), field)
    if not any(name for _, name, _, _ in parts):
        raise DatasetError(f"mask template '{template}' has no placeholder, so every image would share one "
                           "mask; use {stem}, {name}, {relpath} or {label}", field)


def add_regions(samples: list[Sample], root: str, regions: Mapping[str, Region | MaskTemplate],
                store: Store | None = None) -> list[Sample]:
    """``samples`` with the declared ``regions`` added; raise :class:`DatasetError` (field
    ``regions.<name>``) for a name an annotation already uses or a template missing files.
    ``root`` is the folder (or URI prefix) sample paths are relative to."""
    if not regions:
        return samples
    store = store or Store()
    root = root.rstrip("/") if is_uri(root) else os.path.normpath(os.path.abspath(root))
    extra: list[dict[str, object]] = [{} for _ in samples]
    for name, decl in regions.items():
        field = f"regions.{name}"
        clash = next((s for s in samples if name in s.regions), None)
        if clash is not None:
            raise DatasetError(f"region '{name}' is declared here and is also annotated on {clash.name}; "
                               "rename one", field)
        if isinstance(decl, Region):
            shared = Declared(decl)
            for d in extra:
                d[name] = shared
            continue
        check_template(decl.template, field)
        index = FileIndex(store)
        missing: list[str] = []
        for s, d in zip(samples, extra):
            path = _fill(decl, s, root, field)
            if not index.exists(path):
                shown = path if is_uri(path) else os.path.relpath(path, decl.base_dir)
                missing.append(f"{shown} (for {s.name})")
            region = Region(name, "mask", (), "px", path, decl.file, decl.line)
            d[name] = uri_mask(region, store) if is_uri(path) else Declared(region)
        if missing:
            raise DatasetError(f"mask template '{decl.template}' matches no file for {len(missing)} of "
                               f"{len(samples)} images: {first_few(missing)}", field)
    return [replace(s, regions={**s.regions, **d}) for s, d in zip(samples, extra)]


def _fill(decl: MaskTemplate, sample: Sample, root: str, field: str) -> str:
    sep = "/" if is_uri(root) else os.sep
    if sample.path.startswith(root + sep):
        rel = sample.path[len(root) + 1:]
    elif is_uri(root) or is_uri(sample.path):
        rel = sample.path.rstrip("/").rsplit("/", 1)[-1]  # an object outside the root: its name
    else:
        rel = os.path.relpath(sample.path, root)
    rel = rel.replace(os.sep, "/")
    name = rel.rsplit("/", 1)[-1]
    values = {"name": name, "stem": os.path.splitext(name)[0], "relpath": os.path.splitext(rel)[0],
              "label": sample.label}
    if sample.label is None and "{label}" in decl.template:
        raise DatasetError(f"mask template '{decl.template}' uses {{label}} but {sample.name} has no class", field)
    filled = decl.template.format(**values)
    return filled if is_uri(filled) else join(decl.base_dir, filled)


def subset(samples: list[Sample], n: int, seed: int = 0) -> list[Sample]:
    """``n`` samples drawn at random with ``seed`` (numpy's default generator), kept in order."""
    if n > len(samples):
        raise DatasetError(f"sample: {n} is more than the {len(samples)} images of the dataset", "sample")
    picked = np.sort(np.random.default_rng(seed).choice(len(samples), size=n, replace=False))
    return [samples[int(i)] for i in picked]


def make_dataset(key: str, kind: str, samples: list[Sample], *, size: int | None = None,
                 on_error: OnError = "fail", file: str = "", line: int = 0) -> Dataset:
    """The :class:`Dataset` of ``samples`` (renumbered 0..n-1) with its region names and classes."""
    if not samples:
        raise DatasetError("the dataset has no images", None)
    numbered = tuple(s if s.index == i else replace(s, index=i) for i, s in enumerate(samples))
    names = sorted({r for s in numbered for r in s.regions})
    classes = sorted({s.label for s in numbered if s.label is not None})
    return Dataset(key=key, kind=kind, samples=numbered, region_names=tuple(names),  # type: ignore[arg-type]
                   classes=tuple(classes), on_error=on_error, size=len(samples) if size is None else size,
                   file=file, line=line)
