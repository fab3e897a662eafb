"""Reading S3 objects fast: obstore (Rust ``object_store``) for the GETs, s3fs as the fallback.

Why: each object read through s3fs costs the client about 1.5 to 2.5 ms of CPU in Python
(aiobotocore signing the request and parsing the response, fsspec's event-loop hand-over), held
under the interpreter lock that the models' thread needs too. A dataset pass reads an image and
its mask per sample, so on a small model that is a sizeable share of the pass. obstore signs and
reads in Rust with the lock released, at about a tenth of that (figures in ``docs/datasets.md``).

It stands in for s3fs only where it reads exactly what s3fs reads, and gives way (returns
``None``, so the caller reads with s3fs) otherwise:

- obstore is not installed, ``VITAUDIT_S3_READS=s3fs`` is set, the store has a ``cache`` (fsspec's
  ``filecache`` must see the read), or the options hold a key :func:`vitaudit.s3_listing.store_kwargs`
  does not map (the same mapping the listing uses: endpoint, anonymous access, key/secret/token,
  profile, region, requester-pays, timeouts);
- obstore raises anything (a missing object or bucket, denied access, a refused connection, a key
  ``object_store`` cannot address): s3fs then reads, retries with its own machinery or raises its
  own error, so every error and retry is exactly s3fs's. obstore itself does not retry (a failure
  costs one request before s3fs's turn);
- once s3fs has read an object obstore failed on, obstore is not tried again for that bucket in
  that store (something obstore does differently there; s3fs's way is the reference).
"""
from __future__ import annotations

import datetime as _dt
import logging
from typing import Any, Mapping

log = logging.getLogger(__name__)

#: Set to ``s3fs`` to read with s3fs only.
ENV_SWITCH = "VITAUDIT_S3_READS"


def enabled() -> bool:
    """Whether the fast path may be tried: obstore importable and :data:`ENV_SWITCH` not ``s3fs``."""
    from . import s3_listing

    return s3_listing.enabled(ENV_SWITCH)


class GaveWay(Exception):
    """obstore tried and failed: s3fs reads instead (and says what is wrong, if anything is)."""


def split(uri: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of an ``s3://`` or ``s3a://`` URI, or ``None`` when obstore should not
    address it (no key, a folder, a query, an empty, ``.`` or ``..`` path segment)."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    bucket, _, key = rest.partition("/")
    if not bucket or not key or "?" in rest or any(p in ("", ".", "..") for p in key.split("/")):
        return None
    return bucket, key


def read(uri: str, options: Mapping[str, Any], stores: dict, start: int | None = None,
         end: int | None = None) -> bytes | None:
    """The bytes of ``uri`` (``[start, end)`` when given) read with obstore; ``None`` when obstore
    is not for this read, :class:`GaveWay` when it tried and failed (s3fs reads in both cases;
    see the module's doc). ``stores`` keeps the obstore store per bucket between
    calls (one Store's ``_fs`` dict); ``False`` there means s3fs only for that bucket."""
    if not enabled():
        return None
    where = split(uri)
    if where is None or (start, end) != (None, None) and not (
            isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
        return None
    bucket, key = where
    try:
        store = stores.get(("obstore-read", bucket))
        if store is False:
            return None
        if store is None:
            from . import s3_listing

            kwargs = s3_listing.store_kwargs(bucket, options)
            if kwargs is None:
                stores[("obstore-read", bucket)] = False
                return None
            kwargs["retry_config"] = {"max_retries": 0, "retry_timeout": _dt.timedelta(seconds=10),
                                      "backoff": {"init_backoff": _dt.timedelta(milliseconds=100),
                                                  "max_backoff": _dt.timedelta(seconds=1), "base": 2}}
            from obstore.store import S3Store

            store = stores[("obstore-read", bucket)] = S3Store(bucket, **kwargs)
        import obstore

        if start is None:
            return bytes(obstore.get(store, key).bytes())
        return bytes(obstore.get_range(store, key, start=start, end=end))
    except Exception as exc:  # noqa: BLE001 - any failure: s3fs reads, or raises its own error
        log.debug("%s: obstore read gave way to s3fs (%s: %s)", uri, type(exc).__name__,
                  str(exc).split("\n", 1)[0][:200])
        raise GaveWay(uri) from None


def give_up(uri: str, stores: dict) -> None:
    """s3fs read ``uri`` where obstore failed: read that bucket with s3fs from now on."""
    where = split(uri)
    if where is not None:
        log.debug("%s: s3fs read what obstore could not; s3fs reads bucket %s from now on", uri, where[0])
        stores[("obstore-read", where[0])] = False
