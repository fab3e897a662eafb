"""How the report's pictures go into the page: inlined once, shared by reference when repeated,
and only ever ``data:`` URIs in base64 (nothing that could load from the network or run)."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from markupsafe import Markup

_DATA_URI = re.compile(r"data:image/(?:png|jpeg|webp|gif);base64,[A-Za-z0-9+/]*={0,2}")


def valid_uri(uri: Any) -> bool:
    """True for a raster ``data:`` URI in base64: nothing that could load from the network or run."""
    return isinstance(uri, str) and _DATA_URI.fullmatch(uri) is not None


@dataclass
class Pic:
    """How one picture goes into the page: inline ``src``, a shared ``ref``, or missing."""

    src: Markup | None = None
    ref: str | None = None

    @property
    def ok(self) -> bool:
        return self.src is not None or self.ref is not None


class PicTable:
    """Decides, for every picture URI of a run, whether it is inlined or shared by reference."""

    def __init__(self, uris: Iterable[str | None]) -> None:
        self._counts = Counter(u for u in uris if valid_uri(u))
        self._refs: dict[str, str] = {}
        self.shared: dict[str, str] = {}  # ref -> URI, for the JSON data block

    def __call__(self, uri: str | None) -> Pic:
        if not valid_uri(uri):
            return Pic()
        assert uri is not None
        if self._counts[uri] <= 1:
            return Pic(src=Markup(uri))  # validated: only base64 characters, nothing to escape
        ref = self._refs.get(uri)
        if ref is None:
            ref = self._refs[uri] = f"p{len(self._refs)}"
            self.shared[ref] = uri
        return Pic(ref=ref)
