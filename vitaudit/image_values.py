"""Per-image values of a dataset pass: one record per image (:class:`ImageValue`) where a shard
is measured, numpy columns (:class:`ImageValues`) once a pass has them all.

A shard (one batch of images) yields a few dozen :class:`ImageValue` records. A whole pass over
100,000 images with six expectations would be 600,000 of them on the driver (about 150 bytes
each, with their float, bool and int objects); :class:`ImageValues` keeps them as five columns
(18 bytes a value: index, value, has-value, check, error code) and looks the image's name and
label up in the dataset's samples by index instead of holding them. It still reads as a
sequence of :class:`ImageValue` (built one at a time when asked), so code that wants a record
gets one; :mod:`vitaudit.aggregate` reads the columns. :class:`ValuesBuilder` gathers the
columns shard by shard (in any order) and sorts them into dataset order once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Iterator

import numpy as np

from .per_image import Names, PerImage


@dataclass(frozen=True, slots=True)  # slots: a shard holds a record per image and expectation
class ImageValue:
    """One image's measurement for one expectation.

    ``value`` is the per-image number (``None`` when it could not be measured, see ``error``);
    ``passed`` the per-image check (``None`` for aggregate words, which have none).
    """

    index: int  # the image's position in the dataset: the merge order
    image: str  # path relative to the audit file
    value: float | None
    passed: bool | None
    label: str | None = None
    error: str | None = None


class _ByIndex(Sequence):
    """What records say of each image (name, label), by dataset index: the samples' stand-in
    for values that came as records rather than from a dataset's pass."""

    def __init__(self, records: Iterable[ImageValue]) -> None:
        self.by_index = {v.index: _Meta(v.image, v.label) for v in records}

    def __len__(self) -> int:
        return len(self.by_index)

    def __getitem__(self, i):  # type: ignore[override]
        return self.by_index[i]


@dataclass(frozen=True, slots=True)
class _Meta:
    name: str
    label: str | None


@dataclass(frozen=True, eq=False)
class ImageValues:
    """Per-image values of one expectation over a dataset, as columns in dataset order.

    ``samples``: the dataset's samples (``samples[i].name`` and ``.label`` for dataset index ``i``);
    ``value`` is meaningful where ``has_value``; ``passed`` is 1 / 0 / -1 (none); ``error`` a code
    into ``errors`` (-1: none)."""

    samples: Sequence[Any]
    index: np.ndarray  # int64
    value: np.ndarray  # float64
    has_value: np.ndarray  # bool
    passed: np.ndarray  # int8
    error: np.ndarray  # int32
    errors: tuple[str, ...] = ()

    @classmethod
    def empty(cls, samples: Sequence[Any] = ()) -> "ImageValues":
        return cls(samples, np.zeros(0, np.int64), np.zeros(0, np.float64), np.zeros(0, bool), np.zeros(0, np.int8),
                   np.zeros(0, np.int32))

    @classmethod
    def of(cls, values: Sequence[ImageValue] | "ImageValues") -> "ImageValues":
        """``values`` as columns, in dataset order (as they are when they already are). Records
        are of distinct images (one per image, as a pass makes them): each keeps its own name and label."""
        if isinstance(values, ImageValues):
            return values
        b = ValuesBuilder()
        b.add_records(values)
        return b.build(_ByIndex(values))

    # -- a sequence of records, built on demand
    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("image value index out of range")
        return self._record(i)

    def _record(self, i: int) -> ImageValue:
        k = int(self.index[i])
        s = self.samples[k]
        p, e = int(self.passed[i]), int(self.error[i])
        return ImageValue(k, s.name, float(self.value[i]) if self.has_value[i] else None,
                          None if p < 0 else p == 1, s.label, None if e < 0 else self.errors[e])

    def __iter__(self) -> Iterator[ImageValue]:
        for i in range(len(self)):
            yield self._record(i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ImageValues({len(self)} images, {int(self.has_value.sum())} with a value)"

    # -- columns
    def take(self, positions: np.ndarray) -> "ImageValues":
        """The values at ``positions`` (indices or a boolean mask), sharing the samples."""
        return ImageValues(self.samples, self.index[positions], self.value[positions], self.has_value[positions],
                           self.passed[positions], self.error[positions], self.errors)

    @cached_property
    def _labels(self) -> tuple[np.ndarray, list[str | None]]:
        """Each value's label as a code into a list of the distinct labels (computed once)."""
        codes: dict[str | None, int] = {}
        samples = self.samples
        out = np.fromiter((codes.setdefault(samples[i].label, len(codes)) for i in self.index.tolist()),
                          dtype=np.int32, count=len(self.index))
        return out, list(codes)

    def by_label(self) -> dict[str, "ImageValues"]:
        """The values split by label (sorted by label; unlabelled images left out)."""
        codes, names = self._labels
        return {name: self.take(codes == k) for k, name in sorted(
            ((k, n) for k, n in enumerate(names) if n is not None), key=lambda kn: kn[1])}

    def of_label(self, label: str) -> "ImageValues":
        codes, names = self._labels
        return self.take(codes == names.index(label)) if label in names else self.take(np.zeros(0, np.int64))

    @property
    def n_errors(self) -> int:
        return int((self.error >= 0).sum())

    def first(self, mask: np.ndarray) -> ImageValue | None:
        """The first record where ``mask`` holds (None if nowhere)."""
        hit = np.flatnonzero(mask)
        return self._record(int(hit[0])) if hit.size else None

    def per_image(self) -> PerImage:
        """The report's view: ``{"image", "value", "passed"}`` per image, names looked up by index."""
        return PerImage(Names(self.samples, self.index), self.value, self.has_value, self.passed)


Sequence.register(ImageValues)  # registered, not inherited: Sequence.index would shadow the column


@dataclass
class ValuesBuilder:
    """Columns gathered chunk by chunk (shards in any order), sorted into dataset order by :meth:`build`.

    Small chunks are joined into larger ones as they come (a numpy array per 32-image shard
    would cost more in array headers than in values)."""

    chunks: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    pending: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    n_pending: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    COMPACT = 1 << 15

    def add(self, index: np.ndarray, value: np.ndarray, has_value: np.ndarray, passed: np.ndarray,
            errors: Sequence[str | None] | np.ndarray) -> None:
        """One chunk of values; ``errors`` per value: the cause, or ``None`` / ``""`` / NaN (a missing
        Arrow cell) for none."""
        if not len(index):
            return
        if isinstance(errors, np.ndarray) and errors.dtype.kind == "U" and len(errors) > 64:
            uniq, inverse = np.unique(errors, return_inverse=True)
            lut = np.array([self._code(u) for u in uniq.tolist()], dtype=np.int32)
            code = lut[inverse.reshape(-1)]
        else:
            code = np.fromiter((self._code(e) for e in errors), dtype=np.int32, count=len(index))
        self.pending.append((np.asarray(index, np.int64), np.asarray(value, np.float64), np.asarray(has_value, bool),
                             np.asarray(passed, np.int8), code))
        self.n_pending += len(index)
        if self.n_pending >= self.COMPACT:
            self._compact()

    def _code(self, error: Any) -> int:
        if error is None or error == "" or (isinstance(error, float) and error != error):
            return -1
        return self.codes.setdefault(str(error), len(self.codes))

    def add_records(self, records: Iterable[ImageValue]) -> None:
        records = list(records)
        if not records:
            return
        self.add(np.array([v.index for v in records], np.int64),
                 np.array([np.nan if v.value is None else v.value for v in records], np.float64),
                 np.array([v.value is not None for v in records], bool),
                 np.array([-1 if v.passed is None else int(bool(v.passed)) for v in records], np.int8),
                 [v.error for v in records])

    def _compact(self) -> None:
        if self.pending:
            self.chunks.append(tuple(np.concatenate(cols) for cols in zip(*self.pending)))
            self.pending, self.n_pending = [], 0

    def build(self, samples: Sequence[Any]) -> ImageValues:
        """The columns in dataset order (a repeated index keeps the order it came in)."""
        self._compact()
        if not self.chunks:
            return ImageValues.empty(samples)
        cols = [np.concatenate(c) if len(self.chunks) > 1 else c[0] for c in zip(*self.chunks)]
        self.chunks = []
        order = np.argsort(cols[0], kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            cols = [c[order] for c in cols]
        return ImageValues(samples, *cols, tuple(self.codes))
