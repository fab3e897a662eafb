"""Table-like dataset sources (parquet:, hf:, webdataset:): the same scenes as the folder dataset,
read through each, give the same pixels, labels and masks; column mapping and its errors; the
committed Parquet parts and tar shards are what fixtures/dataset_tables.py writes."""
from __future__ import annotations

import io
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitaudit.datasets.fetch import read_sample
from vitaudit.spec import parse_audit_file

ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT / "audits" / "datasets" / "scenes"
CLASSES = ["striped", "checkered", "dotted", "confetti", "rainbow"]  # fixtures/scenes.CLASSES, label order
sys.path.insert(0, str(ROOT / "fixtures"))


def declare(tmp_path: Path, body: str):
    path = tmp_path / "audit_t.yaml"
    path.write_text("datasets:\n" + textwrap.indent(textwrap.dedent(body), "  ")
                    + "expect:\n  - d: mean x.attention mass in object > 0\nmodels:\n  x: {name: 'fixture:vit-scenes'}\n")
    return parse_audit_file(str(path))


def errors(spec) -> list[str]:
    return [f"{e.line}: {e.message}" for e in spec.errors]


def truth(stem: str) -> tuple[np.ndarray, np.ndarray, str]:
    """The folder dataset's pixels, mask and class of scene ``stem``."""
    label = CLASSES[int(stem) % 5]
    pixels = np.asarray(Image.open(SCENES / "clean" / label / f"{stem}.png").convert("RGB"))
    mask = np.asarray(Image.open(SCENES / "masks" / f"{stem}.png")) != 0
    return pixels, mask, label


def check_same_as_folder(dataset, n: int) -> None:
    assert len(dataset.samples) == n
    for s in dataset.samples[:: max(1, n // 7)]:
        pixels, mask, label = truth(s.name)
        loaded = read_sample(s)
        assert np.array_equal(loaded.data, pixels), s.name
        assert s.label == label
        assert np.array_equal(s.regions["object"].mask(loaded.size), mask), s.name


def test_parquet_folder_of_parts_with_int_labels_masks_and_boxes(tmp_path: Path) -> None:
    spec = declare(tmp_path, f"""
        d:
          parquet: {SCENES / "parquet_clean"}
          columns: {{key: key, label: label, masks: {{object: mask}}, boxes: {{box: bbox}}}}
          classes: {CLASSES}
    """)
    assert errors(spec) == []
    d = spec.datasets["d"]
    assert d.kind == "parquet" and d.region_names == ("box", "object")
    check_same_as_folder(d, 50)
    s = d.samples[7]
    size = read_sample(s).size
    _, mask, _ = truth(s.name)
    ys, xs = np.nonzero(mask)
    box = np.zeros_like(mask)
    box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    assert np.array_equal(s.regions["box"].mask(size), box)  # xywh read as the object's bounding box


def test_parquet_glob_and_one_file_and_sample_names(tmp_path: Path) -> None:
    spec = declare(tmp_path, f"""
        d:
          parquet: "{SCENES / "parquet_clean"}/part-*.parquet"
          columns: {{label: label, masks: {{object: mask}}}}
          classes: {CLASSES}
        one:
          parquet: {SCENES / "parquet_clean" / "part-00001.parquet"}
          columns: {{label: label}}
    """)
    assert errors(spec) == []
    assert len(spec.datasets["d"].samples) == 50
    one = spec.datasets["one"]
    assert len(one.samples) == 25 and one.samples[0].name.endswith("part-00001.parquet#0")
    assert one.classes == ("0", "1", "2", "3", "4")  # integer labels without class names


def test_parquet_errors_name_the_missing_column_and_the_bad_option(tmp_path: Path) -> None:
    spec = declare(tmp_path, f"""
        d:
          parquet: {SCENES / "parquet_clean"}
          columns: {{label: class}}
        e:
          parquet: {SCENES / "parquet_clean"}
          box_format: xyhw
        f:
          parquet: {tmp_path / "nothing"}
        g:
          folder: {SCENES / "clean"}
          columns: {{label: x}}
    """)
    got = errors(spec)
    assert any("part-00000.parquet has no column 'class'; its columns: key, image, label, mask, bbox" in e for e in got), got
    assert any("'box_format' must be xywh or xyxy" in e and "got 'xyhw'" in e for e in got), got
    assert any("no Parquet file found at" in e for e in got), got
    assert any("'columns' applies to parquet:, hf: and webdataset: datasets, not to folder:" in e for e in got), got


def test_webdataset_shards_with_braces_cls_labels_and_mask_members(tmp_path: Path) -> None:
    spec = declare(tmp_path, f"""
        d:
          webdataset: "{SCENES / "webdataset_clean"}/scenes-{{000..002}}.tar"
          columns: {{masks: {{object: mask.png}}}}
    """)
    assert errors(spec) == []
    d = spec.datasets["d"]
    assert d.kind == "webdataset" and [s.name for s in d.samples[:2]] == ["00000", "00001"]
    check_same_as_folder(d, 50)


def test_webdataset_json_labels_class_indices_and_a_sample_without_image(tmp_path: Path) -> None:
    def member(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    png = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 9, np.uint8)).save(png, "PNG")
    with tarfile.open(tmp_path / "a-0.tar", "w") as tar:
        member(tar, "x/k1.jpg.png", png.getvalue())  # key x/k1, extension jpg.png: no image extension
        member(tar, "x/k1.json", b'{"label": 1}')
    with tarfile.open(tmp_path / "a-1.tar", "w") as tar:
        member(tar, "k2.png", png.getvalue())
        member(tar, "k2.json", b'{"label": 1}')
    spec = declare(tmp_path, f"""
        d:
          webdataset: "{tmp_path}/a-1.tar"
          classes: [cat, dog]
        e:
          webdataset: "{tmp_path}/a-{{0..1}}.tar"
    """)
    got = errors(spec)
    assert spec.datasets["d"].samples[0].label == "dog"
    assert any("a-0.tar:x/k1 has no image member" in e and "it has jpg.png, json" in e for e in got), got


def test_hf_save_to_disk_folder_with_class_labels_image_structs_and_objects(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from dataset_tables import scene_rows

    rows = scene_rows(SCENES, 10)
    features = datasets.Features({
        "image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES), "key": datasets.Value("string"),
        "objects": {"bbox": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
                    "category": datasets.List(datasets.ClassLabel(names=["object", "watermark"]))}})
    ds = datasets.Dataset.from_dict({
        "image": [{"bytes": r["image"], "path": None} for r in rows], "label": [r["label"] for r in rows],
        "key": [r["key"] for r in rows],
        "objects": [{"bbox": [r["bbox"], [0, 0, 8, 8]], "category": [0, 1]} for r in rows]}, features=features)
    ds.save_to_disk(str(tmp_path / "hfset"))
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "hfdict"))
    spec = declare(tmp_path, f"""
        d:
          hf: {tmp_path / "hfset"}
          columns: {{label: label, key: key, objects: objects}}
        dd:
          hf: {tmp_path / "hfdict"}
    """)
    got = errors(spec)
    assert any("holds a DatasetDict; name one split's folder, e.g. hf: " in e and "hfdict/validation" in e
               for e in got), got
    d = spec.datasets["d"]
    assert d.kind == "hf" and d.region_names == ("object", "watermark")
    for s in d.samples:
        pixels, mask, label = truth(s.name)
        loaded = read_sample(s)
        assert np.array_equal(loaded.data, pixels) and s.label == label
        ys, xs = np.nonzero(mask)
        assert s.regions["object"].mask(loaded.size)[ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()
        assert s.regions["watermark"].mask(loaded.size).sum() == 64


def test_committed_tables_are_what_the_fixture_script_writes(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from dataset_tables import write_tables

    fresh = write_tables(SCENES, tmp_path)
    for path in fresh:
        committed = SCENES / path.relative_to(tmp_path)
        if path.suffix == ".tar":
            assert path.read_bytes() == committed.read_bytes(), committed
        else:
            assert pq.read_table(path).equals(pq.read_table(committed)), committed
    assert sorted(p.name for p in (SCENES / "webdataset_clean").iterdir()) == [p.name for p in fresh if p.suffix == ".tar"]


def test_samples_of_every_table_source_pickle_and_read_after(tmp_path: Path) -> None:
    """A distributed pass ships samples to workers: their sources pickle and read the same bytes."""
    import pickle

    spec = declare(tmp_path, f"""
        d:
          parquet: {SCENES / "parquet_clean"}
          columns: {{key: key, masks: {{object: mask}}}}
        w:
          webdataset: "{SCENES / "webdataset_clean"}/scenes-{{000..002}}.tar"
          columns: {{masks: {{object: mask.png}}}}
    """)
    assert errors(spec) == []
    for key in ("d", "w"):
        s = spec.datasets[key].samples[13]
        copy = pickle.loads(pickle.dumps(s))
        assert copy.source.read() == s.source.read()
        assert np.array_equal(copy.regions["object"].mask((64, 64)), truth(s.name)[1])


def test_a_hub_id_under_hf_that_the_hub_cache_lacks_says_so_with_the_hub_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An id that is no local folder is a hub dataset (tests/test_hf_hub.py reads one from a cache)."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # no request leaves this test
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = declare(tmp_path, "d:\n  hf: beans\n")
    assert any(f"hub dataset beans: it is not in the hub cache ({tmp_path / 'hub'}) and HF_HUB_OFFLINE is set" in e
               and f"(and no folder beans exists here: looked for {tmp_path / 'beans'})" in e
               for e in errors(spec)), errors(spec)
