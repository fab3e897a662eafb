"""``folder:`` datasets: every image below a folder, optionally labelled by its sub-folder.

Order is the sorted relative path (``/`` separators), so a dataset's order, and any seeded
subset of it, is the same on every machine. With ``labels: folders`` an image's class is the
name of the sub-folder directly below ``folder`` that holds it (as torchvision's
``ImageFolder``); an image lying directly in ``folder`` then has no class, which is an error
rather than a silent drop.
"""
from __future__ import annotations

import os

from vitaudit.storage import Store, is_uri

from .base import IMAGE_EXTENSIONS, DatasetError, Sample
from .paths import Namer, first_few, scan_images, source_for


def load_folder(folder: str, *, base_dir: str, labels: bool = False, store: Store | None = None) -> list[Sample]:
    """The samples of every image below ``folder`` (a local folder, or a URI prefix listed once
    through ``store``, reading no object); raise :class:`DatasetError` (field ``folder`` or
    ``labels``) for a missing or empty folder, or unlabelled images with ``labels``."""
    store = store or Store()
    if is_uri(folder):
        try:
            rels = store.find(folder, IMAGE_EXTENSIONS)
        except FileNotFoundError:
            rels = []
        except OSError as exc:
            raise DatasetError(f"cannot list dataset folder {folder}: {exc}", "folder") from None
    else:
        rels = _local(folder)
    if not rels:
        exts = " ".join(e[1:] for e in IMAGE_EXTENSIONS)
        raise DatasetError(f"dataset folder {folder} holds no image ({exts})", "folder")
    namer = Namer(folder, base_dir)
    samples: list[Sample] = []
    loose: list[str] = []
    for i, rel in enumerate(rels):
        path, name = namer.below(rel)
        label = None
        if labels:
            head, sep, _ = rel.partition("/")
            if not sep:
                loose.append(rel)
            label = head
        samples.append(Sample(index=i, path=path, name=name, label=label, source=source_for(path, store)))
    if loose:
        raise DatasetError(f"labels: folders takes each image's class from its sub-folder, but {len(loose)} "
                           f"image(s) lie directly in {folder}: {first_few(loose)}", "labels")
    return samples


def _local(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "not found"
        raise DatasetError(f"dataset folder {what}: {folder}", "folder")
    try:
        rels = scan_images(folder)
    except OSError as exc:
        raise DatasetError(f"cannot list dataset folder {folder}: {exc.strerror or exc}", "folder") from None
    return rels
