"""The fast S3 listing (obstore) lists exactly what s3fs lists, against a real S3-compatible
server on 127.0.0.1 (moto in server mode; both clients talk HTTP to it, nothing is mocked):
the same sorted names with and without suffix filtering, nested folders, folder markers, empty
objects, odd characters, several pages, an empty prefix, a single object, a missing bucket (the
same error), keys obstore refuses (s3fs lists them instead), and storage_options mapped as s3fs
reads them."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytest.importorskip("obstore")

from vitaudit import s3_listing  # noqa: E402
from vitaudit.storage import S3_DEFAULTS, Store, _merged  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))
from s3_server import ENV, S3Server  # noqa: E402

# Folder markers (keys ending in "/", as the S3 console and s3fs.mkdir make them, one of them the
# listed folder's own), an empty object, an object "both" beside a marker "both/", names with
# spaces, unicode, "%", "+", "#", brackets and an upper-case suffix (empty ones among them, which
# the fast path resolves with HEAD requests), folders three deep, and a sibling prefix
# ("valx/") that a listing of "val" must not include.
KEYS = ["val/", "val/a.png", "val/b.jpg", "val/notes.txt", "val/cat/", "val/cat/001.png", "val/cat/002.PNG",
        "val/cat/deep/er/003.png", "val/dog/004.png", "val/empty-folder/", "val/empty.png", "val/both",
        "val/both/", "val/both/005.png", "val/space name.png", "val/ünï.png", "val/pct%20x.png", "val/plus+x.png",
        "val/odd #%[x]~{y}.png", "val/odd dir%25 #/", "val/odd dir%25 #/in.png", "valx/other.png", "top.png"]
EMPTY = {"val/", "val/cat/", "val/empty-folder/", "val/empty.png", "val/both/", "val/odd #%[x]~{y}.png",
         "val/odd dir%25 #/"}
SUFFIXES = [None, (".png",), (".png", ".jpg", ".jpeg")]


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    c = server.client()
    c.create_bucket(Bucket="listing")
    for key in KEYS:
        c.put_object(Bucket="listing", Key=key, Body=b"" if key in EMPTY else b"x")
    c.create_bucket(Bucket="pages")  # more than one 1,000-key page
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda j: c.put_object(Bucket="pages", Key=f"p/{j % 3}/{j:05d}.png", Body=b"x"), range(1050)))
    c.create_bucket(Bucket="refused")  # keys object_store will not take as paths
    for key in ("w/a.png", "w/./b.png", "w//c.png"):
        c.put_object(Bucket="refused", Key=key, Body=b"x")
    yield server
    server.stop()


def both(store: Store, uri: str, suffixes, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """``store.find`` through the fast path and through s3fs alone."""
    fast = store.find(uri, suffixes)
    with monkeypatch.context() as m:
        m.setenv(s3_listing.ENV_SWITCH, "s3fs")
        slow = Store(store.options).find(uri, suffixes)
    return fast, slow


def fast_listed(store: Store, uri: str) -> list[str] | None:
    """What the fast path itself returns for ``uri`` (``None``: it gave way to s3fs)."""
    return s3_listing.find(uri.split("://", 1)[1].rstrip("/"), _merged(S3_DEFAULTS, store.options), {})


@pytest.mark.parametrize("suffixes", SUFFIXES, ids=["all", "png", "images"])
@pytest.mark.parametrize("uri", ["s3://listing/val", "s3://listing/val/", "s3://listing/val/cat", "s3://listing",
                                 "s3://pages/p"])
def test_the_fast_listing_names_what_s3fs_names(s3: S3Server, uri: str, suffixes, monkeypatch) -> None:
    store = Store({"endpoint_url": s3.endpoint})
    fast, slow = both(store, uri, suffixes, monkeypatch)
    assert fast == slow
    assert fast_listed(store, uri) is not None, "the fast path gave way to s3fs; nothing was compared"


def test_what_the_listing_holds(s3: S3Server, monkeypatch) -> None:
    """The comparison above is about something: markers, nesting, filtering and pages as expected."""
    store = Store({"endpoint_url": s3.endpoint})
    assert store.find("s3://listing/val", (".png",)) == [
        "a.png", "both/005.png", "cat/001.png", "cat/002.PNG", "cat/deep/er/003.png", "dog/004.png", "empty.png",
        "odd #%[x]~{y}.png", "odd dir%25 #/in.png", "pct%20x.png", "plus+x.png", "space name.png", "ünï.png"]
    everything = store.find("s3://listing/val")
    assert {"", "cat/", "empty-folder/", "both", "both/", "notes.txt", "odd dir%25 #/"} <= set(everything)  # markers as s3fs names them
    assert not any(r.startswith("x/") or r == "other.png" for r in everything)  # not the sibling prefix valx/
    assert len(store.find("s3://pages/p", (".png",))) == 1050


@pytest.mark.parametrize("uri", ["s3://listing/nothing-here", "s3://listing/val/a.png",
                                 "s3://listing/val/empty-folder"])
def test_an_empty_prefix_or_a_single_object_lists_as_s3fs_lists_it(s3: S3Server, uri: str, monkeypatch) -> None:
    fast, slow = both(Store({"endpoint_url": s3.endpoint}), uri, None, monkeypatch)
    assert fast == slow
    # A folder holding only its marker lists the marker as s3fs names it: "" (the folder itself).
    assert fast == {"nothing-here": [], "a.png": ["a.png"], "empty-folder": [""]}[uri.rsplit("/", 1)[1]]


def test_a_missing_bucket_is_the_same_error_as_with_s3fs(s3: S3Server, monkeypatch) -> None:
    errors = []
    for switch in ("", "s3fs"):
        monkeypatch.setenv(s3_listing.ENV_SWITCH, switch)
        with pytest.raises(FileNotFoundError) as info:
            Store({"endpoint_url": s3.endpoint}, retry_for=0).find("s3://no-such-bucket/val", (".png",))
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]
    assert "\n" not in errors[0][1]


def test_keys_obstore_refuses_are_listed_by_s3fs(s3: S3Server, monkeypatch) -> None:
    store = Store({"endpoint_url": s3.endpoint})
    assert fast_listed(store, "s3://refused/w") is None
    fast, slow = both(store, "s3://refused/w", None, monkeypatch)
    assert fast == slow == ["./b.png", "/c.png", "a.png"]


def test_too_many_possible_folder_markers_are_left_to_s3fs(s3: S3Server, monkeypatch) -> None:
    store = Store({"endpoint_url": s3.endpoint})
    monkeypatch.setattr(s3_listing, "MAX_AMBIGUOUS", 2)
    assert fast_listed(store, "s3://listing/val") is None
    fast, slow = both(store, "s3://listing/val", None, monkeypatch)
    assert fast == slow


@pytest.mark.parametrize("options", [
    {"client_kwargs": {"endpoint_url": "{endpoint}"}},
    {"endpoint_url": "{endpoint}", "key": ENV["AWS_ACCESS_KEY_ID"], "secret": ENV["AWS_SECRET_ACCESS_KEY"]},
    {"endpoint_url": "{endpoint}", "anon": True},
    {"endpoint_url": "{endpoint}", "client_kwargs": {"region_name": "eu-west-1"},
     "config_kwargs": {"retries": {"max_attempts": 5}, "connect_timeout": 3}},
], ids=["client_kwargs", "key-secret", "anon", "region-config"])
def test_storage_options_reach_the_server_on_the_fast_path(s3: S3Server, options: dict, monkeypatch) -> None:
    options = {k: ({kk: vv.format(endpoint=s3.endpoint) if isinstance(vv, str) else vv for kk, vv in v.items()}
                   if isinstance(v, dict) else v.format(endpoint=s3.endpoint) if isinstance(v, str) else v)
               for k, v in options.items()}
    store = Store(options)
    # "pages" holds no empty object, so no HEAD is needed (moto refuses an anonymous HEAD, as S3
    # does without read access; the fast path then gives way to s3fs).
    assert fast_listed(store, "s3://pages/p") is not None
    fast, slow = both(store, "s3://pages/p", (".png",), monkeypatch)
    assert fast == slow and len(fast) == 1050


def test_a_profile_gives_its_credentials_and_region_as_botocore_reads_them(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "credentials").write_text("[audit]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = S3CRET\n")
    (tmp_path / "config").write_text("[profile audit]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
                 "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    kwargs = s3_listing.store_kwargs("bucket", {"profile": "audit", "endpoint_url": "http://127.0.0.1:9"})
    creds = kwargs["credential_provider"]()
    assert (creds["access_key_id"], creds["secret_access_key"]) == ("AKIDPROFILE", "S3CRET")
    assert kwargs["region"] == "eu-central-1"
    assert kwargs["endpoint"] == "http://127.0.0.1:9" and kwargs["client_options"]["allow_http"] is True
    # An endpoint from the environment, as botocore takes it; no credentials at all: s3fs decides.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    assert s3_listing.store_kwargs("bucket", {"profile": "audit"})["endpoint"] == "http://127.0.0.1:8"
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert s3_listing.store_kwargs("bucket", {"endpoint_url": "http://127.0.0.1:9"}) is None


@pytest.mark.parametrize("options", [{"version_aware": True}, {"config_kwargs": {"signature_version": "s3"}},
                                     {"client_kwargs": {"verify": False}}, {"key": "only-the-key"}])
def test_options_the_fast_path_does_not_map_leave_the_listing_to_s3fs(options: dict, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert s3_listing.store_kwargs("bucket", {"endpoint_url": "http://127.0.0.1:9", **options}) is None
