"""Named image regions (boxes, polygons, masks) and their rasterisation to boolean masks.

Coordinates are in pixels of the *original* image (x to the right, y down), or fractions of
its width/height when ``units == "fraction"``. A region is rasterised at the original
image's size, where every explanation map lives too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Region:
    """A region as declared in an audit file (or built in Python).

    - ``kind == "box"``: ``points == ((x0, y0), (x1, y1))``, x1/y1 exclusive (like slicing).
    - ``kind == "polygon"``: ``points`` are the vertices ``(x, y)`` in order.
    - ``kind == "mask"``: ``mask_path`` is an image file; non-zero pixels are inside.
    ``file``/``line`` say where it was declared, for error messages.
    """

    name: str
    kind: Literal["box", "polygon", "mask"]
    points: tuple[tuple[float, float], ...] = ()
    units: Literal["px", "fraction"] = "px"
    mask_path: str | None = None
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class RegionRef:
    """A use of a region in an expectation: the region itself, or its complement (``not R``)."""

    region: Region
    negate: bool = False

    @property
    def label(self) -> str:
        return f"not {self.region.name}" if self.negate else self.region.name
