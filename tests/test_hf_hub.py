"""``hf: owner/name``: a dataset on the Hugging Face hub, read from the hub cache with no network.

There is no network here, so the tests build a real hub cache on disk in the layout
huggingface_hub documents (``datasets--owner--name/refs/main`` holding the commit,
``snapshots/<commit>/...`` links into ``blobs/``), holding Parquet files the real ``datasets``
library wrote (``Dataset.to_parquet``: the ``huggingface`` features metadata included), and run
``huggingface_hub.snapshot_download`` against it with HF_HUB_OFFLINE=1 (no mock of the client).
The same table read through ``parquet:`` gives the same per-image values in audit.json. Online,
the same client talks to a hub on 127.0.0.1 (fixtures/hub_server.py answers the hub's HTTP API):
only the card and the chosen split's files are downloaded, and the cache they land in serves
the next run with the hub off or gone.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("huggingface_hub")
datasets = pytest.importorskip("datasets")

from vitaudit.datasets.base import DatasetError  # noqa: E402
from vitaudit.datasets.fetch import read_sample  # noqa: E402
from vitaudit.datasets.hub_splits import CONVERTED, choose, default_splits, layout  # noqa: E402
from vitaudit.spec import parse_audit_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT / "audits" / "datasets" / "scenes"
CLASSES = ["striped", "checkered", "dotted", "confetti", "rainbow"]
sys.path.insert(0, str(ROOT / "fixtures"))
REPO = "vitaudit-test/scenes"
N_VAL = 15


def scene_table(start: int, n: int):
    """Scenes ``start..start+n-1`` as a ``datasets.Dataset``: Image, ClassLabel and string features."""
    from dataset_tables import scene_rows

    rows = scene_rows(SCENES, n, start)
    features = datasets.Features({"key": datasets.Value("string"), "image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=CLASSES), "mask": datasets.Image()})
    return datasets.Dataset.from_dict({
        "key": [r["key"] for r in rows], "image": [{"bytes": r["image"], "path": None} for r in rows],
        "label": [r["label"] for r in rows], "mask": [{"bytes": r["mask"], "path": None} for r in rows]},
        features=features)


def write_cache(cache: Path, repo: str, files: dict[str, Path | bytes], ref: str = "main") -> Path:
    """A hub cache entry as snapshot_download leaves it: ``refs/<ref>`` holds the commit,
    ``snapshots/<commit>/<file>`` are relative links to ``blobs/<sha256>``. Returns the snapshot."""
    storage = cache / ("datasets--" + repo.replace("/", "--"))
    commit = hashlib.sha1(f"{repo}@{ref}".encode()).hexdigest()
    (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    snapshot = storage / "snapshots" / commit
    for rel, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The validation (15 scenes) and train (5 other scenes) tables, written once by ``datasets``."""
    out = tmp_path_factory.mktemp("tables")
    scene_table(0, N_VAL).to_parquet(str(out / "validation.parquet"))
    scene_table(40, 5).to_parquet(str(out / "train.parquet"))
    return out


@pytest.fixture
def cache(tables: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hub cache holding REPO (push_to_hub's layout: data/{split}-00000-of-00001.parquet and a
    card), with the hub off, set as the environment variables and as huggingface_hub's settings
    (read once, when it is first imported in this process)."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    write_cache(root, REPO, {"README.md": b"---\nlicense: mit\n---\n# scenes\n",
                             "data/validation-00000-of-00001.parquet": tables / "validation.parquet",
                             "data/train-00000-of-00001.parquet": tables / "train.parquet"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


def declare(tmp_path: Path, body: str):
    """An audit file declaring ``body`` (datasets from line 2), with one expectation on the first."""
    body = textwrap.dedent(body)
    first = body.strip().split(":", 1)[0]
    path = tmp_path / "audit_h.yaml"
    path.write_text("datasets:\n" + textwrap.indent(body, "  ") + f"expect:\n  - {first}: mean x.attention mass in "
                    "object > 0\nmodels:\n  x: {name: 'fixture:vit-scenes'}\n")
    return parse_audit_file(str(path))


def errors(spec) -> list[tuple[int, str]]:
    return [(e.line, e.message) for e in spec.errors]


def test_a_cached_hub_split_reads_the_pixels_classes_and_masks_of_the_scenes(cache: Path, tmp_path: Path) -> None:
    spec = declare(tmp_path, f"""
        d:
          hf: {REPO}
          split: validation
          columns: {{key: key, label: label, masks: {{object: mask}}}}
    """)
    assert errors(spec) == []
    d = spec.datasets["d"]
    assert d.kind == "hf" and len(d.samples) == N_VAL and d.region_names == ("object",)
    assert [s.name for s in d.samples[:3]] == ["00000", "00001", "00002"]
    for s in d.samples:
        i = int(s.name)
        assert s.label == CLASSES[i % 5]  # the ClassLabel names the features recorded, not 0..4
        loaded = read_sample(s)
        truth = np.asarray(Image.open(SCENES / "clean" / CLASSES[i % 5] / f"{s.name}.png").convert("RGB"))
        assert np.array_equal(loaded.data, truth), s.name
        mask = np.asarray(Image.open(SCENES / "masks" / f"{s.name}.png")) != 0
        assert np.array_equal(s.regions["object"].mask(loaded.size), mask), s.name
    assert "/snapshots/" in d.samples[0].path  # read from the cache's snapshot, in place
    import pickle

    copy = pickle.loads(pickle.dumps(d.samples[7]))  # as a distributed pass ships it
    assert copy.source.read() == d.samples[7].source.read() and copy.label == d.samples[7].label


def test_rows_without_a_key_are_named_by_repo_file_and_row(cache: Path, tmp_path: Path) -> None:
    spec = declare(tmp_path, f"d: {{hf: {REPO}, split: train, columns: {{label: label, masks: {{object: mask}}}}}}\n")
    assert errors(spec) == []
    names = [s.name for s in spec.datasets["d"].samples]
    assert names[0] == f"{REPO}/data/train-00000-of-00001.parquet#0" and len(names) == 5


def test_a_missing_or_unnamed_split_and_an_uncached_id_fail_in_one_line_at_their_key(cache: Path,
                                                                                     tmp_path: Path) -> None:
    spec = declare(tmp_path, f"""
        nosplit:
          hf: {REPO}
        badsplit:
          hf: {REPO}
          split: test
        badconfig:
          hf: {REPO}
          config: big
          split: train
        uncached:
          hf: vitaudit-test/not-cached
          split: validation
        badrev:
          hf: {REPO}
          revision: v2
          split: validation
    """)
    got = errors(spec)
    listed = " (only the files in the hub cache are listed)"  # this cache holds no listing of the repository
    assert got[:3] == [
        (4, f"dataset 'nosplit': {REPO} has splits train, validation; say which with split: (e.g. split: "
            f"validation){listed}"),
        (7, f"dataset 'badsplit': {REPO} has no split 'test'; its splits: train, validation{listed}"),
        (10, f"dataset 'badconfig': {REPO} has no config 'big' (its card declares no configs:); its configs: "
             f"default{listed}"),
    ], got
    hub = str(cache)
    assert got[3] == (13, f"dataset 'uncached': hub dataset vitaudit-test/not-cached: it is not in the hub cache "
                          f"({hub}) and HF_HUB_OFFLINE is set; run once with the hub reachable and HF_HUB_OFFLINE unset "
                          f"to cache it, or point HF_HUB_CACHE at a cache that holds it (and no folder "
                          f"vitaudit-test/not-cached exists here: looked for {tmp_path}/vitaudit-test/not-cached)"), got
    assert got[4][0] == 17 and f"hub dataset {REPO}@v2: it is not in the hub cache" in got[4][1], got
    assert len(got) == 6 and got[5][1].startswith("dataset 'nosplit' is invalid (line 4: ")  # the expectation on it
    assert all("\n" not in m for _, m in got)
    assert {e.file for e in spec.errors} == {str(tmp_path / "audit_h.yaml")}


def test_hub_keys_belong_to_hub_ids_only(cache: Path, tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"a": [1]}).save_to_disk(str(tmp_path / "saved"))
    spec = declare(tmp_path, f"""
        folder_split:
          hf: saved
          split: validation
        parquet_rev:
          parquet: {SCENES / "parquet_clean"}
          revision: main
    """)
    assert errors(spec)[:2] == [
        (5, "dataset 'folder_split': 'split' applies to a hub dataset id; hf: saved is a folder (a save_to_disk "
            "folder holds one split: name that split's folder)"),
        (8, "'revision' applies to hf: datasets named by hub id (hf: owner/name), not to parquet:")]


def test_a_card_with_configs_and_the_converted_parquet_revision(tables: Path, cache: Path, tmp_path: Path) -> None:
    """The card's YAML ``configs:`` say the files (and the default config); on refs/convert/parquet
    the hub's copy is {config}/{split}/NNNN.parquet."""
    card = textwrap.dedent("""\
        ---
        configs:
        - config_name: small
          data_files:
          - split: validation
            path: small/val-*.parquet
        - config_name: full
          default: true
          data_files:
          - {split: validation, path: "full/validation/*.parquet"}
          - {split: train, path: "full/train/*.parquet"}
        ---
        """).encode()
    write_cache(cache, "vitaudit-test/configs", {
        "README.md": card, "small/val-0.parquet": tables / "train.parquet",
        "full/validation/0.parquet": tables / "validation.parquet", "full/train/0.parquet": tables / "train.parquet"})
    write_cache(cache, "vitaudit-test/configs", {
        "default/validation/0000.parquet": tables / "validation.parquet",
        "default/train/0000.parquet": tables / "train.parquet"}, ref=CONVERTED)
    spec = declare(tmp_path, """
        small: {hf: vitaudit-test/configs, config: small, columns: {masks: {object: mask}}}
        full: {hf: vitaudit-test/configs, split: validation}
        converted: {hf: vitaudit-test/configs, revision: refs/convert/parquet, split: train}
    """)
    assert errors(spec) == []
    assert len(spec.datasets["small"].samples) == 5 and len(spec.datasets["full"].samples) == N_VAL
    assert spec.datasets["converted"].samples[0].name == "vitaudit-test/configs/default/train/0000.parquet#0"


def test_split_rules_follow_the_datasets_library() -> None:
    assert default_splits(["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                           "data/my_eval-00000-of-00001.parquet"]) == {
        "train": ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"],
        "my_eval": ["data/my_eval-00000-of-00001.parquet"]}
    assert default_splits(["x/val/0.parquet", "x/training/0.parquet", "x/testing/0.parquet"]) == {
        "train": ["x/training/0.parquet"], "validation": ["x/val/0.parquet"], "test": ["x/testing/0.parquet"]}
    assert default_splits(["scenes_test.parquet", "scenes-dev.parquet"]) == {
        "validation": ["scenes-dev.parquet"], "test": ["scenes_test.parquet"]}
    assert default_splits(["contest.parquet", "all.parquet"]) == {"train": ["all.parquet", "contest.parquet"]}
    one = layout(["README.md", ".gitattributes", "images/0.jpg"], None, "main")
    with pytest.raises(DatasetError, match="holds no Parquet data file; the hub keeps a Parquet copy of most datasets "
                                           "on the revision refs/convert/parquet: add revision: refs/convert/parquet"):
        choose(one, "o/n", None, None)
    several = layout(["a/train/0000.parquet", "b/train/0000.parquet"], None, CONVERTED)
    with pytest.raises(DatasetError, match=r"^o/n has configs a, b; say which with config:$"):
        choose(several, "o/n", None, "train")
    assert choose(several, "o/n", "b", None) == ("b", "train", ["b/train/0000.parquet"])
    older = layout(["default/my-set-train-00000-of-00002.parquet", "default/my-set-train-00001-of-00002.parquet",
                    "default/my-set-test.parquet"], None, CONVERTED)  # the converted copies' earlier names
    assert older.configs == {"default": {"train": ["default/my-set-train-00000-of-00002.parquet",
                                                   "default/my-set-train-00001-of-00002.parquet"],
                                         "test": ["default/my-set-test.parquet"]}}


# -- the whole audit, through pytest in a fresh process with the hub off in its environment ----------

AUDIT = """\
models:
  vit: {{name: "fixture:vit-scenes"}}
  cnn: {{name: "fixture:resnet-scenes"}}
datasets:
  table:
    parquet: {table}
    columns: {{key: key, label: label, masks: {{object: mask}}}}
  hub:
    hf: {repo}
    split: validation
    columns: {{key: key, label: label, masks: {{object: mask}}}}
expect:
{expect}
"""
EXPECT = ("mean vit.attention mass in object > 0.1", "cnn.gradcam pointing game hits object for 50% of images",
          "vit accuracy > 0.5", "vit.attention mass in object > 0.2 for 50% of images per class")


def test_an_audit_of_a_hub_id_gives_the_values_the_same_table_gives_through_parquet(
        tables: Path, cache: Path, pytester: pytest.Pytester) -> None:
    expect = "\n".join(f"  - {d}: {e}" for d in ("table", "hub") for e in EXPECT)
    (pytester.path / "audit_hub.yaml").write_text(AUDIT.format(table=tables / "validation.parquet", repo=REPO,
                                                               expect=expect))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "audit_hub.yaml")  # env: hub off
    doc = json.loads((pytester.path / "reports" / "audit.json").read_text())
    by_id = {r["nodeid"]: r for r in doc["expectations"]}
    table_ids = [n for n in by_id if "::table::" in n]
    assert len(table_ids) == len(by_id) // 2 >= len(EXPECT), result.stdout.str()  # `per class` adds a row per class
    for nodeid in table_ids:
        table, hub = by_id[nodeid], by_id[nodeid.replace("::table::", "::hub::")]
        assert table["outcome"] in ("passed", "failed") and hub["outcome"] == table["outcome"], result.stdout.str()
        assert (hub["value"], hub["n_images"]) == (table["value"], table["n_images"]), nodeid
        per_t = sorted((p["image"], p["value"], p["passed"]) for p in table.get("per_image") or [])
        per_h = sorted((p["image"], p["value"], p["passed"]) for p in hub.get("per_image") or [])
        assert per_h == per_t, nodeid
    first = by_id[table_ids[0].replace("::table::", "::hub::")]
    assert first["n_images"] == N_VAL
    assert sorted(p["image"] for p in first["per_image"]) == [f"{i:05d}" for i in range(N_VAL)]


def test_with_the_listing_the_hub_cache_keeps_a_split_not_downloaded_is_named_and_fails_in_one_line(
        cache: Path, tmp_path: Path) -> None:
    """snapshot_download keeps the repository's listing (trees/<commit>.json, the format
    huggingface_hub documents): offline, the splits it names are known though not downloaded."""
    storage = cache / ("datasets--" + REPO.replace("/", "--"))
    commit = (storage / "refs" / "main").read_text()
    snapshot = storage / "snapshots" / commit
    files = {p.relative_to(snapshot).as_posix(): p for p in snapshot.rglob("*") if p.is_file()}
    files["data/test-00000-of-00001.parquet"] = None  # on the hub, never fetched
    (storage / "trees").mkdir()
    (storage / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": {
        rel: {"size": p.stat().st_size if p else 1234, "blob_id": hashlib.sha1(rel.encode()).hexdigest()}
        for rel, p in files.items()}}))
    spec = declare(tmp_path, f"""
        val: {{hf: {REPO}, split: validation, columns: {{masks: {{object: mask}}}}}}
        nosplit: {{hf: {REPO}}}
        test:
          hf: {REPO}
          split: test
    """)
    got = errors(spec)
    assert len(spec.datasets["val"].samples) == N_VAL
    assert got[0] == (4, f"dataset 'nosplit': {REPO} has splits train, validation, test; say which with split: "
                         "(e.g. split: validation)"), got
    assert got[1] == (7, f"dataset 'test': hub dataset {REPO}: split 'test' is not in the hub cache ({cache}) and "
                         "HF_HUB_OFFLINE is set; run once with the hub reachable and HF_HUB_OFFLINE unset to cache it")


# -- online: the real client against a hub on 127.0.0.1 (fixtures/hub_server.py), then offline ------

DECLARE = """\
import json, sys, hashlib
from vitaudit.spec import parse_audit_file
spec = parse_audit_file(sys.argv[1])
print(json.dumps({"errors": [[e.line, e.message] for e in spec.errors], "datasets": {
    k: [[s.name, s.label, hashlib.sha256(s.source.read()).hexdigest()] for s in d.samples]
    for k, d in spec.datasets.items()}}))
"""
ONLINE_AUDIT = f"""\
datasets:
  val:
    hf: {REPO}
    split: validation
    columns: {{key: key, label: label, masks: {{object: mask}}}}
  nosplit:
    hf: {REPO}
  nothere:
    hf: vitaudit-test/no-such-set
    split: validation
expect:
  - val: mean x.attention mass in object > 0
models:
  x: {{name: 'fixture:vit-scenes'}}
"""


def declare_in_a_process(audit: Path, env: dict[str, str]) -> dict:
    """The audit file's errors and samples, declared in a fresh process with ``env`` (huggingface_hub
    reads HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE when it is imported)."""
    import subprocess

    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    done = subprocess.run([sys.executable, "-c", DECLARE, str(audit)], env={**clean, **env, "HF_HUB_DISABLE_TELEMETRY": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_online_only_the_split_is_downloaded_and_then_read_offline_or_with_the_hub_gone(
        tables: Path, tmp_path: Path) -> None:
    from hub_server import HubServer

    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "README.md").write_text("---\nlicense: mit\n---\n# scenes\n")
    for split in ("validation", "train"):
        (repo / "data" / f"{split}-00000-of-00001.parquet").write_bytes((tables / f"{split}.parquet").read_bytes())
    audit = tmp_path / "audit_online.yaml"
    audit.write_text(ONLINE_AUDIT)
    cache = tmp_path / "hub"
    server = HubServer({REPO: repo}).start()
    try:
        online = declare_in_a_process(audit, {"HF_ENDPOINT": server.endpoint, "HF_HUB_CACHE": str(cache)})
    finally:
        server.stop()
    assert server.sent == [f"{REPO}/README.md", f"{REPO}/data/validation-00000-of-00001.parquet"]  # not train
    assert online["errors"] == [
        [7, f"dataset 'nosplit': {REPO} has splits train, validation; say which with split: (e.g. split: validation)"],
        [9, "dataset 'nothere': no dataset vitaudit-test/no-such-set on the hub (a private one needs a token: "
            f"HF_TOKEN, or hf auth login) (and no folder vitaudit-test/no-such-set exists here: looked for "
            f"{tmp_path}/vitaudit-test/no-such-set)"]], online["errors"]
    val = online["datasets"]["val"]
    assert [n for n, _, _ in val] == [f"{i:05d}" for i in range(N_VAL)]
    assert [label for _, label, _ in val] == [CLASSES[i % 5] for i in range(N_VAL)]
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": server.endpoint}):  # the hub off; the hub gone
        again = declare_in_a_process(audit, {"HF_HUB_CACHE": str(cache), **env})
        assert again["datasets"]["val"] == val, env
        assert again["errors"][0] == online["errors"][0], env  # the cached listing still names train
        why = "HF_HUB_OFFLINE is set" if "HF_HUB_OFFLINE" in env else "the hub is not reachable (ConnectError)"
        assert again["errors"][1][0] == 9 and f"it is not in the hub cache ({cache}) and {why}" in again["errors"][1][1]


def test_without_huggingface_hub_a_hub_id_fails_at_its_line_naming_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if not installed: importing it fails
    spec = declare(tmp_path, f"d: {{hf: {REPO}, split: validation}}\n")
    assert errors(spec)[0] == (2, "dataset 'd': hf: a hub dataset id needs huggingface_hub; "
                                  "pip install 'vitaudit[hf-datasets]'")
