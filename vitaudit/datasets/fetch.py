"""Reading one dataset sample's image: from its local file, or from wherever its
:class:`~vitaudit.datasets.base.ImageSource` says (an object in storage, a tar member, a table
cell); and reading ahead the masks of the regions the pass measures that are fetched too
(:func:`fetch_masks`), or drawing them once the image is decoded (:func:`draw_masks`). Called in the
dataset pass's decode threads, a batch ahead of the models."""
from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass, replace
from typing import Any, Collection

import numpy as np

from vitaudit.images import ImageError, LoadedImage, load_image, load_image_bytes
from vitaudit.storage import Store

from .base import ImageSource, Sample


@dataclass(frozen=True)
class Blob:
    """An object (or the byte range ``[start, end)`` of one) at ``uri``, read through ``store``."""

    uri: str
    store: Store = field(default_factory=Store, repr=False)
    start: int | None = None
    end: int | None = None

    def read(self) -> bytes:
        return self.store.read(self.uri, self.start, self.end)


def fetch_sample(sample: Sample) -> bytes | None:
    """The encoded bytes of ``sample``'s image, or ``None`` for a local file (read when decoded);
    raise :class:`~vitaudit.images.ImageError` (one line, naming the image) when it is missing
    or unreachable. I/O only, so the dataset pass runs it in threads even on a busy CPU."""
    if sample.source is None:
        return None
    try:
        return sample.source.read()
    except FileNotFoundError:
        raise ImageError(f"image object not found: {sample.path}") from None
    except OSError as exc:  # StorageError (endpoint unreachable), PermissionError...
        raise ImageError(f"cannot read image {sample.path}: {exc}") from None


def decode_sample(sample: Sample, data: bytes | None) -> LoadedImage:
    """The decoded image of ``sample`` from what :func:`fetch_sample` returned."""
    return load_image(sample.path) if data is None else load_image_bytes(data, sample.path)


def read_sample(sample: Sample) -> LoadedImage:
    """The decoded image of ``sample``; raise :class:`~vitaudit.images.ImageError` (one line,
    naming the image) when it is missing, unreachable or not an image."""
    return decode_sample(sample, fetch_sample(sample))


@dataclass(frozen=True)
class Fetched:
    """Bytes already read from a source, or the error reading them raised: what a mask read ahead
    in the fetch threads stands on, so the models' thread reads nothing when it rasterises it."""

    data: bytes = field(default=b"", repr=False)
    error: BaseException | None = field(default=None, compare=False)

    def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.data


def fetch_masks(sample: Sample, names: Collection[str]) -> Sample:
    """``sample`` with the masks of its regions ``names`` that come from a source (an object in
    storage, a tar member, a table cell: :class:`~vitaudit.datasets.regions.FetchedMask`) read
    now, into :class:`Fetched`. Rasterising them later raises what reading raised, so a missing
    mask is still that region's error on that image. I/O only, like :func:`fetch_sample`."""
    got = {}
    for name in names:
        region = sample.regions.get(name)
        if _fetched_later(region):
            try:
                got[name] = replace(region, source=Fetched(region.source.read()))  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - raised again, as it was, when the mask is drawn
                got[name] = replace(region, source=Fetched(error=exc))
    return replace(sample, regions={**sample.regions, **got}) if got else sample


def fetches_masks(sample: Sample, names: Collection[str]) -> bool:
    """Whether any of ``sample``'s regions ``names`` is a mask :func:`fetch_masks` would read."""
    return any(_fetched_later(sample.regions.get(n)) for n in names)


def _fetched_later(region: object) -> bool:
    """A region source whose mask is read from a ``source`` when drawn (a
    :class:`~vitaudit.datasets.regions.FetchedMask`, told by its fields: that module imports this
    one), not read ahead yet."""
    source = getattr(region, "source", None)
    return is_dataclass(region) and isinstance(source, ImageSource) and not isinstance(source, Fetched)


#: The largest image (in pixels) whose masks :func:`draw_masks` draws ahead: a batch of 32 holds
#: at most 32 MB of masks a region then. A larger photo's mask is drawn when it is measured (and
#: shrunk to the working size there), as before, rather than held at full size beside the image.
DRAW_AHEAD_PIXELS = 1 << 20


@dataclass(frozen=True)
class Drawn:
    """A region whose mask was drawn ahead at the image's size ``size`` (or the error drawing it
    raised, raised again when it is asked for); any other size is drawn by ``base`` itself."""

    base: Any  # the region source it was drawn from (Declared, FetchedMask, CocoRegion...)
    size: tuple[int, int]
    drawn: np.ndarray | None = field(default=None, repr=False)
    error: BaseException | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.base.name

    def mask(self, size: tuple[int, int]) -> np.ndarray:
        if tuple(size) != self.size:
            return self.base.mask(size)
        if self.error is not None:
            raise self.error.with_traceback(None)
        return self.drawn  # type: ignore[return-value]


def draw_masks(sample: Sample, names: Collection[str], size: tuple[int, int]) -> Sample:
    """``sample`` with the masks of its regions ``names`` drawn at its image's size ``size`` (read
    only: the pass's expectations share them), where the image is decoded: in the decode threads
    when a core is spare, so the models' thread then draws none. Drawing raises
    what it raised, when the mask is asked for: a bad mask is still that region's error on that
    image. Images over :data:`DRAW_AHEAD_PIXELS` are left as they are."""
    size = (int(size[0]), int(size[1]))
    if size[0] * size[1] > DRAW_AHEAD_PIXELS:
        return sample
    got = {}
    for name in names:
        region = sample.regions.get(name)
        if region is None or isinstance(region, Drawn):
            continue
        try:
            mask = region.mask(size).view()
            mask.flags.writeable = False
            got[name] = Drawn(region, size, drawn=mask)
        except Exception as exc:  # noqa: BLE001 - raised again, as it was, when the mask is asked for
            got[name] = Drawn(region, size, error=exc)
    return replace(sample, regions={**sample.regions, **got}) if got else sample
