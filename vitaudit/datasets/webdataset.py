"""``webdataset:`` datasets: WebDataset tar shards (``val-{000000..000099}.tar``, braces expanded
by ``braceexpand``, the package the ``webdataset`` library uses), local or at a URI.

A sample is the run of members sharing a key (the member path up to the first dot of its
file name: ``0003.png``, ``0003.cls`` and ``0003.mask.png`` are sample ``0003``); its image is
the member with an image extension (``jpg``, ``png``, ``webp``...; or ``columns: {image: EXT}``);
its class comes from ``cls`` (a class name, or an index into ``classes:``), or the ``label``
field of ``json``; ``columns: {masks: {REGION: mask.png}}`` makes a member a mask region.

Declaring the dataset streams each shard once, start to end (one sequential read, as the format
intends), keeping each member's offset and size and the small label members' text; no image is
decoded or kept. The dataset pass then reads each image as a byte range of its shard, in the
decode threads. With ``cache:``, shards at a URI are kept locally, so both reads are local.
"""
from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass, field

from vitaudit.regions import Region
from vitaudit.storage import Store, is_uri

from .base import IMAGE_EXTENSIONS, DatasetError, Sample
from .paths import Namer
from .regions import FetchedMask
from .tables import Columns, label_of

_LABEL_EXTS = ("cls", "json", "txt")


@dataclass(frozen=True)
class TarMember:
    """The bytes ``[start, start + size)`` of a shard: one member's data."""

    shard: str
    start: int
    size: int
    store: Store = field(default_factory=Store, repr=False)

    def read(self) -> bytes:
        if is_uri(self.shard):
            return self.store.read(self.shard, self.start, self.start + self.size)
        with open(self.shard, "rb") as fh:
            fh.seek(self.start)
            return fh.read(self.size)


def shards(spec: str) -> list[str]:
    """The shard paths ``spec`` names, braces expanded, in order."""
    from braceexpand import braceexpand

    return list(braceexpand(spec))


def _split(name: str) -> tuple[str, str]:
    """``("dir/0003", "mask.png")`` for ``dir/0003.mask.png``: key and extension, as WebDataset splits."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (folder + "/" + stem if folder else stem), ext.lower()


def _members(shard: str, store: Store):
    """``(key, ext, offset, size, text-or-None)`` of each file member, streamed in order."""
    fh = store.open(shard) if is_uri(shard) else open(shard, "rb")
    with fh, tarfile.open(fileobj=fh, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = _split(member.name)
            text = None
            if ext in _LABEL_EXTS:
                text = tar.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
            yield key, ext, member.offset_data, member.size, text


def load_webdataset(spec: str, columns: Columns, *, base_dir: str, store: Store | None = None
                    ) -> tuple[list[Sample], str]:
    """The samples of the shards ``spec`` names; raise :class:`DatasetError` (field
    ``webdataset``) for a missing or unreadable shard, or a sample without an image."""
    store = store or Store()
    paths = shards(spec)
    root = paths[0].rsplit("/", 1)[0] if "/" in paths[0] else "."
    namer = Namer(root, base_dir)
    image_exts = (columns.image,) if columns.image != "image" else tuple(e[1:] for e in IMAGE_EXTENSIONS)
    samples: list[Sample] = []
    for shard in paths:
        shown = namer.name(namer.below(shard.rsplit("/", 1)[-1])[0]) if shard.startswith(root) else shard
        groups: dict[str, dict[str, tuple[int, int, str | None]]] = {}
        try:
            for key, ext, offset, size, text in _members(shard, store):
                groups.setdefault(key, {})[ext] = (offset, size, text)
        except FileNotFoundError:
            raise DatasetError(f"shard not found: {shard}", "webdataset") from None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"cannot read shard {shard}: {exc}", "webdataset") from None
        for key, parts in groups.items():
            where = f"{shown}:{key}"
            image = next((e for e in image_exts if e in parts), None)
            if image is None:
                raise DatasetError(f"{where} has no image member (extensions {', '.join(image_exts)}); it has "
                                   f"{', '.join(sorted(parts))}", "webdataset")
            offset, size, _ = parts[image]
            regions = {}
            for region, ext in columns.masks.items():
                if ext in parts:
                    m_off, m_size, _ = parts[ext]
                    regions[region] = FetchedMask(Region(region, "mask", (), "px", f"{where}.{ext}", shown, 0),
                                                  TarMember(shard, m_off, m_size, store))
            samples.append(Sample(index=len(samples), path=f"{shard}#{key}.{image}", name=key,
                                  label=_label(parts, columns, where), regions=regions,
                                  source=TarMember(shard, offset, size, store)))
    if not samples:
        raise DatasetError(f"the shards {spec} hold no sample", "webdataset")
    return samples, root


def _label(parts: dict, columns: Columns, where: str) -> str | None:
    ext = columns.label or next((e for e in ("cls", "json") if e in parts), None)
    if ext is None or ext not in parts:
        return None
    text = parts[ext][2] or ""
    if ext == "json":
        try:
            value = json.loads(text).get("label")
        except (ValueError, AttributeError):
            raise DatasetError(f"{where}.json is not a JSON object", "webdataset") from None
    else:
        value = text.strip()
        if value.lstrip("-").isdigit():
            value = int(value)
    return label_of(value, columns.classes, where)
