"""Files where they live: local paths and fsspec URIs (``s3://``, ``gs://``, ``az://``, ``https://``...).

Every loader that accepts a path accepts a URI through this module, so one place decides how
objects are listed, read, retried, cached and named in messages:

- A :class:`Store` holds one declaration's ``storage_options`` (passed to fsspec as written:
  endpoint, profile, anonymous access...) and its optional ``cache`` folder (fsspec's
  ``filecache``, so a rerun in CI reads nothing twice). Its options never appear in its repr,
  in messages or in pickles' reprs: credentials belong to the environment or the options, never
  to a report.
- Transient errors are retried by the backend's own machinery (for S3, botocore's ``standard``
  retry mode: timeouts, 5xx and throttling, with jittered exponential backoff); :data:`S3_DEFAULTS`
  turns it on unless the options say otherwise. That machinery gives up on a refused connection
  within a second or two (its jitter may make it far less), and s3fs does not retry a refused
  connection at all, so the store itself rides out an unreachable endpoint for
  ``Store.retry_for`` seconds (declared as ``retry_for:``; 20 by default) with a deterministic
  backoff, so a server restart or a short network blip mid-pass costs time, not images.
- When an endpoint stays unreachable after that, the store remembers it for
  :data:`DOWN_SECONDS`, so the other images of the pass fail at once with the same one-line
  cause (naming the endpoint) instead of each waiting out the retries again.
- A missing object is a :class:`FileNotFoundError`, which the dataset pass turns into that
  image's error under ``on_error``.
- A URI whose backend is not installed raises :class:`StorageError` naming the extra
  (``pip install 'vitaudit[s3]'``).
"""
from __future__ import annotations

import posixpath
import re
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Mapping

#: The pip extra that installs each protocol's backend.
EXTRAS: dict[str, str] = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
                          "abfss": "azure", "adl": "azure", "http": "http", "https": "http"}
#: Options a Store adds for S3 unless the declaration sets them: botocore's standard retry mode
#: (3 attempts, jittered exponential backoff) and bounded timeouts. A refused connection is ridden
#: out by the store (``retry_for``), not by these.
S3_DEFAULTS: dict[str, Any] = {"config_kwargs": {"retries": {"mode": "standard", "max_attempts": 3},
                                                 "connect_timeout": 10, "read_timeout": 60}}
#: How long an endpoint that failed after all retries is taken as down.
DOWN_SECONDS = 60.0
#: How long the store retries an unreachable endpoint before the read fails, unless declared.
RETRY_FOR = 20.0
#: The store's waits between those retries: doubling from the first, at most the last.
RETRY_WAIT = (0.25, 4.0)

_URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")  # two letters at least, so C:\ is a path


class StorageError(OSError):
    """A URI that cannot be used (backend missing, endpoint unreachable); one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))

    def __str__(self) -> str:
        return self.args[0]


def is_uri(path: object) -> bool:
    """Whether ``path`` is a URI (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and bool(_URI_RE.match(path))


def protocol(uri: str) -> str:
    m = _URI_RE.match(uri)
    return m.group(1).lower() if m else "file"


def join(root: str, rel: str) -> str:
    """``rel`` (``/``-separated) below ``root``, a local path or a URI, normalised."""
    if not is_uri(root):
        import os

        return os.path.normpath(os.path.join(root, rel))
    head = _URI_RE.match(root).group(0)  # type: ignore[union-attr]
    return head + posixpath.normpath(posixpath.join(root[len(head):], rel))


def parent(uri: str) -> str:
    """The folder holding ``uri`` (a URI or a local path)."""
    if not is_uri(uri):
        import os

        return os.path.dirname(uri)
    head = _URI_RE.match(uri).group(0)  # type: ignore[union-attr]
    return head + posixpath.dirname(uri[len(head):].rstrip("/"))


def check_backend(uri: str) -> None:
    """Raise :class:`StorageError` naming the extra to install when ``uri``'s backend is missing."""
    import fsspec

    proto = protocol(uri)
    try:
        fsspec.get_filesystem_class(proto)
    except ImportError as exc:
        extra = EXTRAS.get(proto)
        how = f"pip install 'vitaudit[{extra}]'" if extra else f"install the fsspec backend for {proto}://"
        raise StorageError(f"{uri}: reading {proto}:// needs a backend that is not installed ({exc}); "
                           f"{how}") from None
    except ValueError:
        raise StorageError(f"{uri}: fsspec knows no protocol '{proto}://'") from None


def _merged(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in given.items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


@dataclass(frozen=True)
class Store:
    """Where one declaration's files live: fsspec options and an optional local cache folder.

    ``options`` stay out of ``repr`` (they may hold credentials). A Store pickles (for a
    distributed pass, whose workers rebuild the filesystem from the options).
    """

    options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)
    cache: str | None = None
    retry_for: float = RETRY_FOR
    _down: dict = field(default_factory=dict, repr=False, compare=False, hash=False)
    _fs: dict = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __getstate__(self) -> dict:
        return {"options": dict(self.options), "cache": self.cache, "retry_for": self.retry_for}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "options", state["options"])
        object.__setattr__(self, "cache", state["cache"])
        object.__setattr__(self, "retry_for", state.get("retry_for", RETRY_FOR))
        object.__setattr__(self, "_down", {})
        object.__setattr__(self, "_fs", {})

    def filesystem(self, uri: str):
        """``(fs, path)`` for ``uri``: the store's filesystem for its protocol and the path in it.

        One instance per protocol, shared by every thread: fsspec's own instance cache is per
        thread, and a new S3 client costs seconds (botocore loads its service models), which
        the decode threads would otherwise each pay."""
        proto = protocol(uri)
        fs = self._fs.get(proto)
        if fs is None:
            with _LOCK:
                fs = self._fs.get(proto)
                if fs is None:
                    fs = self._fs[proto] = self._make(uri)
        return fs, fs._strip_protocol(uri)

    def _make(self, uri: str):
        import fsspec

        check_backend(uri)
        proto = protocol(uri)
        options = dict(self.options)
        if proto in ("s3", "s3a"):
            options = _merged(S3_DEFAULTS, options)
        fs, _ = fsspec.core.url_to_fs(uri, **options)
        if self.cache:
            from fsspec.implementations.cached import WholeFileCacheFileSystem

            fs = WholeFileCacheFileSystem(fs=fs, cache_storage=self.cache, same_names=False)
        return fs

    def endpoint(self, uri: str) -> str:
        """How messages name where ``uri`` lives: the endpoint URL when the options give one."""
        opts = self.options
        url = opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url")
        if url:
            return str(url)
        proto = protocol(uri)
        host = uri[len(proto) + 3:].split("/", 1)[0]
        return f"{proto}://{host}"

    # -- reading ------------------------------------------------------------------------------
    def read(self, uri: str, start: int | None = None, end: int | None = None) -> bytes:
        """The bytes of ``uri`` (``[start, end)`` when given); see :meth:`_guarded` for errors.
        On S3 without a ``cache``, read by obstore when it is installed (:mod:`vitaudit.s3_reads`:
        the same bytes, a tenth of s3fs's client CPU), with s3fs as the fallback for any failure."""
        fast = not self.cache and protocol(uri) in ("s3", "s3a")

        def go() -> bytes:
            failed = False
            if fast:
                from . import s3_reads

                try:
                    got = s3_reads.read(uri, _merged(S3_DEFAULTS, self.options), self._fs, start, end)
                except s3_reads.GaveWay:
                    failed = True
                else:
                    if got is not None:
                        return got
            fs, path = self.filesystem(uri)
            if start is None and end is None:
                data = fs.cat_file(path)
            else:
                data = fs.cat_file(path, start=start, end=end)
            if failed:  # s3fs read what obstore failed on: s3fs's way for that bucket from now on
                s3_reads.give_up(uri, self._fs)
            return data

        return self._guarded(uri, go)

    def read_many(self, uris: list[str]) -> list[bytes]:
        """The bytes of each of ``uris`` (all on one filesystem), fetched concurrently (fsspec's
        batched ``cat``: s3fs runs the requests at once), in order; a missing one raises
        :class:`FileNotFoundError` naming it."""
        if not uris:
            return []

        def go() -> list[bytes]:
            fs, _ = self.filesystem(uris[0])
            paths = [self.filesystem(u)[1] for u in uris]
            got = fs.cat(paths, on_error="return")
            out = []
            for uri, path in zip(uris, paths):
                value = got.get(path) if isinstance(got, dict) else got
                if isinstance(value, BaseException):
                    raise value if not isinstance(value, FileNotFoundError) else FileNotFoundError(uri)
                out.append(value)
            return out

        return self._guarded(uris[0], go)

    def open(self, uri: str, mode: str = "rb") -> IO:
        """A file object for ``uri`` (fsspec's buffered reader: ranged reads, read-ahead)."""
        def go():
            fs, path = self.filesystem(uri)
            return fs.open(path, mode)

        return self._guarded(uri, go)

    def kind(self, uri: str) -> str | None:
        """``"file"``, ``"directory"`` or ``None`` (nothing there)."""
        def go():
            fs, path = self.filesystem(uri)
            try:
                info = fs.info(path)
            except FileNotFoundError:
                return None
            return "directory" if info.get("type") == "directory" else "file"

        return self._guarded(uri, go)

    def find(self, uri: str, suffixes: tuple[str, ...] | None = None) -> list[str]:
        """Every file below folder ``uri`` (its name ending in one of ``suffixes``, any case), as
        sorted ``/``-separated paths relative to it. One recursive listing (S3: paged
        ``ListObjectsV2`` without a delimiter, 1,000 keys a page); nothing is read. On S3 the
        pages are parsed by obstore when it is installed (:mod:`vitaudit.s3_listing`: the same
        names s3fs lists, many times faster), else by s3fs."""
        def go() -> list[str]:
            fs, path = self.filesystem(uri)
            root = path.rstrip("/")
            listed = None
            if protocol(uri) in ("s3", "s3a"):
                from . import s3_listing

                listed = s3_listing.find(root, _merged(S3_DEFAULTS, self.options), self._fs)
            if listed is None:
                listed = fs.find(root, withdirs=False)
            out = []
            for full in listed:
                rel = full[len(root) + 1:] if full.startswith(root + "/") else posixpath.basename(full)
                if suffixes is None or posixpath.splitext(rel)[1].lower() in suffixes:
                    out.append(rel)
            out.sort()
            return out

        return self._guarded(uri, go)

    def glob(self, pattern: str) -> list[str]:
        """The URIs matching ``pattern`` (``*``, ``**``, ``?``, ``[ab]``), sorted."""
        def go() -> list[str]:
            fs, path = self.filesystem(pattern)
            head = _URI_RE.match(pattern).group(0)  # type: ignore[union-attr]
            return sorted(head + p.split("://", 1)[-1] for p in fs.glob(path))

        return self._guarded(pattern, go)

    def _guarded(self, uri: str, go):
        """Run ``go``; a missing object stays :class:`FileNotFoundError`, a denied one
        :class:`PermissionError`; an unreachable endpoint is retried for :attr:`retry_for`
        seconds, then is a :class:`StorageError` naming it, remembered so the next calls fail
        at once; any other backend failure is a :class:`StorageError` naming the URI."""
        endpoint = self.endpoint(uri)
        if (down := self._down_now(endpoint)) is not None:
            raise StorageError(down)
        deadline = time.monotonic() + max(0.0, float(self.retry_for))
        wait = RETRY_WAIT[0]
        while True:
            try:
                return go()
            except (FileNotFoundError, PermissionError, StorageError, IsADirectoryError, NotADirectoryError):
                raise
            except Exception as exc:  # noqa: BLE001 - backends raise many classes
                if not _transport(exc):
                    if isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in _BACKENDS:
                        raise StorageError(f"{uri}: {_short(exc)}") from None  # e.g. no credentials
                    raise
                left = deadline - time.monotonic()
                down = self._down_now(endpoint)
                if left > 0 and down is None:  # another thread's ride-out already gave up: not again
                    time.sleep(min(wait, left))
                    wait = min(wait * 2, RETRY_WAIT[1])
                    continue
                if down is None:
                    down = f"storage endpoint {endpoint} is unreachable ({_short(exc)})"
                    with _LOCK:
                        self._down[endpoint] = (time.monotonic(), down)
                raise StorageError(down) from None

    def _down_now(self, endpoint: str) -> str | None:
        """The message of ``endpoint``'s outage when it was taken as down less than
        :data:`DOWN_SECONDS` ago."""
        down = self._down.get(endpoint)
        return down[1] if down is not None and time.monotonic() - down[0] < DOWN_SECONDS else None


_LOCK = threading.Lock()


_BACKENDS = ("botocore", "aiobotocore", "aiohttp", "urllib3", "requests", "s3fs", "gcsfs", "adlfs", "azure", "google")
_TRANSPORT_WORDS = ("connect", "timeout", "httpclienterror", "serverdisconnected", "clientoserror", "clientpayload",
                    "incompleteread")


def _transport(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the endpoint could not be reached or did not answer
    in time, as opposed to a request it refused (credentials, a bad bucket name...)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        name = type(exc).__name__.lower()
        if isinstance(exc, (ConnectionError, TimeoutError)) or any(w in name for w in _TRANSPORT_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _short(exc: BaseException) -> str:
    """The error's text without the URLs in it (the endpoint is named beside it; the object's URL
    would make the same outage read differently for each image)."""
    text = " ".join(str(exc).split())
    text = re.sub(r"\s*:?\s*[\"']?[A-Za-z][A-Za-z0-9+.-]+://[^\s\"']*[\"']?", "", text).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def read_bytes(path: str, store: Store | None = None) -> bytes:
    """The bytes of a local file or a URI (with ``store``'s options, or none)."""
    if is_uri(path):
        return (store or Store()).read(path)
    with open(path, "rb") as fh:
        return fh.read()


def local_copy(uri: str, store: Store | None = None) -> str:
    """A local file holding ``uri``'s bytes, for readers that need a path (checkpoints): the
    store's ``cache`` folder when it has one, else ``~/.cache/vitaudit/objects``; fetched once
    per object version (keyed by the URI and its size/ETag as the listing reports them)."""
    import hashlib
    import os

    store = store or Store()
    fs, path = store.filesystem(uri)
    info = store._guarded(uri, lambda: fs.info(path))
    tag = f"{uri}|{info.get('size')}|{info.get('ETag') or info.get('etag') or info.get('mtime') or ''}"
    folder = store.cache or os.path.join(os.path.expanduser("~"), ".cache", "vitaudit", "objects")
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha256(tag.encode()).hexdigest()[:32] + "-" + posixpath.basename(path.rstrip("/"))
    target = os.path.join(folder, name)
    if not os.path.exists(target):
        tmp = f"{target}.{os.getpid()}.part"
        with open(tmp, "wb") as fh:
            fh.write(store.read(uri))
        os.replace(tmp, target)
    return target
