"""What table-like sources share (``parquet:``, ``hf:``, ``webdataset:``): the column mapping,
reading one cell as a label, boxes or objects, and a small cache of decoded row groups.

A table holds one row per image. ``columns:`` says which column holds what:

- ``image`` (default ``image``): encoded image bytes, a struct ``{bytes, path}`` as the
  ``datasets`` library's ``Image`` feature stores it, or a path / URI (relative to the table's
  folder);
- ``label``: a string, or an integer naming one of ``classes:`` (given in the audit file, or
  read from the ``datasets`` feature metadata the table carries);
- ``masks: {region: column}``: a mask image per row (bytes or ``{bytes, path}``);
- ``boxes: {region: column}``: one box, or a list of boxes, in ``box_format`` (``xywh``: COCO
  ``[x, y, w, h]``, the default; ``xyxy``: ``[x0, y0, x1, y1]``), pixels;
- ``objects``: a COCO-style struct ``{bbox: [[...], ...], category: [...]}`` (the ``datasets``
  detection layout), one region per category, named by its class name;
- ``key``: the column naming each row (its sample name, and ``{stem}`` for mask templates).

Boxes from a table are clipped to the image as COCO's and VOC's are (a labelling tool's box
edge a pixel past the border is routine); a box left with no pixel is that image's error.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Callable, Literal, Mapping

from .base import DatasetError
from .regions import BoxesRegion, region_name

BoxFormat = Literal["xywh", "xyxy"]
BOX_FORMATS: tuple[str, ...] = ("xywh", "xyxy")


@dataclass(frozen=True)
class Columns:
    """The column mapping of a table-like dataset (see the module docstring)."""

    image: str = "image"
    label: str | None = None
    masks: Mapping[str, str] = field(default_factory=dict)
    boxes: Mapping[str, str] = field(default_factory=dict)
    objects: str | None = None
    key: str | None = None
    classes: tuple[str, ...] = ()
    box_format: BoxFormat = "xywh"

    def meta(self) -> list[str]:
        """The columns read when the dataset is declared (everything but pixels)."""
        names = [self.label, self.objects, self.key, *self.boxes.values()]
        return list(dict.fromkeys(n for n in names if n))


def hf_names(metadata: Mapping[bytes, bytes] | None, column: str, inner: str | None = None) -> tuple[str, ...]:
    """The class names the ``datasets`` library recorded for ``column`` (its ``ClassLabel``
    feature, or ``column.inner``'s for a struct such as ``objects.category``), from a table's
    ``huggingface`` schema metadata; ``()`` when there are none."""
    if not metadata or b"huggingface" not in metadata:
        return ()
    try:
        features = json.loads(metadata[b"huggingface"]).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return ()
    return names_in(features.get(column), inner)


def names_in(feature: Any, inner: str | None = None) -> tuple[str, ...]:
    """Class names of a ``datasets`` feature dict (``ClassLabel``, possibly inside a list or a struct)."""
    if inner is not None and isinstance(feature, dict):
        feature = feature.get(inner, feature.get("feature", {}).get(inner) if isinstance(feature.get("feature"),
                                                                                          dict) else None)
    for _ in range(4):  # List / Sequence wrappers
        if isinstance(feature, dict) and "names" in feature:
            return tuple(str(n) for n in feature["names"])
        if isinstance(feature, dict) and "feature" in feature:
            feature = feature["feature"]
        elif isinstance(feature, list) and feature:
            feature = feature[0]
        else:
            break
    return ()


def label_of(value: object, names: tuple[str, ...], where: str) -> str | None:
    """A label cell as a class name: strings as written, integers through ``names``."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, Real) and not isinstance(value, bool) and float(value).is_integer():
        i = int(value)
        if not names:
            return str(i)
        if not 0 <= i < len(names):
            raise DatasetError(f"{where}: label {i} is not one of the {len(names)} classes (0..{len(names) - 1})",
                               "columns")
        return names[i]
    raise DatasetError(f"{where}: a label must be a string or a class index, got {type(value).__name__}", "columns")


def box_edges(box: object, fmt: BoxFormat, where: str) -> tuple[float, float, float, float]:
    """One box cell as pixel edges ``(x0, y0, x1, y1)``."""
    if not (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in box)):
        raise DatasetError(f"{where}: a box must be 4 numbers ({'x, y, w, h' if fmt == 'xywh' else 'x0, y0, x1, y1'}),"
                           f" got {box!r}"[:300], "columns")
    a, b, c, d = (float(v) for v in box)
    x0, y0, x1, y1 = (a, b, a + c, b + d) if fmt == "xywh" else (a, b, c, d)
    if not (x1 > x0 and y1 > y0):
        raise DatasetError(f"{where}: box {list(box)} ({fmt}) has no area", "columns")
    return x0, y0, x1, y1


def boxes_region(name: str, value: object, fmt: BoxFormat, where: str) -> BoxesRegion | None:
    """A box cell (one box, or a list of boxes) as a region; ``None`` for an empty cell."""
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return None
    boxes = value if isinstance(value[0], (list, tuple)) else [value]  # type: ignore[index]
    return BoxesRegion(name, tuple(box_edges(b, fmt, where) for b in boxes), None, where)


def object_regions(value: object, names: tuple[str, ...], fmt: BoxFormat, where: str) -> dict[str, BoxesRegion]:
    """A COCO-style objects cell ``{bbox: [...], category: [...]}`` as one region per category."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or "bbox" not in value or "category" not in value:
        raise DatasetError(f"{where}: an objects cell must hold 'bbox' and 'category' lists", "columns")
    bboxes, cats = list(value["bbox"] or []), list(value["category"] or [])
    if len(bboxes) != len(cats):
        raise DatasetError(f"{where}: objects has {len(bboxes)} bbox but {len(cats)} category entries", "columns")
    grouped: dict[str, list[tuple[float, float, float, float]]] = {}
    for box, cat in zip(bboxes, cats):
        label = label_of(cat, names, where) or "object"
        grouped.setdefault(region_name(label), []).append(box_edges(box, fmt, where))
    return {n: BoxesRegion(n, tuple(b), None, where) for n, b in grouped.items()}


def image_bytes(value: object, resolve: Callable[[str], bytes], where: str) -> bytes:
    """An image (or mask) cell's encoded bytes: bytes as stored, a ``{bytes, path}`` struct's
    bytes (or its file when the struct only has a path), or the file a path cell names."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        if value.get("path"):
            return resolve(str(value["path"]))
    if isinstance(value, str) and value:
        return resolve(value)
    raise FileNotFoundError(f"{where}: the cell holds no image")


class ChunkCache:
    """The last few decoded chunks (a row group's column, an Arrow file), shared by the decode
    threads: a batch's images usually come from one chunk, which is read once, by the first
    thread that needs it, while the others wait for it. Memory stays bounded by ``size`` chunks."""

    def __init__(self, size: int = 3) -> None:
        self.size = size
        self._items: OrderedDict[object, Any] = OrderedDict()
        self._loading: dict[object, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: object, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = load()
            with self._lock:
                self._items[key] = value
                self._loading.pop(key, None)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return value
