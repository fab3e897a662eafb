"""An in-session cache of explanations, bounded in bytes, so no image is run twice.

Keyed by (model, image content hash, preprocessing); each entry holds the prediction and the
finished low-resolution maps per (method with options, target), plus the ViT's CLS attention
rows in float16 — never full N x N attention, never maps at full image size — so a
10,000-image audit stays within ``max_bytes`` (least recently used entries go first).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Hashable

import numpy as np

from .preprocess import Geometry


@dataclass
class ImageEntry:
    probs: np.ndarray  # float32 (classes,)
    geometry: Geometry
    maps: dict[tuple[str, int | None], np.ndarray] = field(default_factory=dict)  # (method key, target) -> raw grid
    cls_attention: np.ndarray | None = None  # float16 (layers, heads, gh, gw)

    def nbytes(self) -> int:
        n = self.probs.nbytes + sum(m.nbytes for m in self.maps.values()) + 256
        if self.cls_attention is not None:
            n += self.cls_attention.nbytes
        return n


class ExplanationCache:
    """LRU over :class:`ImageEntry`, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, ImageEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> ImageEntry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: Hashable, entry: ImageEntry) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes()
            self._entries[key] = entry
            self._bytes += entry.nbytes()
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes()

    def touch(self, key: Hashable, entry: ImageEntry, before: int) -> None:
        """Account for maps added to an entry already stored (``before`` = its old size)."""
        with self._lock:
            if key in self._entries:
                self._bytes += entry.nbytes() - before

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


DEFAULT_CACHE = ExplanationCache()
