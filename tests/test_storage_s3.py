"""Datasets in object storage, against a real S3-compatible server on 127.0.0.1 (moto in server
mode, talked to over HTTP by s3fs/botocore; no mock of the client): every source over s3:// reads
what it reads locally; a missing object, a missing backend, a server that pauses or goes away,
the local cache, and credentials kept out of messages."""
from __future__ import annotations

import pickle
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



def _warm_up_imports() -> None:
    """pytester's in-process runs drop modules first imported inside them, and torch registers
    operator libraries once per process: import what the audits use before any run (as
    test_dataset_plugin does)."""
    import vitaudit
    import vitaudit.plugin.dataset_items  # noqa: F401
    import vitaudit.plugin.dataset_results  # noqa: F401
    import vitaudit.report  # noqa: F401

    for spec, method in (("fixture:resnet-scenes", "gradcam"), ("fixture:vit-scenes", "attention")):
        vitaudit.explain(vitaudit.load_model(spec), np.zeros((8, 8, 3), np.uint8), method)


_warm_up_imports()

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


def folder_only(s3: S3Server, extra: str = "") -> str:
    """The folder dataset of ``declarations``, alone (declaring the six costs seconds)."""
    return declarations(s3, "s3://scenes", opts(s3, extra)).split("coco_d:")[0]


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
    spec = declare(tmp_path, folder_only(s3))
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
    spec = declare(tmp_path, folder_only(s3))
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
    spec = declare(tmp_path, folder_only(s3, ", config_kwargs: {retries: {max_attempts: 1}}").rstrip("\n")
                   + "\n  retry_for: 0\n")
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
    store = Store({"key": SECRET, "secret": SECRET, "endpoint_url": "http://127.0.0.1:9"}, retry_for=0)
    assert SECRET not in repr(store)
    with pytest.raises(StorageError) as err:
        store.read("s3://b/x.png")
    assert SECRET not in str(err.value) and "http://127.0.0.1:9" in str(err.value)


# -- the whole audit, through pytest: the dataset pass fetches in its decode threads ------------------

N_PASS = 20


@pytest.fixture
def project(s3: S3Server, pytester: pytest.Pytester) -> pytest.Pytester:
    """The first 20 scenes and their masks, locally below the project and at s3://scenes/small/."""
    import shutil

    c = s3.client()
    for i in range(N_PASS):
        stem, label = f"{i:05d}", ("striped", "checkered", "dotted", "confetti", "rainbow")[i % 5]
        for rel in (f"clean/{label}/{stem}.png", f"masks/{stem}.png"):
            (pytester.path / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SCENES / rel, pytester.path / rel)
            c.put_object(Bucket="scenes", Key=f"small/{rel}", Body=(SCENES / rel).read_bytes())
    return pytester


PASS_AUDIT = """\
models:
  vit: {{name: "fixture:vit-scenes"}}
  cnn: {{name: "fixture:resnet-scenes"}}
datasets:
  scenes:
    folder: {root}/clean
    labels: folders
    regions: {{object: {{mask: "{root}/masks/{{stem}}.png"}}}}{options}
expect:
  - scenes: mean vit.attention mass in object > 0.1
  - scenes: cnn.gradcam pointing game hits object for 50% of images
  - scenes: vit accuracy > 0.5
  - scenes: vit.attention mass in object > 0.2 for 50% of images per class
"""


def audit_json(pytester: pytest.Pytester) -> dict:
    import json

    return json.loads((pytester.path / "reports" / "audit.json").read_text())


def per_image(doc: dict) -> list[tuple]:
    """Every expectation's value and per-image values, images named by file name only."""
    return [(r["value"], r["n_images"], sorted((p["image"].rsplit("/", 1)[-1], p["value"], p["passed"])
                                               for p in r.get("per_image") or []))
            for r in doc["expectations"]]


def test_the_same_audit_over_local_files_and_s3_gives_identical_values(project: pytest.Pytester,
                                                                       s3: S3Server) -> None:
    (project.path / "audit_local.yaml").write_text(PASS_AUDIT.format(root=".", options=""))
    result = project.runpytest("-p", "no:cacheprovider", "-q", "audit_local.yaml")
    local = audit_json(project)
    assert [r["outcome"] for r in local["expectations"]] != [], result.stdout.str()
    (project.path / "audit_local.yaml").unlink()
    (project.path / "audit_s3.yaml").write_text(
        PASS_AUDIT.format(root="s3://scenes/small", options=f"\n    storage_options: {{endpoint_url: '{s3.endpoint}'}}"))
    result = project.runpytest("-p", "no:cacheprovider", "-q", "audit_s3.yaml")
    remote = audit_json(project)
    assert [r["outcome"] for r in remote["expectations"]] == [r["outcome"] for r in local["expectations"]], \
        result.stdout.str()
    assert per_image(remote) == per_image(local)
    assert len(per_image(remote)[0][2]) == N_PASS
    names = [p["image"] for p in remote["expectations"][0]["per_image"]]
    assert all(n.startswith("s3://scenes/small/clean/") for n in names), names[:3]


def test_a_secret_in_storage_options_or_the_environment_appears_in_no_output(
        project: pytest.Pytester, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", f"env-{SECRET}")  # moto ignores it; botocore sends it
    (project.path / "audit_s3.yaml").write_text(PASS_AUDIT.format(
        root="s3://scenes/small",
        options=f"\n    storage_options: {{endpoint_url: '{s3.endpoint}', key: testing, secret: testing, "
                f"client_kwargs: {{aws_session_token: opt-{SECRET}}}}}"))
    (project.path / "audit_bad.yaml").write_text(PASS_AUDIT.format(
        root="s3://no-such-bucket/x",
        options=f"\n    storage_options: {{endpoint_url: '{s3.endpoint}', key: testing, secret: {SECRET}}}"))
    result = project.runpytest("-p", "no:cacheprovider", "-v")
    assert audit_json(project)["expectations"], result.stdout.str()
    outputs = [result.stdout.str(), result.stderr.str()] + [p.read_text(errors="replace")
                                                           for p in (project.path / "reports").rglob("*") if p.is_file()]
    assert len(outputs) >= 4
    assert not [o[:200] for o in outputs if SECRET in o]
    assert "no-such-bucket" in result.stdout.str(), result.stdout.str()  # reported, without its options


def test_with_the_server_gone_the_datasets_items_fail_in_one_line_naming_the_endpoint(
        project: pytest.Pytester, s3: S3Server) -> None:
    """Declared while the server is up; it goes away once the items are collected, so every fetch
    of the pass fails: each item fails with one line that names the endpoint once."""
    import types

    (project.path / "audit_s3.yaml").write_text(PASS_AUDIT.format(
        root="s3://scenes/small",
        options=f"\n    storage_options: {{endpoint_url: '{s3.endpoint}', config_kwargs: {{retries: {{max_attempts: 1}}}}}}"
                "\n    retry_for: 1"))  # ridden out for a second (20 by default), then the pass fails
    (project.path / "conftest.py").write_text(
        "import sys\n\ndef pytest_collection_finish(session):\n    sys.modules['_s3_under_test'].server.stop()\n")
    sys.modules["_s3_under_test"] = types.SimpleNamespace(server=s3)  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report", "audit_s3.yaml")
        seconds = time.perf_counter() - start
    finally:
        del sys.modules["_s3_under_test"]
        s3.start()
    text = result.stdout.str()
    result.assert_outcomes(failed=3 + 5)  # three expectations, and one item per class for the fourth
    lines = [line for line in text.splitlines() if "could not be read" in line]
    assert lines, text
    for line in lines:
        assert line.count(s3.endpoint) == 1 and "is unreachable" in line, line
        assert f"{N_PASS} images of dataset 'scenes' could not be read" in line, line
    assert seconds < 120, seconds


def test_single_images_checkpoints_and_label_files_at_uris(s3: S3Server, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from safetensors.torch import save_file

    from vitaudit.checkpoints import read_state_dict, sha256_file
    from vitaudit.labels import read_label_file

    c = s3.client()
    save_file({"w": torch.arange(6.0).reshape(2, 3)}, str(tmp_path / "m.safetensors"))
    c.put_object(Bucket="scenes", Key="models/m.safetensors", Body=(tmp_path / "m.safetensors").read_bytes())
    c.put_object(Bucket="scenes", Key="models/labels.txt", Body=b"cat\n\ndog\n")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # checkpoints and label files: the environment's options
    monkeypatch.setenv("HOME", str(tmp_path))  # the local copy of the checkpoint goes below ~/.cache
    state = read_state_dict("s3://scenes/models/m.safetensors")
    assert torch.equal(state["w"], torch.arange(6.0).reshape(2, 3))
    assert sha256_file("s3://scenes/models/m.safetensors") == sha256_file(tmp_path / "m.safetensors")
    assert read_label_file("s3://scenes/models/labels.txt") == ["cat", "dog"]
    audit = tmp_path / "audit_u.yaml"
    audit.write_text(textwrap.dedent(f"""\
        models:
          m: {{name: "fixture:vit-scenes", labels: s3://scenes/models/labels.txt}}
          n: {{name: "fixture:vit-scenes", checkpoint: s3://scenes/models/none.safetensors}}
        images:
          scene:
            path: s3://scenes/clean/striped/00000.png
            storage_options: {{endpoint_url: '{s3.endpoint}'}}
          gone:
            path: s3://scenes/clean/striped/99999.png
            storage_options: {{endpoint_url: '{s3.endpoint}'}}
        expect:
          - scene: m top1 is cat
        """))
    spec = parse_audit_file(str(audit))
    assert [(e.line, e.message) for e in spec.errors] == [
        (3, "checkpoint file not found: s3://scenes/models/none.safetensors"),
        (9, "image not found: s3://scenes/clean/striped/99999.png")]
    decl = spec.images["scene"]
    from vitaudit.images import load_image

    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the image is read with its own storage_options
    assert np.array_equal(load_image(decl.path, decl.store).data, load_image(SCENES / "clean/striped/00000.png").data)


def test_retry_for_is_how_long_a_stopped_server_is_waited_for_before_the_image_fails(
        s3: S3Server, tmp_path: Path) -> None:
    spec = declare(tmp_path, folder_only(s3).rstrip("\n") + "\n  retry_for: 1.5\n")
    sample = spec.datasets["folder_d"].samples[0]
    assert sample.source.store.retry_for == 1.5 and pickle.loads(pickle.dumps(sample.source.store)).retry_for == 1.5
    s3.stop()
    try:
        start = time.perf_counter()
        with pytest.raises(ImageError, match="is unreachable"):
            read_sample(sample)
        waited = time.perf_counter() - start
    finally:
        s3.start()
    assert 1.5 <= waited < 1.5 + 4.0, waited  # retried until the deadline, then one line


@pytest.mark.parametrize("value", ["-1", "soon", "true", "[1]"])
def test_a_retry_for_that_is_not_seconds_is_an_error_at_its_line(tmp_path: Path, value: str) -> None:
    spec = declare(tmp_path, f"folder_d:\n  folder: {SCENES}/clean\n  labels: folders\n  retry_for: {value}\n")
    assert [(e.line, e.message.split(" (")[0]) for e in spec.errors][:1] == [
        (7, "'retry_for' must be a number of seconds from 0 to 3600")]


def test_a_single_images_mask_uri_is_read_with_the_images_storage_options_and_cache(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint is given only in the image's storage_options: the mask at a URI is checked
    when declared and read when rasterised through the image's own Store (options and cache);
    with the environment's options alone neither would reach the server."""
    from vitaudit.images import load_image
    from vitaudit.regions import rasterize

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    cache = tmp_path / "cache"
    audit = tmp_path / "audit_m.yaml"
    audit.write_text(textwrap.dedent(f"""\
        models:
          m: {{name: "fixture:vit-scenes"}}
        images:
          scene:
            path: s3://scenes/clean/striped/00000.png
            storage_options: {{endpoint_url: '{s3.endpoint}', config_kwargs: {{retries: {{max_attempts: 1}}}}}}
            cache: {cache}
            retry_for: 0
            regions:
              object: {{mask: s3://scenes/masks/00000.png}}
              gone: {{mask: s3://scenes/masks/99999.png}}
        expect:
          - scene: m.attention mass in object > 0.0
        """))
    spec = parse_audit_file(str(audit))
    assert [(e.line, e.message) for e in spec.errors] == [(11, "region 'gone': mask not found: s3://scenes/masks/99999.png")]
    decl = spec.images["scene"]
    region = decl.regions["object"]
    assert region.store is decl.store and "endpoint" not in repr(region)
    loaded = load_image(decl.path, decl.store)
    local = rasterize(replace_path(region, str(SCENES / "masks/00000.png")), loaded.data.shape[:2])
    assert local.any() and not local.all()
    assert np.array_equal(rasterize(region, loaded.data.shape[:2]), local)
    cached = sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.startswith("cache"))
    assert len(cached) == 2, cached  # the image and its mask, through the same cache
    s3.stop()  # a reread comes from the cache, the server gone
    try:
        assert np.array_equal(rasterize(region, loaded.data.shape[:2]), local)
    finally:
        s3.start()
    # Without the image's Store (the environment's options only; a fresh client, as fsspec may keep
    # one an earlier test made with AWS_ENDPOINT_URL set), the mask is not reachable.
    from vitaudit.regions import RegionError

    with pytest.raises(RegionError, match=r"mask file s3://scenes/masks/00000\.png cannot be read .*is unreachable"):
        rasterize(replace_path(region, region.mask_path, store=Store({"skip_instance_cache": True}, retry_for=0)), loaded.data.shape[:2])


def replace_path(region, path: str, **changes):
    import dataclasses

    return dataclasses.replace(region, mask_path=path, **changes)


@pytest.mark.parametrize("workers", [0, 2])  # fetching only (decoding between batches), or decoding too
def test_the_pass_reads_the_masks_it_measures_ahead_in_its_fetch_threads(s3: S3Server, tmp_path: Path,
                                                                         workers: int) -> None:
    """The masks of the measured regions are fetched with the images, a batch ahead: once a batch
    is yielded its masks draw with the server gone; a mask missing from the bucket is still that
    image's region error, raised when drawn; regions not asked for are not read."""
    from vitaudit.audit.dataset_pass import decoded
    from vitaudit.datasets.fetch import Drawn, Fetched
    from vitaudit.regions import Region, RegionError, rasterize

    def fetched(region) -> bool:  # with decoding threads, the mask is drawn there too (from the fetched bytes)
        return isinstance((region.base if isinstance(region, Drawn) else region).source, Fetched)

    spec = declare(tmp_path, folder_only(s3, ", config_kwargs: {retries: {max_attempts: 1}}").rstrip("\n")
                   + "\n  retry_for: 0\n")
    samples = spec.datasets["folder_d"].samples[:10]
    gone = samples[3]
    key = str(gone.regions["object"].region.mask_path)[len("s3://scenes/"):]
    c = s3.client()
    body = c.get_object(Bucket="scenes", Key=key)["Body"].read()
    c.delete_object(Bucket="scenes", Key=key)
    try:
        batches = list(decoded(samples, 4, workers=workers, regions=["object"]))
        unasked = next(decoded(samples[:2], 2, workers=workers))[0]
    finally:
        c.put_object(Bucket="scenes", Key=key, Body=body)
    assert [len(b) for b, _ in batches] == [4, 4, 2]
    got = [(s, im) for b, ims in batches for s, im in zip(b, ims)]
    assert [s.index for s, _ in got] == [s.index for s in samples]
    assert all(fetched(s.regions["object"]) for s, _ in got)
    assert all(isinstance(s.regions["object"], Drawn) == (workers > 0) for s, _ in got)
    assert [s.regions["object"] for s in unasked] == [s.regions["object"] for s in samples[:2]]
    assert not any(fetched(s.regions["object"]) for s in unasked)
    s3.stop()
    try:
        for s, im in got:
            hw = im.data.shape[:2]
            if s.index == gone.index:
                with pytest.raises(RegionError, match=rf"region 'object': mask s3://scenes/{key} does not exist$"):
                    s.regions["object"].mask(hw)
                continue
            declared = samples[[x.index for x in samples].index(s.index)].regions["object"]
            local = SCENES / str(declared.region.mask_path)[len("s3://scenes/"):]
            want = rasterize(Region("object", "mask", (), "px", str(local)), hw)
            assert want.any() and np.array_equal(s.regions["object"].mask(hw), want), s.name
    finally:
        s3.start()


def test_an_audit_of_a_single_image_with_its_mask_at_uris_runs_with_the_images_options_only(
        project: pytest.Pytester, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole audit, through pytest: image and mask in the bucket, the endpoint only in the
    image's storage_options; the value equals the same audit's over the local files."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    audit = """\
models:
  vit: {{name: "fixture:vit-scenes"}}
images:
  scene:
    path: {root}/clean/striped/00000.png{options}
    regions: {{object: {{mask: {root}/masks/00000.png}}}}
expect:
  - scene: vit.attention mass in object > 0.0
"""
    values = []
    for name, root, options in (("audit_local.yaml", ".", ""), ("audit_s3.yaml", "s3://scenes/small",
                                f"\n    storage_options: {{endpoint_url: '{s3.endpoint}', skip_instance_cache: true}}")):
        (project.path / name).write_text(audit.format(root=root, options=options))
        result = project.runpytest("-p", "no:cacheprovider", "-q", name)
        result.assert_outcomes(passed=1)
        (project.path / name).unlink()
        values.append(audit_json(project)["expectations"][0]["value"])
    assert values[0] is not None and values[0] > 0 and values[1] == values[0], values
