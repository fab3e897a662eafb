"""Class names: ImageNet's from timm's own class info (offline), or a user's list, and matching.

The seed notebook downloaded a label file on every call; here the names come from timm's
bundled ImageNet info, once. A label given by a user matches a class by its full name,
any of its comma-separated synonyms ("tabby" matches "tabby, tabby cat"), or its index.
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Sequence, Union

Label = Union[str, int]


class LabelError(ValueError):
    """A label that names no class of the model (one-line message with close matches)."""


@lru_cache(maxsize=8)
def imagenet_labels(subset: str = "imagenet-1k") -> tuple[str, ...]:
    """The class descriptions of an ImageNet subset as timm ships them ("tabby, tabby cat", ...)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo(subset)
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def read_label_file(path: str | Path) -> list[str]:
    """One label per line (a local file or a URI); blank lines are skipped."""
    from .storage import is_uri, read_bytes

    try:
        text = read_bytes(str(path)).decode("utf-8") if is_uri(str(path)) else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelError(f"cannot read label file {path}: {exc.strerror or exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


class LabelSet:
    """The classes of one model, with lookup by name, synonym or index."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._exact: dict[str, int] = {}
        self._synonym: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            self._exact.setdefault(name.strip().lower(), i)
            for syn in name.split(","):
                self._synonym.setdefault(syn.strip().lower(), []).append(i)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def index(self, label: Label) -> int:
        """The class index of ``label`` (full name, synonym, or index)."""
        if isinstance(label, bool):
            raise LabelError(f"a label must be a class name or an index, not {label!r}")
        if isinstance(label, int):
            if 0 <= label < len(self.names):
                return label
            raise LabelError(f"class index {label} is out of range: the model has {len(self.names)} classes (0..{len(self.names) - 1})")
        key = str(label).strip().lower()
        if key.isdigit():
            return self.index(int(key))
        if key in self._exact:
            return self._exact[key]
        hits = self._synonym.get(key, [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            names = "; ".join(f"{i}: {self.names[i]!r}" for i in hits[:4])
            raise LabelError(f"label {label!r} is ambiguous: it names {len(hits)} classes ({names}); use the full name or the index")
        raise LabelError(f"unknown label {label!r}{self._hint(key)}")

    def indices(self, labels: Sequence[Label]) -> list[int]:
        return [self.index(lab) for lab in labels]

    def matches(self, index: int, label: Label) -> bool:
        """Whether class ``index`` is what ``label`` names."""
        return self.index(label) == index

    def _hint(self, key: str) -> str:
        candidates = list(self._synonym)
        close = difflib.get_close_matches(key, candidates, n=6, cutoff=0.6)
        if not close:
            close = [c for c in candidates if key in c]
        indices = list(dict.fromkeys(self._synonym[c][0] for c in close))[:3]
        if not indices:
            return ""
        shown = [f"{self.names[i]!r} ({i})" for i in indices]
        return f"; close matches: {', '.join(shown)}"


def default_labels(num_classes: int, subset: str | None) -> list[str]:
    """ImageNet names for ImageNet heads, else ``class_0``, ``class_1``, ..."""
    if subset:
        names = imagenet_labels(subset)
        if len(names) == num_classes:
            return list(names)
    return [f"class_{i}" for i in range(num_classes)]
