"""Datasets in object storage, against a real S3-compatible server on 127.0.0.1 (moto in server
mode, talked to over HTTP by s3fs/botocore; no mock of the client): every source over s3:// reads
what it reads locally; a missing object, a missing backend, a server that pauses or goes away,
the local cache, and credentials kept out of messages."""
from __future__ import annotations

import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from vitaudit.datasets.fetch import read_sample  # noqa: E402
from vitaudit.images import ImageError  # noqa: E402
from vitaudit.spec import parse_audit_file  # noqa: E402
from vitaudit.storage import Store, StorageError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT / "audits" / "datasets" / "scenes"
sys.path.insert(0, str(ROOT / "fixtures"))
from s3_server import S3Server  # noqa: E402

PARTS = ("clean", "masks", "coco_clean.json", "manifest_clean.csv", "voc_clean", "parquet_clean", "webdataset_clean")
SECRET = "SECRET-do-not-print-7f3a9"


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    c = server.client()
    c.create_bucket(Bucket="scenes")
    for part in PARTS:
        p = SCENES / part
        if p.is_file():
            c.put_object(Bucket="scenes", Key=part, Body=p.read_bytes())
        else:
            server.upload("scenes", p, part)
    yield server
    server.stop()


def declarations(s3: S3Server, root: str, options: str = "") -> str:
    """The same six datasets below ``root`` (a local folder or s3://scenes)."""
    return textwrap.dedent(f"""
        folder_d:
          folder: {root}/clean
          labels: folders
          regions: {{object: {{mask: "{root}/masks/{{stem}}.png"}}}}{{options}}
        coco_d:
          coco: {root}/coco_clean.json
          labels: largest{{options}}
        csv_d:
          csv: {root}/manifest_clean.csv{{options}}
        voc_d:
          voc: {root}/voc_clean
          images: {root}{{options}}
        parquet_d:
          parquet: {root}/parquet_clean
          columns: {{key: key, label: label, masks: {{object: mask}}}}{{options}}
        wds_d:
          webdataset: "{root}/webdataset_clean/scenes-{{000..002}}.tar"
          columns: {{masks: {{object: mask.png}}}}{{options}}
    """).replace("{options}", options)


def declare(tmp_path: Path, body: str, name: str = "audit_s.yaml"):
    path = tmp_path / name
    path.write_text("models:\n  x: {name: 'fixture:vit-scenes'}\ndatasets:\n" + textwrap.indent(body, "  ")
                    + "expect:\n  - folder_d: mean x.attention mass in object > 0\n")
    return parse_audit_file(str(path))


def opts(s3: S3Server, extra: str = "") -> str:
    return f"\n  storage_options: {{endpoint_url: '{s3.endpoint}'{extra}}}"


def test_every_source_over_s3_reads_what_it_reads_locally(s3: S3Server, tmp_path: Path) -> None:
    local = declare(tmp_path, declarations(s3, str(SCENES)), "audit_l.yaml")
    remote = declare(tmp_path, declarations(s3, "s3://scenes", opts(s3)))
    assert [e.message for e in local.errors] == [] and [e.message for e in remote.errors] == []
    for key, d in local.datasets.items():
        r = remote.datasets[key]
        assert len(r.samples) == len(d.samples) and r.classes == d.classes and r.region_names == d.region_names, key
        for a, b in list(zip(d.samples, r.samples))[::9]:
            assert a.label == b.label and b.name.endswith(a.name.rsplit("/", 1)[-1]), (key, a.name, b.name)
            la, lb = read_sample(a), read_sample(b)
            assert np.array_equal(la.data, lb.data), (key, b.name)
            for region in a.regions:
                assert np.array_equal(a.regions[region].mask(la.size), b.regions[region].mask(lb.size)), (key, region)
    assert remote.datasets["folder_d"].samples[0].path.startswith("s3://scenes/clean/")


def test_a_missing_object_is_that_images_error(s3: S3Server, tmp_path: Path) -> None:
    spec = declare(tmp_path, declarations(s3, "s3://scenes", opts(s3)))
    sample = spec.datasets["folder_d"].samples[0]
    s3.client().delete_object(Bucket="scenes", Key=sample.path[len("s3://scenes/"):])
    try:
        with pytest.raises(ImageError, match=r"^image object not found: s3://scenes/clean/checkered/00001\.png$"):
            read_sample(sample)
        assert read_sample(spec.datasets["folder_d"].samples[1]).size == (64, 64)  # the others still read
    finally:
        s3.client().put_object(Bucket="scenes", Key=sample.path[len("s3://scenes/"):],
                               Body=(SCENES / sample.path[len("s3://scenes/"):]).read_bytes())


def test_a_uri_whose_backend_is_missing_fails_at_its_line_naming_the_extra(tmp_path: Path) -> None:
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed here")
    except ImportError:
        pass
    spec = declare(tmp_path, "folder_d:\n  folder: gs://bucket/val\n")
    assert [(e.line, e.message) for e in spec.errors][:1] == [
        (5, "dataset 'folder_d': gs://bucket/val: reading gs:// needs a backend that is not installed "
            "(Please install gcsfs to access Google Storage); pip install 'vitaudit[gcs]'")]


def test_a_pause_of_the_server_mid_pass_is_retried_and_the_pass_completes(s3: S3Server, tmp_path: Path) -> None:
    spec = declare(tmp_path, declarations(s3, "s3://scenes", opts(s3)))
    samples = spec.datasets["folder_d"].samples
    back = threading.Timer(1.5, s3.start)
    read: list[object] = []
    for i, s in enumerate(samples[:40]):
        if i == 10:
            s3.stop()  # down for 1.5 s from here
            back.start()
            start = time.perf_counter()
        read.append(read_sample(s).size)
        if i == 10:
            waited = time.perf_counter() - start
    back.join()
    assert read == [(64, 64)] * 40
    assert waited > 0.8  # that read met the stopped server and was retried until it came back


def test_a_server_gone_fails_each_image_at_once_naming_the_endpoint(s3: S3Server, tmp_path: Path) -> None:
    spec = declare(tmp_path, declarations(s3, "s3://scenes", opts(s3, ", config_kwargs: {retries: {max_attempts: 1}}")))
    samples = spec.datasets["folder_d"].samples
    s3.stop()
    try:
        start = time.perf_counter()
        with pytest.raises(ImageError) as first:
            read_sample(samples[0])
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        for s in samples[1:20]:
            with pytest.raises(ImageError) as later:
                read_sample(s)
        rest_s = time.perf_counter() - start
    finally:
        s3.start()
    assert f"storage endpoint {s3.endpoint} is unreachable" in str(first.value)
    assert "\n" not in str(first.value) and str(later.value).endswith(str(first.value).split(": ", 1)[1])
    assert rest_s < max(1.0, first_s / 2), (first_s, rest_s)  # remembered, not retried 19 more times


def test_cache_folder_keeps_objects_so_a_rerun_reads_none_again(s3: S3Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    body = f"folder_d:\n  folder: s3://scenes/clean\n  labels: folders\n  cache: {cache}" + opts(s3) + "\n"
    spec = declare(tmp_path, body)
    samples = spec.datasets["folder_d"].samples[:5]
    first = [read_sample(s).data for s in samples]
    assert len([p for p in cache.iterdir() if p.name != "cache"]) >= 5
    s3.stop()
    try:
        again = [read_sample(s).data for s in samples]  # from the cache: the server is down
    finally:
        s3.start()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_credentials_in_storage_options_appear_in_no_message_or_repr(s3: S3Server, tmp_path: Path) -> None:
    body = (f"folder_d:\n  folder: s3://nobucket-here/clean\n  storage_options: {{endpoint_url: '{s3.endpoint}', "
            f"key: AKIA-{SECRET}, secret: {SECRET}}}\n")
    spec = declare(tmp_path, body)
    text = " ".join(e.message for e in spec.errors)
    assert "nobucket-here" in text and SECRET not in text
    store = Store({"key": SECRET, "secret": SECRET, "endpoint_url": "http://127.0.0.1:9"})
    assert SECRET not in repr(store)
    with pytest.raises(StorageError) as err:
        store.read("s3://b/x.png")
    assert SECRET not in str(err.value) and "http://127.0.0.1:9" in str(err.value)
