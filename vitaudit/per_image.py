"""A dataset expectation's per-image values as the report sees them: columns, read as dicts.

``ExpectationResult.per_image`` used to be a list of ``{"image", "value", "passed"}`` dicts, one
Python dict per image and expectation: a 100,000-image pass with six expectations held 600,000 of
them on the driver. :class:`PerImage` keeps the same values as three numpy columns and the image
names as a sequence looked up on demand (the dataset's samples, by index), and reads as a
read-only ``Sequence`` of those very dicts, built one at a time when asked; so whatever iterates
``per_image`` (``vitaudit compare``, the significance test, the recorded baselines) works unchanged,
while the writers (:mod:`vitaudit.report.values_file`, :mod:`vitaudit.report.jsondoc`) read the
columns without building a dict per image.

It is immutable, so copies share it (``copy.deepcopy`` and ``dataclasses.asdict`` return it
as is); :meth:`PerImage.to_plain` / :meth:`PerImage.from_plain` carry it where only plain
values travel (pytest-xdist's reports).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Iterator, overload

import numpy as np


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


class Names(Sequence):
    """``samples[index[i]].name`` for each ``i``: image names looked up, never copied."""

    __slots__ = ("samples", "index", "field")

    def __init__(self, samples: Sequence[Any], index: np.ndarray, field: str = "name") -> None:
        self.samples, self.index, self.field = samples, index, field

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Names(self.samples, self.index[i], self.field)
        return getattr(self.samples[int(self.index[i])], self.field)

    def __iter__(self) -> Iterator[Any]:
        samples, field = self.samples, self.field
        for i in self.index.tolist():
            yield getattr(samples[i], field)

    def tolist(self) -> list[Any]:
        return list(self)


class PerImage(Sequence):
    """Per-image values of one expectation, in dataset order: a read-only sequence of
    ``{"image": str, "value": float | None, "passed": bool | None}``.

    ``images``: the names (any sequence of str); ``value``: float64, meaningful where
    ``has_value``; ``passed``: int8, 1 / 0 / -1 for none."""

    __slots__ = ("images", "value", "has_value", "passed")

    def __init__(self, images: Sequence[str], value: np.ndarray, has_value: np.ndarray, passed: np.ndarray) -> None:
        n = len(images)
        if not (len(value) == len(has_value) == len(passed) == n):
            raise ValueError(f"per-image columns of different lengths: {n}, {len(value)}, {len(has_value)}, "
                             f"{len(passed)}")
        self.images = images
        self.value = _frozen(np.asarray(value, dtype=np.float64))
        self.has_value = _frozen(np.asarray(has_value, dtype=bool))
        self.passed = _frozen(np.asarray(passed, dtype=np.int8))

    # -- the Sequence of dicts
    def __len__(self) -> int:
        return len(self.value)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> "PerImage": ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return PerImage(self.images[i], self.value[i], self.has_value[i], self.passed[i])
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("per-image index out of range")
        p = int(self.passed[i])
        return {"image": self.images[i], "value": float(self.value[i]) if self.has_value[i] else None,
                "passed": None if p < 0 else p == 1}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for image, v, h, p in zip(self.images, self.value.tolist(), self.has_value.tolist(), self.passed.tolist()):
            yield {"image": image, "value": v if h else None, "passed": None if p < 0 else p == 1}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PerImage):
            return (len(self) == len(other) and list(self.images) == list(other.images)
                    and np.array_equal(self.has_value, other.has_value) and np.array_equal(self.passed, other.passed)
                    and np.array_equal(self.value[self.has_value], other.value[other.has_value]))
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PerImage({len(self)} images)"

    # -- immutable: copies share it
    def __copy__(self) -> "PerImage":
        return self

    def __deepcopy__(self, memo: dict) -> "PerImage":
        return self

    # -- column-wise readers
    def json_values(self) -> list[float | None]:
        """The values as JSON takes them: None where there is none or it is not finite."""
        ok = self.has_value & np.isfinite(self.value)
        return [v if k else None for v, k in zip(self.value.tolist(), ok.tolist())]

    def json_passed(self) -> list[bool | None]:
        return [None if p < 0 else p == 1 for p in self.passed.tolist()]

    def json_rows(self) -> list[dict[str, Any]]:
        """The rows ``audit.json`` writes (NaN and infinities as None)."""
        return [{"image": i, "value": v, "passed": p}
                for i, v, p in zip(self.images, self.json_values(), self.json_passed())]

    def to_plain(self) -> dict[str, list]:
        """Plain lists, column by column (what pytest-xdist can send)."""
        return {"__per_image__": 1, "image": list(self.images), "value": [
            v if h else None for v, h in zip(self.value.tolist(), self.has_value.tolist())],
            "passed": self.json_passed()}

    @classmethod
    def from_plain(cls, data: dict[str, list]) -> "PerImage":
        values = data["value"]
        has = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        value = np.fromiter((math.nan if v is None else float(v) for v in values), dtype=np.float64, count=len(values))
        passed = np.fromiter((-1 if p is None else int(bool(p)) for p in data["passed"]), dtype=np.int8,
                             count=len(data["passed"]))
        return cls(list(data["image"]), value, has, passed)

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]]) -> "PerImage":
        """From ``{"image", "value", "passed"}`` dicts (a value that is not a number counts as none)."""
        if isinstance(rows, PerImage):
            return rows
        values = [r.get("value") for r in rows]
        ok = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
        return cls([r.get("image") for r in rows], np.array([float(v) if k else math.nan for v, k in zip(values, ok)],
                                                            dtype=np.float64),
                   np.array(ok, dtype=bool),
                   np.array([-1 if not isinstance(r.get("passed"), bool) else int(r["passed"]) for r in rows],
                            dtype=np.int8))


def is_plain_per_image(x: Any) -> bool:
    """Whether ``x`` is what :meth:`PerImage.to_plain` made."""
    return isinstance(x, dict) and x.get("__per_image__") == 1


def plain(x: Any) -> Any:
    """``x`` with a :class:`PerImage` made plain lists of dicts (for ``json.dumps``'s ``default``)."""
    if isinstance(x, PerImage):
        return x.json_rows()
    raise TypeError(f"Object of type {type(x).__name__} is not JSON serializable")
