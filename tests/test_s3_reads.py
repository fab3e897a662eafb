"""Object reads through obstore (vitaudit.s3_reads) against a real S3 server on 127.0.0.1 (moto in
server mode; no mock of either client): the same bytes as s3fs for whole objects and byte ranges,
s3fs's errors for a missing object, and s3fs taking over whenever obstore fails or may not apply."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")
pytest.importorskip("obstore")

from vitaudit import s3_reads  # noqa: E402
from vitaudit.storage import Store  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
from s3_server import S3Server  # noqa: E402

KEYS = ["x/a.png", "x/b c.png", "x/a{1}.png", "x/per%cent.png", "x/\u00fc.png", "x/a#b~[c].png", "deep/er/k.bin"]


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    c = server.client()
    c.create_bucket(Bucket="reads")
    for i, key in enumerate(KEYS):
        c.put_object(Bucket="reads", Key=key, Body=bytes(range(256)) * (i + 1) + key.encode())
    yield server
    server.stop()


def obstore_in_use(store: Store, bucket: str = "reads") -> bool:
    from obstore.store import S3Store

    return isinstance(store._fs.get(("obstore-read", bucket)), S3Store)


def test_obstore_reads_the_bytes_s3fs_reads_whole_and_in_ranges(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = Store({"endpoint_url": s3.endpoint})
    got = {k: (fast.read(f"s3://reads/{k}"), fast.read(f"s3://reads/{k}", 3, 300), fast.read(f"s3://reads/{k}", 250, 10**6))
           for k in KEYS}
    assert obstore_in_use(fast)
    monkeypatch.setenv(s3_reads.ENV_SWITCH, "s3fs")
    slow = Store({"endpoint_url": s3.endpoint})
    want = {k: (slow.read(f"s3://reads/{k}"), slow.read(f"s3://reads/{k}", 3, 300), slow.read(f"s3://reads/{k}", 250, 10**6))
            for k in KEYS}
    assert ("obstore-read", "reads") not in slow._fs
    assert got == want
    assert want["x/a.png"][0] == bytes(range(256)) + b"x/a.png" and len(want["x/a.png"][1]) == 263 - 3  # the range ends past the object


def test_a_missing_object_is_file_not_found_and_obstore_stays(s3: S3Server) -> None:
    store = Store({"endpoint_url": s3.endpoint})
    with pytest.raises(FileNotFoundError):
        store.read("s3://reads/x/nothing.png")
    assert store.read("s3://reads/x/a.png").endswith(b"x/a.png")
    assert obstore_in_use(store)


def test_when_obstore_fails_s3fs_reads_and_takes_over_the_bucket(s3: S3Server) -> None:
    """obstore's store for the bucket points at a port where nothing listens (a real client
    failing for real): the read still returns the object, through s3fs, and the bucket is read
    with s3fs from then on."""
    from obstore.store import S3Store

    store = Store({"endpoint_url": s3.endpoint})
    store._fs[("obstore-read", "reads")] = S3Store("reads", endpoint="http://127.0.0.1:9", region="us-east-1",
                                                   client_options={"allow_http": True}, skip_signature=True,
                                                   retry_config={"max_retries": 0})
    assert store.read("s3://reads/x/a.png").endswith(b"x/a.png")
    assert store._fs[("obstore-read", "reads")] is False
    assert store.read("s3://reads/x/b c.png").endswith(b"x/b c.png")


def test_obstore_stays_out_of_cached_stores_and_unmapped_options(s3: S3Server, tmp_path: Path) -> None:
    cached = Store({"endpoint_url": s3.endpoint}, cache=str(tmp_path / "c"))
    assert cached.read("s3://reads/x/a.png").endswith(b"x/a.png")
    assert ("obstore-read", "reads") not in cached._fs
    assert [p for p in (tmp_path / "c").iterdir() if not p.name.startswith("cache")]  # the cache saw the read
    versioned = Store({"endpoint_url": s3.endpoint, "version_aware": False})
    assert versioned.read("s3://reads/x/a.png").endswith(b"x/a.png")
    assert versioned._fs.get(("obstore-read", "reads")) is False  # an option obstore does not map: s3fs


@pytest.mark.parametrize("uri", ["s3://reads/x//a.png", "s3://reads/x/./a.png", "s3://reads", "s3://reads/x/"])
def test_keys_obstore_would_address_differently_are_left_to_s3fs(uri: str) -> None:
    assert s3_reads.split(uri) is None
