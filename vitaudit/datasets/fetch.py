"""Reading one dataset sample's image: from its local file, or from wherever its
:class:`~vitaudit.datasets.base.ImageSource` says (an object in storage, a tar member, a table
cell). Called in the dataset pass's decode threads, a batch ahead of the models."""
from __future__ import annotations

from dataclasses import dataclass, field

from vitaudit.images import ImageError, LoadedImage, load_image, load_image_bytes
from vitaudit.storage import Store

from .base import Sample


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
