"""Listing an S3 prefix fast: obstore (Rust ``object_store``) for the pages, s3fs as the fallback.

Why: a recursive listing of an S3 prefix through s3fs spends about one CPU second per 5,000 to
6,000 keys in botocore (parsing each 1,000-key ``ListObjectsV2`` page into Python dicts and
s3fs's bookkeeping), so a 1,000,000-object prefix costs minutes of client CPU whatever the
server does. `obstore <https://developmentseed.org/obstore>`_ (Development Seed's Python binding of
the Apache Arrow project's ``object_store`` crate) pages and parses the same listing in Rust, at
a small fraction of that (figures in ``docs/datasets.md``). Object reads have their own fast
path in :mod:`vitaudit.s3_reads`, which maps ``storage_options`` with :func:`store_kwargs`.

The fast path must list exactly what ``s3fs.find(path, withdirs=False)`` lists, so it gives way
to s3fs (returns ``None``) whenever it cannot be sure:

- obstore is not installed, ``VITAUDIT_S3_LISTING=s3fs`` is set, or the ``storage_options`` hold a
  key this module does not map (``version_aware``, a session, TLS settings...): only endpoint,
  anonymous access, key/secret/token, profile, region, requester-pays, retries and timeouts are
  mapped, credentials and region resolved by botocore as s3fs resolves them;
- obstore raises anything (a missing bucket, no credentials, a region redirect, a key that
  ``object_store`` refuses as a path such as ``a/./b`` or ``a//b``): s3fs then lists, or raises
  its own error, so errors are exactly s3fs's;
- the listing is empty (s3fs then says whether the path is a single object or nothing).

``object_store`` reports a folder marker ``dir/`` (a key ending in ``/``) as ``dir``. Markers are
told apart from objects with HEAD requests on the few entries that could be one (zero-size
entries, entries that are the folder of other entries, names listed twice); more than
:data:`MAX_AMBIGUOUS` of those and s3fs lists instead. The one case left undetected is a
non-empty key ending in ``/`` with nothing below it, which is listed without its ``/``.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

#: Set to ``s3fs`` to list with s3fs only.
ENV_SWITCH = "VITAUDIT_S3_LISTING"
#: How many entries that might be folder markers are resolved with HEAD requests before s3fs
#: lists instead.
MAX_AMBIGUOUS = 100
#: s3fs options that do not change what a listing returns.
_INERT = {"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths", "default_block_size",
          "default_fill_cache", "default_cache_type", "max_concurrency", "fixed_upload_size", "cache_regions",
          "s3_additional_kwargs", "local_expiry_check"}
_MAPPED = {"endpoint_url", "anon", "key", "secret", "token", "username", "password", "profile", "client_kwargs",
           "config_kwargs", "requester_pays", "use_ssl"}
_CLIENT_KWARGS = {"endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"}
_CONFIG_KWARGS = {"retries", "connect_timeout", "read_timeout", "max_pool_connections", "region_name", "s3"}


def enabled(switch: str = ENV_SWITCH) -> bool:
    """Whether an obstore fast path may be tried: obstore importable and the environment
    variable ``switch`` (this module's for listing, :mod:`vitaudit.s3_reads`' for reads) not
    set to ``s3fs``."""
    if os.environ.get(switch, "").strip().lower() == "s3fs":
        return False
    try:
        import obstore  # noqa: F401
    except ImportError:
        return False
    return True


def find(path: str, options: Mapping[str, Any], stores: dict) -> list[str] | None:
    """Every object below ``path`` (``bucket`` or ``bucket/prefix``, no protocol) as s3fs names it
    (``bucket/key``, unsorted), or ``None`` when s3fs must list instead (see the module's doc).
    ``stores`` keeps the obstore store per bucket between calls (one Store's ``_fs`` dict)."""
    if not enabled():
        return None
    bucket, _, prefix = path.strip("/").partition("/")
    if not bucket or "?" in path or (prefix and any(p in ("", ".", "..") for p in prefix.split("/"))):
        return None
    try:
        store = stores.get(("obstore", bucket))
        if store is None:
            kwargs = store_kwargs(bucket, options)
            if kwargs is None:
                return None
            from obstore.store import S3Store

            store = stores[("obstore", bucket)] = S3Store(bucket, **kwargs)
        return _listed(store, bucket, prefix)
    except Exception as exc:  # noqa: BLE001 - any failure: s3fs lists, or raises its own error
        log.debug("s3://%s: obstore listing gave way to s3fs (%s: %s)", path, type(exc).__name__,
                  str(exc).split("\n", 1)[0][:200])
        return None


def _listed(store, bucket: str, prefix: str) -> list[str] | None:
    head = prefix + "/" if prefix else ""
    sizes: dict[str, int] = {}
    twice: list[str] = []
    own_marker = False
    for batch in store.list(prefix or None, chunk_size=10_000):
        for meta in batch:
            p = meta["path"]
            if not p.startswith(head):
                if p == prefix:  # the folder's own marker "prefix/"
                    own_marker = True
                    continue
                return None  # not the prefix s3fs lists: let it
            if p in sizes:
                twice.append(p)
            else:
                sizes[p] = meta["size"]
    if not sizes:
        return None  # nothing (or only the marker) below: s3fs says whether it is an object or nothing
    # Which entries could stand for a folder marker "p/": zero-size ones and folders of others.
    folders: set[str] = set()
    for p in sizes:
        d = p.rpartition("/")[0]
        while d and d not in folders:
            folders.add(d)
            d = d.rpartition("/")[0]
    twice_set = set(twice)
    unsure = [p for p, size in sizes.items() if p not in twice_set and (size == 0 or p in folders)]
    if len(unsure) + len(twice_set) > MAX_AMBIGUOUS:
        return None
    from obstore.exceptions import NotFoundError

    markers = set(twice_set)  # listed twice: both "p" and "p/"
    only_marker = set()
    for p in unsure:
        try:
            store.head(p)
        except (NotFoundError, FileNotFoundError):
            only_marker.add(p)  # no object "p": the entry was the marker "p/"
    out = [f"{bucket}/{p}" for p in sizes if p not in only_marker]
    out += [f"{bucket}/{p}/" for p in markers | only_marker]
    if own_marker:
        out.append(f"{bucket}/{prefix}/")
    return out


def store_kwargs(bucket: str, options: Mapping[str, Any]) -> dict | None:
    """``S3Store`` keyword arguments that reach the bucket as s3fs would with ``options`` (fsspec's
    configured defaults for ``s3`` applied first, as fsspec applies them), or ``None`` when an
    option is not mapped here."""
    opts = _with_fsspec_defaults(options)
    if set(opts) - _MAPPED - _INERT:
        return None
    client = dict(opts.get("client_kwargs") or {})
    config = dict(opts.get("config_kwargs") or {})
    if set(client) - _CLIENT_KWARGS or set(config) - _CONFIG_KWARGS:
        return None
    addressing = (config.get("s3") or {}).get("addressing_style", "auto")
    if set(config.get("s3") or {}) - {"addressing_style"} or addressing not in ("auto", "path", "virtual"):
        return None

    import botocore.session

    session = botocore.session.Session(profile=opts.get("profile")) if opts.get("profile") else \
        botocore.session.Session()
    endpoint = opts.get("endpoint_url") or client.get("endpoint_url") or _configured_endpoint(session)
    if opts.get("use_ssl") is False and (not endpoint or "://" not in str(endpoint)):
        return None
    kwargs: dict[str, Any] = {}
    region = client.get("region_name") or config.get("region_name") or session.get_config_variable("region")
    kwargs["region"] = region or "us-east-1"
    client_options: dict[str, Any] = {}
    if endpoint:
        endpoint = str(endpoint)
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        if addressing == "virtual":
            return None  # object_store wants the bucket in a virtual-hosted endpoint: let s3fs
        kwargs["endpoint"] = endpoint.rstrip("/")
        kwargs["virtual_hosted_style_request"] = False
        client_options["allow_http"] = endpoint.lower().startswith("http://")
    else:
        if "." in bucket and addressing != "path":
            return None  # virtual-hosted TLS does not cover dotted names
        kwargs["virtual_hosted_style_request"] = addressing != "path"
    if opts.get("requester_pays"):
        kwargs["request_payer"] = True

    if opts.get("anon"):
        kwargs["skip_signature"] = True
    else:
        provider = _credentials(opts, client, session)
        if provider is None:
            return None  # no credentials: s3fs says so in its own words
        kwargs["credential_provider"] = provider

    retries = (config.get("retries") or {}).get("max_attempts")
    kwargs["retry_config"] = {
        "max_retries": max(0, int(retries) - 1) if retries is not None else 2,
        "retry_timeout": _dt.timedelta(seconds=10),  # then s3fs tries, with its own retries
        "backoff": {"init_backoff": _dt.timedelta(milliseconds=100), "max_backoff": _dt.timedelta(seconds=2),
                    "base": 2},
    }
    if config.get("connect_timeout") is not None:
        client_options["connect_timeout"] = _dt.timedelta(seconds=float(config["connect_timeout"]))
    if config.get("read_timeout") is not None:
        client_options["read_timeout"] = _dt.timedelta(seconds=float(config["read_timeout"]))
    kwargs["client_options"] = client_options
    return kwargs


def _with_fsspec_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` over fsspec's configured defaults for the ``s3``/``s3a`` protocols (its config
    files and ``FSSPEC_S3_*`` variables), as fsspec builds an ``S3FileSystem``."""
    from fsspec.config import conf

    out: dict[str, Any] = {}
    for proto in ("s3", "s3a"):
        out.update(conf.get(proto, {}))
    out.update(options)
    return out


def _configured_endpoint(session) -> str | None:
    """An endpoint botocore would take from the environment or the profile's configuration."""
    if str(os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "")).lower() == "true":
        return None
    env = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if env:
        return env
    scoped = session.get_scoped_config()  # a missing profile raises: s3fs then says so in its words
    if scoped.get("endpoint_url") or scoped.get("services") or scoped.get("s3", {}).get("endpoint_url"):
        raise ValueError("endpoint from the profile's configuration")  # not mapped: s3fs lists
    return None


def _credentials(opts: Mapping[str, Any], client: Mapping[str, Any], session) -> Callable | None:
    """A credential provider for obstore: the options' key/secret/token when given (as s3fs passes
    them to botocore), else botocore's own chain (environment, profile, config files, SSO,
    instance metadata...), refreshed as botocore refreshes it."""
    key = opts.get("key") or opts.get("username") or client.get("aws_access_key_id")
    secret = opts.get("secret") or opts.get("password") or client.get("aws_secret_access_key")
    token = opts.get("token") or client.get("aws_session_token")
    if key or secret:
        if not (key and secret):
            return None  # half a key pair: s3fs's error, not a guess
        static = {"access_key_id": key, "secret_access_key": secret, "token": token, "expires_at": None}
        return lambda: static
    creds = session.get_credentials()
    if creds is None:
        return None

    def provider() -> dict:
        frozen = creds.get_frozen_credentials()
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key, "token": frozen.token,
                "expires_at": _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(minutes=5)}

    return provider
