"""Reading one dataset sample's image: from its local file, or from wherever its
:class:`~vitaudit.datasets.base.ImageSource` says (an object in storage, a tar member, a table
cell); and reading ahead the masks of the regions the pass measures that are fetched too
(:func:`fetch_masks`). Called in the dataset pass's decode threads, a batch ahead of the models."""
from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass, replace
from typing import Collection

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
