"""Running work over items in batches that back off when the device runs out of memory.

A batch that raises out-of-memory (``torch.OutOfMemoryError``, which CUDA raises, or a
``RuntimeError`` saying "out of memory", as other backends do) is retried in halves, down to
one item; the items that still do not fit are reported with the cause and the batch size
tried, and the others go on. The size that worked is remembered per key (a model on a
device), so the next batches start there instead of failing again.

Used by :func:`vitaudit.engine.prefetch` and by anything else that runs models over many
images; the per-batch work is a callable, so the backoff is tested on the CPU by injecting
the error.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error (CUDA's ``OutOfMemoryError``, or MPS/CPU's wording)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover - torch without OutOfMemoryError
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class BatchSizes:
    """The largest batch size known to work, per key; thread-safe. Shrinks, never grows back."""

    def __init__(self) -> None:
        self._sizes: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def cap(self, key: Hashable, wanted: int) -> int:
        with self._lock:
            return max(1, min(wanted, self._sizes.get(key, wanted)))

    def shrink(self, key: Hashable, size: int) -> None:
        with self._lock:
            self._sizes[key] = max(1, min(size, self._sizes.get(key, size)))

    def get(self, key: Hashable) -> int | None:
        with self._lock:
            return self._sizes.get(key)

    def clear(self) -> None:
        with self._lock:
            self._sizes.clear()


#: Remembered sizes for the whole process (keys: a model and its device).
BATCH_SIZES = BatchSizes()


@dataclass
class ItemFailure:
    """An item that did not fit even alone: its index in the input, the error, the sizes tried."""

    index: int
    error: BaseException
    tried: tuple[int, ...]

    @property
    def message(self) -> str:
        cause = " ".join(str(self.error).split()) or type(self.error).__name__
        sizes = ", ".join(str(s) for s in self.tried)
        return (f"out of memory even for a batch of {self.tried[-1]} (batch sizes tried: {sizes}): "
                f"{type(self.error).__name__}: {cause[:300]}")


@dataclass
class BatchRun(Generic[R]):
    """Per item, its result (None for a failed item); the failures; the batch size that worked last."""

    results: list[R | None]
    failures: list[ItemFailure] = field(default_factory=list)
    batch_size: int = 1


def _free_device_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - freeing is best effort
        pass


def run_in_batches(
    items: Sequence[T],
    work: Callable[[list[T]], Sequence[R]],
    batch_size: int,
    *,
    key: Hashable | None = None,
    sizes: BatchSizes | None = None,
    is_oom: Callable[[BaseException], bool] = is_out_of_memory,
) -> BatchRun[R]:
    """Run ``work`` over ``items`` in batches of at most ``batch_size`` (one result per item).

    On out-of-memory the batch is split in halves and each half retried, down to one item;
    an item that fails alone becomes an :class:`ItemFailure`. With ``key``, the size that
    worked is remembered in ``sizes`` (default: the process's :data:`BATCH_SIZES`) and caps
    the next calls. Other errors propagate.
    """
    sizes = BATCH_SIZES if sizes is None else sizes
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    size = sizes.cap(key, batch_size) if key is not None else batch_size
    results: list[R | None] = [None] * len(items)
    failures: list[ItemFailure] = []
    tried: dict[int, list[int]] = {}  # per item, the sizes of the batches it ran out of memory in
    pending: list[list[int]] = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
    while pending:
        chunk = pending.pop(0)
        if len(chunk) > size:  # a chunk cut before the size shrank
            pending[:0] = [chunk[i : i + size] for i in range(0, len(chunk), size)]
            continue
        try:
            out = work([items[i] for i in chunk])
        except BaseException as exc:
            if not is_oom(exc):
                raise
            error = exc.with_traceback(None)  # frees the failed batch's frames (and their tensors)
            del exc
            _free_device_memory()
            for i in chunk:
                tried.setdefault(i, []).append(len(chunk))
            if len(chunk) == 1:
                failures.append(ItemFailure(chunk[0], error, tuple(tried[chunk[0]])))
                continue
            size = max(1, len(chunk) // 2)
            if key is not None:
                sizes.shrink(key, size)
            pending[:0] = [chunk[:size], chunk[size:]]
            continue
        if len(out) != len(chunk):
            raise RuntimeError(f"batch work returned {len(out)} results for {len(chunk)} items")
        for i, r in zip(chunk, out):
            results[i] = r
    return BatchRun(results, failures, size)
