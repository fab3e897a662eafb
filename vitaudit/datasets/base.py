"""Plain data for annotated image sets: what a dataset declaration resolves to.

A :class:`Dataset` is an ordered list of :class:`Sample` (one image file each, with its class
and the regions annotated on it). Loaders (:mod:`.folder`, :mod:`.coco`, :mod:`.voc`,
:mod:`.csvlist`) build one from a declaration; the dataset pass reads it. Regions are
*sources* that rasterise on demand at the image's size, so a 10,000-image dataset holds
paths and annotations, never 10,000 masks.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

#: Image file extensions a folder dataset collects (lower case, with the dot).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

OnError = Literal["fail", "skip"]


class _NoRegions(Mapping):
    """The empty, read-only regions that samples without any share (one object, also unpickled)."""

    def __getitem__(self, key: str):
        raise KeyError(key)

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"

    def __reduce__(self) -> str:
        return "_NO_REGIONS"


_NO_REGIONS = _NoRegions()


class DatasetError(ValueError):
    """A declaration that cannot be turned into a dataset; one line.

    ``field`` names the declaration key at fault (``"folder"``, ``"regions.object"``,
    ``"csv"``...), so the spec layer can point at its line.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.field = field


@runtime_checkable
class RegionSource(Protocol):
    """One region of one image, rasterised on demand."""

    name: str

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W) mask at the image's ``size == (H, W)``; raises ``RegionError``."""
        ...


@runtime_checkable
class ImageSource(Protocol):
    """Where one sample's encoded image bytes are, when not a local file: an object in storage,
    a member of a tar shard, a cell of a table. Reading happens in the dataset pass's decode
    threads, so :meth:`read` must be thread-safe; sources pickle (a distributed pass ships them)."""

    def read(self) -> bytes:
        """The image file's bytes; ``FileNotFoundError`` when it is missing, ``OSError`` otherwise."""
        ...


@dataclass(frozen=True, slots=True)  # slots: a million-image dataset holds a million of these
class Sample:
    """One image of a dataset.

    ``path`` is absolute, or a URI (``s3://...``); ``name`` is the image's path relative to the
    audit file's folder (``/`` separators), or its URI, which is how reports, ids and failure
    messages name it. ``source`` says how to fetch the bytes when ``path`` is not a local file
    (see :func:`vitaudit.datasets.fetch.read_sample`).
    """

    index: int
    path: str
    name: str
    label: str | None = None
    regions: Mapping[str, RegionSource] = field(default_factory=dict, hash=False, compare=False)
    source: ImageSource | None = field(default=None, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # A large dataset holds one of these per image: its (few) labels are shared rather than
        # repeated, and so is an empty set of regions (read-only, so no sample can fill another's).
        if isinstance(self.label, str):
            object.__setattr__(self, "label", sys.intern(self.label))
        if not self.regions and type(self.regions) is dict:
            object.__setattr__(self, "regions", _NO_REGIONS)


@dataclass(frozen=True)
class Dataset:
    """A resolved dataset declaration: its samples in a stable order, and what they carry."""

    key: str
    kind: Literal["folder", "coco", "voc", "csv", "parquet", "hf", "webdataset"]
    samples: tuple[Sample, ...]
    region_names: tuple[str, ...] = ()  # every region name any sample has, sorted
    classes: tuple[str, ...] = ()  # every label any sample has, sorted; () when unlabelled
    on_error: OnError = "fail"
    size: int = 0  # images before `sample:` drew a subset
    file: str = ""
    line: int = 0

    @property
    def labelled(self) -> bool:
        return bool(self.classes)

    def count_with(self, region: str) -> int:
        """How many samples have ``region``."""
        return sum(1 for s in self.samples if region in s.regions)
