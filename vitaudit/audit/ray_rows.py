"""What the Ray driver receives: per-image rows as numpy columns, and their merge.

:class:`Rows` is what :class:`~.ray_pass.MeasureBatches` returns for a batch (Arrow-friendly
columns, one row per image and expectation); :class:`Collected` is the driver's side of one
dataset's pass: exactly one row per (image, expectation), keyed by index, anything else counted
and left out, the values kept as columns (:mod:`vitaudit.image_values`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vitaudit.image_values import ImageValues, ValuesBuilder

from .dataset_pass import ShardValues

if TYPE_CHECKING:
    from vitaudit.datasets.base import Dataset, Sample
    from vitaudit.spec import Expectation

#: Per-image rows: ``exp`` is the expectation's position in the pass (-1: the image's own row,
#: with ``error`` the cause when it could not be read, and ``worker`` who measured it); ``""``
#: stands for no error, ``passed`` -1 for none.
COLUMNS = ("index", "exp", "value", "has_value", "passed", "error", "worker")


class Rows:
    """Per-image rows as numpy columns (what ``map_batches`` returns)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def add(self, index: int, exp: int, value: float | None, passed: bool | None, error: str | None,
            worker: str | None = None) -> None:
        c = self.cols
        c["index"].append(index)
        c["exp"].append(exp)
        c["value"].append(np.nan if value is None else float(value))
        c["has_value"].append(value is not None)
        c["passed"].append(-1 if passed is None else int(bool(passed)))
        c["error"].append(error)
        c["worker"].append(worker)

    def arrays(self) -> dict[str, np.ndarray]:
        c = self.cols
        # Strings with "" for none: a None among strings does not survive Arrow's conversion as None.
        err = np.asarray([e or "" for e in c["error"]], dtype=str)
        who = np.asarray([w or "" for w in c["worker"]], dtype=str)
        return {"index": np.asarray(c["index"], dtype=np.int64), "exp": np.asarray(c["exp"], dtype=np.int32),
                "value": np.asarray(c["value"], dtype=np.float64), "has_value": np.asarray(c["has_value"], dtype=bool),
                "passed": np.asarray(c["passed"], dtype=np.int8), "error": err, "worker": who}


def _counted(exp: "Expectation", sample: "Sample") -> bool:
    """Whether ``sample`` counts for ``exp`` (an expectation about a region counts the images that have it)."""
    return exp.region is None or exp.region.region.name in sample.regions


def _text(x: Any) -> str | None:
    """A string cell as it comes back ("" or a missing cell: none)."""
    if x is None or (isinstance(x, float) and x != x) or x == "":
        return None
    return str(x)


class Collected:
    """What the driver has received: exactly one row per (image, expectation), keyed by index."""

    def __init__(self, dataset: "Dataset", exps: Sequence["Expectation"]) -> None:
        n = len(dataset.samples)
        self.samples = dataset.samples
        self.exps = list(exps)
        self.seen = np.zeros(n, dtype=bool)
        self.seen_exp = np.zeros((len(self.exps), n), dtype=bool)
        self.values = [ValuesBuilder() for _ in self.exps]  # columns, per expectation
        self.unreadable: list[tuple[int, str, str]] = []
        self.workers: set[str] = set()
        self.done = 0
        self.duplicates = 0
        self.strays = 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Take the rows of one batch of results; a row for an (image, expectation) already taken,
        or for an image or expectation the pass does not have, is counted and left out."""
        n = len(self.samples)
        index = np.asarray(batch["index"], dtype=np.int64)
        exp = np.asarray(batch["exp"], dtype=np.int64)
        ok = (index >= 0) & (index < n) & (exp < len(self.exps))
        self.strays += int((~ok).sum())
        rows = np.flatnonzero(ok)
        marks = rows[exp[rows] < 0]
        marks = marks[self._first(self.seen, index[marks])]
        self.seen[index[marks]] = True
        self.done += len(marks)
        error, worker = batch["error"], batch["worker"]
        for j in marks:
            who, cause = _text(worker[j]), _text(error[j])
            if who is not None:
                self.workers.add(who)
            if cause is not None:
                self.unreadable.append((int(index[j]), self.samples[index[j]].name, cause))
        value, has, passed = batch["value"], batch["has_value"], batch["passed"]
        for k in np.unique(exp[rows][exp[rows] >= 0]):
            sel = rows[exp[rows] == k]
            sel = sel[self._first(self.seen_exp[k], index[sel])]
            self.seen_exp[k][index[sel]] = True
            has_k = np.asarray(has[sel], dtype=bool)
            self.values[k].add(index[sel], np.where(has_k, np.asarray(value[sel], dtype=np.float64), np.nan), has_k,
                               np.asarray(passed[sel], dtype=np.int8), error[sel])

    def _first(self, seen: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Which of ``idx`` are new: not seen before, and the first of their repeats in ``idx``."""
        fresh = ~seen[idx]
        _, first = np.unique(idx, return_index=True)
        once = np.zeros(len(idx), dtype=bool)
        once[first] = True
        keep = fresh & once
        self.duplicates += int(len(idx) - keep.sum())
        return keep

    def add_shard(self, samples: Sequence["Sample"], shard: ShardValues, wanted: set[int]) -> None:
        """Values the driver measured itself, for the images in ``wanted`` only."""
        rows = Rows()
        unreadable = {i: cause for i, _, cause in shard.unreadable}
        for s in samples:
            if s.index in wanted:
                rows.add(s.index, -1, None, None, unreadable.get(s.index), "driver")
        for k, exp in enumerate(self.exps):
            for v in shard.values.get(exp.id, []):
                if v.index in wanted:
                    rows.add(v.index, k, v.value, v.passed, v.error)
        self.add(rows.arrays())

    def fail(self, index: int, cause: str) -> None:
        rows = Rows()
        s = self.samples[index]
        rows.add(index, -1, None, None, None, None)
        for k, exp in enumerate(self.exps):
            if _counted(exp, s):
                rows.add(index, k, None, False, cause)
        self.add(rows.arrays())

    def image_values(self, k: int) -> ImageValues:
        """The values of the pass's ``k``-th expectation, as columns in dataset order (once: the
        builder hands its chunks over)."""
        return self.values[k].build(self.samples)

    def missing(self, lo: int, hi: int) -> list[int]:
        return (lo + np.flatnonzero(~self.seen[lo:hi])).tolist()
