"""Region sources of dataset samples: each rasterises one region of one image on demand.

- :class:`Declared`: a :class:`~vitaudit.regions.Region` written in the audit file or a CSV cell
  (box, polygon, mask file). Rasterised by :func:`vitaudit.regions.rasterize`, so it keeps that
  module's strict rules (a box reaching outside the image is an error, never clipped).
- :class:`CocoRegion`: the union of one image's COCO instances of one category (polygons, RLE
  compressed or not, or boxes), decoded by pycocotools.
- :class:`BoxesRegion`: the union of one image's Pascal VOC boxes of one object name.

Annotations that come from a labelling tool (COCO, VOC) are *clipped* to the image, as
pycocotools' rasteriser and detectron2's loaders do: tools routinely store a box edge a pixel
past the border. A region that keeps no pixel once clipped is an error; so is an annotation
made for an image of another size (its coordinates would mean other pixels).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np

from vitaudit.regions import Region, RegionError, rasterize


@dataclass(frozen=True)
class Declared:
    """A region declared in the audit file (or a CSV cell): box, polygon or mask file."""

    region: Region

    @property
    def name(self) -> str:
        return self.region.name

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        return rasterize(self.region, size)


@dataclass(frozen=True)
class FetchedMask:
    """A mask whose file is fetched when it is rasterised: an object in storage (read with the
    dataset's storage options), a ``mask.png`` member of a tar shard, a cell of a table.
    ``region.mask_path`` names it in messages; the same rules as a mask file apply."""

    region: Region
    source: object  # an ImageSource (vitaudit.datasets.base): read() -> bytes

    @property
    def name(self) -> str:
        return self.region.name

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        try:
            data = self.source.read()  # type: ignore[attr-defined]
        except FileNotFoundError:
            raise RegionError(self.region, f"region '{self.name}': mask {self.region.mask_path} does not exist") \
                from None
        except OSError as exc:
            raise RegionError(self.region, f"region '{self.name}': cannot read mask {self.region.mask_path}: "
                                           f"{exc}") from None
        return rasterize(self.region, size, data=data)


def uri_mask(region: Region, store) -> FetchedMask:
    """A mask region whose ``mask_path`` is a URI, fetched with ``store`` (the dataset's options)."""
    from .fetch import Blob

    return FetchedMask(region, Blob(str(region.mask_path), store))


def _size_error(where: str, name: str, want: tuple[int, int], size: tuple[int, int]) -> RegionError:
    return RegionError(None, f"{where}: region '{name}' is annotated on a {want[1]}x{want[0]} (WxH) image "
                             f"but the image is {size[1]}x{size[0]}")


@dataclass(frozen=True)
class CocoRegion:
    """One category on one COCO image: the union of its instances.

    ``segmentations`` holds, per instance, a list of polygons (flat ``[x0, y0, x1, y1, ...]``),
    an RLE dict (``counts`` a list: uncompressed, or a string: compressed), or a bbox tuple
    ``(x, y, w, h)`` for an instance without segmentation. ``image_size`` is the JSON's
    ``(height, width)``; ``where`` names the JSON file and image for messages.
    """

    name: str
    segmentations: tuple[object, ...]
    image_size: tuple[int, int]
    where: str

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        from pycocotools import mask as coco_mask

        h, w = (int(s) for s in size)
        if (h, w) != tuple(self.image_size):
            raise _size_error(self.where, self.name, self.image_size, (h, w))
        rles: list[dict] = []
        for seg in self.segmentations:
            if isinstance(seg, tuple):  # bbox (x, y, w, h)
                rles.extend(coco_mask.frPyObjects(np.array([seg], dtype=np.float64), h, w))
            elif isinstance(seg, dict):
                counts = seg["counts"]
                if isinstance(counts, list):  # uncompressed RLE (crowds)
                    rles.append(coco_mask.frPyObjects(seg, h, w))
                else:
                    rles.append({"size": list(seg["size"]),
                                 "counts": counts.encode("ascii") if isinstance(counts, str) else counts})
            else:
                rles.extend(coco_mask.frPyObjects(list(seg), h, w))
        merged = coco_mask.merge(rles) if len(rles) > 1 else rles[0]
        with warnings.catch_warnings():  # pycocotools 2.0.x's Masks.__array__ predates numpy 2's copy=
            warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy keyword",
                                    category=DeprecationWarning)
            mask = coco_mask.decode(merged).astype(bool)
        if not mask.any():
            raise RegionError(None, f"{self.where}: region '{self.name}' covers no pixel of the image")
        return mask


@dataclass(frozen=True)
class BoxesRegion:
    """One object name on one VOC image: the union of its boxes, clipped to the image.

    ``boxes`` are ``(x0, y0, x1, y1)`` in pixel-edge coordinates (x1/y1 exclusive);
    ``image_size`` is the annotation's ``(height, width)`` when it states one.
    """

    name: str
    boxes: tuple[tuple[float, float, float, float], ...]
    image_size: tuple[int, int] | None
    where: str

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        h, w = (int(s) for s in size)
        if self.image_size is not None and (h, w) != tuple(self.image_size):
            raise _size_error(self.where, self.name, self.image_size, (h, w))
        mask = np.zeros((h, w), dtype=bool)
        for x0, y0, x1, y1 in self.boxes:
            c0, r0 = max(0, _edge(x0)), max(0, _edge(y0))
            c1, r1 = min(w, _edge(x1)), min(h, _edge(y1))
            if c1 > c0 and r1 > r0:
                mask[r0:r1, c0:c1] = True
        if not mask.any():
            raise RegionError(None, f"{self.where}: region '{self.name}' covers no pixel of the "
                                    f"{w}x{h} image once clipped to it")
        return mask


def _edge(v: float) -> int:
    """Nearest pixel edge, halves up (as :mod:`vitaudit.regions` rounds box edges)."""
    return int(math.floor(v + 0.5))


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # the audit format's names (vitaudit.spec.draft.NAME)


def region_name(raw: str) -> str:
    """An annotation's category or object name as a region name: runs of spaces (and any
    other character a name cannot hold) become ``_`` (``traffic light`` -> ``traffic_light``),
    and a name starting with a digit or ``-`` gets a leading ``_``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", " ".join(str(raw).split()))
    return name if _NAME_RE.match(name) else "_" + name
