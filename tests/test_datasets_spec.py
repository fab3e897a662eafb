"""The ``datasets:`` section: what a declaration resolves to, and every declaration error at
its exact file:line (one line each)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitaudit.spec import parse_audit_file

HEAD = """\
models:
  m: {name: "fixture:vit-scenes"}
images:
  cat: {path: data/a/a0.png}
datasets:
"""
TAIL = """\
expect:
  - cat: m top1 is 0
"""


def _png(path: Path, value: int = 0, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """data/{a,b}/{a,b}{0,1,2}.png, masks/<stem>.png for all but b2."""
    for c in "ab":
        for i in range(3):
            _png(tmp_path / "data" / c / f"{c}{i}.png")
            if (c, i) != ("b", 2):
                _png(tmp_path / "masks" / f"{c}{i}.png", 255)
    return tmp_path


def _parse(root: Path, body: str):
    text = HEAD + textwrap.indent(textwrap.dedent(body).rstrip("\n") + "\n", "  ") + TAIL
    (root / "audit_d.yaml").write_text(text)
    return parse_audit_file(root / "audit_d.yaml")


def _errors(spec) -> list[tuple[int, str]]:
    return [(e.line, e.message) for e in spec.errors]


def test_folder_dataset_with_labels_template_and_box(tree: Path) -> None:
    (tree / "masks" / "b2.png").write_bytes((tree / "masks" / "b1.png").read_bytes())
    spec = _parse(tree, """\
        scenes:
          folder: data
          labels: folders
          regions:
            obj: {mask: "masks/{stem}.png"}
            corner: {box: [0, 0, 0.5, 0.25], units: fraction}
        """)
    assert _errors(spec) == []
    ds = spec.datasets["scenes"]
    assert ds.kind == "folder" and ds.size == 6 and ds.on_error == "fail"
    assert [s.name for s in ds.samples] == [f"data/{c}/{c}{i}.png" for c in "ab" for i in range(3)]
    assert [s.index for s in ds.samples] == list(range(6))
    assert [s.label for s in ds.samples] == ["a"] * 3 + ["b"] * 3
    assert ds.classes == ("a", "b") and ds.region_names == ("corner", "obj")
    assert ds.samples[0].path == str(tree / "data" / "a" / "a0.png")
    corner = ds.samples[4].regions["corner"].mask((8, 8))
    expected = np.zeros((8, 8), bool)
    expected[:2, :4] = True
    assert (corner == expected).all()
    assert ds.samples[4].regions["obj"].mask((8, 8)).all()
    assert ds.samples[4].regions["obj"].region.mask_path == str(tree / "masks" / "b1.png")


def test_template_placeholders(tree: Path) -> None:
    for c in "ab":
        for i in range(3):
            _png(tree / "by" / c / f"{c}{i}.png.{c}.png", 255)
    spec = _parse(tree, """\
        s:
          folder: data
          labels: folders
          regions:
            obj: {mask: "by/{relpath}/../{name}.{label}.png"}
        """)
    assert _errors(spec) == []
    paths = [s.regions["obj"].region.mask_path for s in spec.datasets["s"].samples]
    assert paths[4] == str(tree / "by" / "b" / "b1.png.b.png")


def test_sample_is_seeded_sorted_subset(tree: Path) -> None:
    body = """\
        s:
          folder: data
          sample: 4
          seed: {seed}
          on_error: skip
        """
    picks = {}
    for seed in (0, 1, 2, 0):
        ds = _parse(tree, body.format(seed=seed)).datasets["s"]
        names = [s.name for s in ds.samples]
        assert names == sorted(names) and len(names) == 4 and ds.size == 6 and ds.on_error == "skip"
        assert [s.index for s in ds.samples] == [0, 1, 2, 3]
        picks.setdefault(seed, names)
        assert picks[seed] == names  # same seed, same subset
    all_names = [f"data/{c}/{c}{i}.png" for c in "ab" for i in range(3)]
    expected = [all_names[int(i)] for i in sorted(np.random.default_rng(1).choice(6, 4, replace=False))]
    assert picks[1] == expected
    assert len({tuple(v) for v in picks.values()}) > 1  # the seed matters


def test_datasets_share_the_image_name_space_and_are_listed(tree: Path) -> None:
    spec = _parse(tree, """\
        cat: {folder: data}
        ok: {folder: data}
        """)
    assert _errors(spec) == [(6, "dataset key 'cat' is also an image key (line 4); images and datasets share one "
                                 "name space, so rename one")]
    assert list(spec.datasets) == ["ok"]


L = 6  # the first line of the dataset body


@pytest.mark.parametrize("body, expected", [
    ("s: {folder: data, sampel: 3}",
     [(L, "unknown key 'sampel' in dataset 's' (did you mean 'sample'?); keys: folder, coco, voc, csv, parquet, "
          "hf, webdataset, images, labels, regions, sample, seed, on_error, storage_options, cache, retry_for, columns, classes, "
          "box_format, split, config, revision")]),
    ("s: {folder: nope}",
     [(L, "dataset 's': dataset folder not found: nope (looked for {root}/nope)")]),
    ("s:\n  folder: data/a/a0.png",
     [(L + 1, "dataset 's': dataset folder is a file, not a folder: data/a/a0.png (looked for {root}/data/a/a0.png)")]),
    ("s: {folder: masks, coco: x.json}", [(L, "dataset 's' has both folder and coco; keep one")]),
    ("s: {labels: folders}", [(L, "dataset 's' needs one of folder: (images below a folder), coco: (a COCO JSON), "
                                  "voc: (a folder of Pascal VOC XML files), csv: (a CSV manifest), parquet: (Parquet "
                                  "files), hf: (a datasets save_to_disk folder or a hub dataset id) or webdataset: (tar shards)")]),
    ("s: data", [(L, "dataset 's' must be a mapping like {folder: <path>} (or coco:, voc:, csv:), got 'data'")]),
    ("s.x: {folder: data}", [(L, "dataset key 's.x' must be a name of letters, digits, '_' and '-'")]),
    ("metric: {folder: data}", [(L, "dataset key 'metric' is reserved")]),
    ("s:\n  folder: data\n  regions:\n    obj: {mask: \"masks/{stem}.png\"}",
     [(L + 3, "dataset 's': mask template 'masks/{stem}.png' matches no file for 1 of 6 images: masks/b2.png "
              "(for data/b/b2.png)")]),
    ("s:\n  folder: data\n  regions:\n    obj: {mask: \"m/{stem}.png\"}",
     [(L + 3, "dataset 's': mask template 'm/{stem}.png' matches no file for 6 of 6 images: m/a0.png (for "
              "data/a/a0.png), m/a1.png (for data/a/a1.png), m/a2.png (for data/a/a2.png) and 3 more")]),
    ("s:\n  folder: data\n  regions:\n    obj: {mask: \"masks/{stme}.png\"}",
     [(L + 3, "region 'obj': mask template 'masks/{stme}.png' has unknown placeholder {stme} (did you mean "
              "'stem'?); placeholders: {stem}, {name}, {relpath}, {label}")]),
    ("s:\n  folder: data\n  regions:\n    obj: {mask: masks/a0.png}",
     [(L + 3, "region 'obj': mask template 'masks/a0.png' has no placeholder, so every image would share one "
              "mask; use {stem}, {name}, {relpath} or {label}")]),
    ("s:\n  folder: data\n  regions:\n    obj: {mask: \"masks/{label}.png\"}",
     [(L + 3, "dataset 's': mask template 'masks/{label}.png' uses {label} but data/a/a0.png has no class")]),
    ("s:\n  folder: data\n  regions:\n    c:\n      box: [4, 0, 2, 8]",
     [(L + 4, "region 'c': box x1 (2) must be greater than x0 (4)")]),
    ("s:\n  folder: data\n  regions:\n    c: {box: [0, 0, 2]}",
     [(L + 3, "region 'c': box needs 4 numbers [x0, y0, x1, y1], got 3")]),
    ("s:\n  folder: data\n  regions:\n    c: {box: [0, 0, 2, 2], unit: px}",
     [(L + 3, "unknown key 'unit' in region 'c' (did you mean 'units'?); keys: box, polygon, mask, units")]),
    ("s:\n  folder: data\n  regions:\n    c: {box: [0, 0, 1.5, 1], units: fraction}",
     [(L + 3, "region 'c': box coordinate 1.5 is outside [0, 1] (units: fraction)")]),
    ("s:\n  folder: data\n  regions:\n    not: {box: [0, 0, 2, 2]}", [(L + 3, "region name 'not' is reserved")]),
    ("s:\n  folder: data\n  sample: 7", [(L + 2, "dataset 's': sample: 7 is more than the 6 images of the dataset")]),
    ("s:\n  folder: data\n  sample: 0", [(L + 2, "'sample' must be >= 1, got 0")]),
    ("s:\n  folder: data\n  seed: 3", [(L + 2, "'seed' only picks the subset that 'sample: N' draws; add sample: "
                                              "or drop seed")]),
    ("s:\n  folder: data\n  on_error: skp",
     [(L + 2, "'on_error' must be fail or skip, got 'skp' (did you mean 'skip'?)")]),
    ("s:\n  folder: data\n  labels: folder",
     [(L + 2, "'labels' of a folder: dataset must be folders, got 'folder' (did you mean 'folders'?)")]),
    ("s:\n  folder: data\n  images: data", [(L + 2, "'images' applies to coco: and voc: datasets (the folder their "
                                                    "file names are relative to), not to folder:")]),
    ("s:\n  folder: empty", [(L + 1, "dataset 's': dataset folder {root}/empty holds no image (png jpg jpeg bmp "
                                     "webp tif tiff)")]),
    ("s:\n  folder: loose\n  labels: folders",
     [(L + 2, "dataset 's': labels: folders takes each image's class from its sub-folder, but 1 image(s) lie "
              "directly in {root}/loose: x.png")]),
    ("s: [data]", [(L, "dataset 's' must be a mapping like {folder: <path>} (or coco:, voc:, csv:), got a list")]),
])
def test_declaration_errors(tree: Path, body: str, expected: list[tuple[int, str]]) -> None:
    (tree / "empty").mkdir()
    (tree / "empty" / "notes.txt").write_text("no images here")
    _png(tree / "loose" / "x.png")
    _png(tree / "loose" / "sub" / "y.png")
    spec = _parse(tree, body)
    assert _errors(spec) == [(line, msg.replace("{root}", str(tree))) for line, msg in expected]
    assert spec.datasets == {}


def test_section_not_a_mapping(tmp_path: Path) -> None:
    (tmp_path / "audit_d.yaml").write_text(HEAD.replace("datasets:\n", "datasets: [a]\n") + TAIL)
    _png(tmp_path / "data" / "a" / "a0.png")
    spec = parse_audit_file(tmp_path / "audit_d.yaml")
    assert _errors(spec) == [(5, "'datasets' must be a mapping of dataset keys to {folder: <path>} "
                                 "(or coco:, voc:, csv:), got a list")]


def test_broken_dataset_is_recorded_with_its_first_error(tree: Path) -> None:
    from vitaudit.spec.build import Declarations
    from vitaudit.spec.context import Ctx
    from vitaudit.spec.datasets import parse_datasets
    from vitaudit.spec.yamlload import load_yaml

    root, _ = load_yaml("s: {folder: nope}\nok: {folder: data}\n", "x.yaml")
    decls = Declarations()
    parse_datasets(Ctx("x.yaml", tree), root, decls, {})
    assert decls.dataset_order == ["s", "ok"] and list(decls.datasets) == ["ok"]
    assert decls.bad_datasets == {"s": f"line 1: dataset 's': dataset folder not found: nope (looked for {tree}/nope)"}


def _annotations(root: Path) -> None:
    """ann/coco.json (2 images in data/a), voc/ (1 file), list.csv: the same image a0 three ways."""
    import json

    (root / "ann").mkdir()
    (root / "ann" / "coco.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a/a0.png", "height": 8, "width": 8},
                   {"id": 2, "file_name": "a/a1.png", "height": 8, "width": 8}],
        "categories": [{"id": 1, "name": "hot dog"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4], "area": 16}]}))
    (root / "voc").mkdir()
    (root / "voc" / "a0.xml").write_text("<annotation><filename>a/a0.png</filename><object><name>hot dog</name>"
                                         "<bndbox><xmin>3</xmin><ymin>3</ymin><xmax>6</xmax><ymax>6</ymax></bndbox>"
                                         "</object></annotation>")
    (root / "list.csv").write_text("path,label,hot_dog\ndata/a/a0.png,a,2 2 6 6\ndata/a/a1.png,a,\n")


def test_coco_voc_csv_datasets(tree: Path) -> None:
    _annotations(tree)
    spec = _parse(tree, """\
        coco:
          coco: ann/coco.json
          images: data
          labels: largest
          regions:
            corner: {box: [0, 0, 2, 2]}
        voc: {voc: voc, images: data, on_error: skip}
        listed: {csv: list.csv}
        """)
    assert _errors(spec) == []
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    for key in ("coco", "voc", "listed"):
        ds = spec.datasets[key]
        assert ds.kind == ("csv" if key == "listed" else key)
        assert ds.samples[0].name == "data/a/a0.png"
        np.testing.assert_array_equal(ds.samples[0].regions["hot_dog"].mask((8, 8)), expected)
    coco = spec.datasets["coco"]
    assert [s.label for s in coco.samples] == ["hot_dog", None] and coco.classes == ("hot_dog",)
    assert coco.region_names == ("corner", "hot_dog") and coco.count_with("hot_dog") == 1
    assert coco.count_with("corner") == 2
    assert spec.datasets["voc"].on_error == "skip" and spec.datasets["voc"].classes == ()
    assert spec.datasets["listed"].classes == ("a",) and spec.datasets["listed"].count_with("hot_dog") == 1


@pytest.mark.parametrize("body, expected", [
    ("s:\n  coco: ann/missing.json", [(L + 1, "dataset 's': COCO JSON file not found: ann/missing.json (looked for "
                                              "{root}/ann/missing.json)")]),
    ("s:\n  coco: ann/broken.json", [(L + 1, "dataset 's': broken.json is not valid JSON: Expecting value (line 1, "
                                             "column 12)")]),
    ("s:\n  coco: ann/coco.json\n  images: nope", [(L + 2, "dataset 's': images folder not found: nope (looked for "
                                                           "{root}/nope)")]),
    ("s:\n  coco: ann/coco.json\n  regions:\n    hot_dog: {box: [0, 0, 2, 2]}",
     [(L + 3, "dataset 's': region 'hot_dog' is declared here and is also annotated on ann/a/a0.png; rename one")]),
    ("s:\n  coco: ann/coco.json\n  labels: folders",
     [(L + 2, "'labels' of a coco: dataset must be largest, got 'folders'")]),
    ("s:\n  voc: voc", [(L + 1, "dataset 's': a voc: dataset needs 'images': the folder its <filename> entries are "
                                "relative to (JPEGImages in the VOC layout)")]),
    ("s:\n  voc: data\n  images: data", [(L + 1, "dataset 's': VOC folder {root}/data holds no .xml annotation "
                                                 "file")]),
    ("s:\n  csv: list.csv\n  labels: folders",
     [(L + 2, "a csv: dataset takes its classes from the CSV's 'label' column; drop 'labels'")]),
    ("s:\n  csv: bad.csv", [(L + 1, "dataset 's': bad.csv: has no 'path' column; columns: file, label")]),
    ("s:\n  csv: ann", [(L + 1, "dataset 's': CSV file is a folder, not a file: ann (looked for {root}/ann)")]),
    ("s:\n  coco: [a.json]", [(L + 1, "dataset 's': 'coco' must be a string, got a list")]),
])
def test_annotation_declaration_errors(tree: Path, body: str, expected: list[tuple[int, str]]) -> None:
    _annotations(tree)
    (tree / "ann" / "broken.json").write_text('{"images": }')
    (tree / "bad.csv").write_text("file,label\na.png,x\n")
    spec = _parse(tree, body)
    assert _errors(spec) == [(line, msg.replace("{root}", str(tree))) for line, msg in expected]
    assert spec.datasets == {}


def test_docs_name_every_dataset_key_and_placeholder() -> None:
    from vitaudit.datasets.assemble import PLACEHOLDERS
    from vitaudit.spec.datasets import DATASET_KEYS, LABELS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "audit-format.md").read_text()
    section = doc.split("## `datasets`", 1)[1].split("\n## ", 1)[0]
    for key in DATASET_KEYS:
        assert f"`{key}`" in section.split("**Mask templates**")[0], key
    for word in ("fail", "skip") + tuple(w for ws in LABELS.values() for w in ws):
        assert f"`{word}`" in section, word
    for name in PLACEHOLDERS:
        assert f"`{{{name}}}`" in section, name


def test_a_region_written_with_spaces_is_named_as_the_loader_names_it(tree: Path) -> None:
    """VOC (like COCO) names become region names with '_': 'hot dog' -> hot_dog; a sentence that
    writes the name with its space cannot parse, and the error says how to write it."""
    _annotations(tree)
    _parse(tree, "voc: {voc: voc, images: data}\n")
    path = tree / "audit_d.yaml"
    path.write_text(path.read_text() + "  - voc: mean m.gradcam mass in hot dog > 0.3\n")
    spec = parse_audit_file(path)
    (err,) = spec.errors
    assert err.message.startswith("cannot parse") and err.message.endswith(
        "; region names have no spaces: write hot_dog for 'hot dog'")
    path.write_text(path.read_text().replace("in hot dog", "in hot_dog"))
    assert parse_audit_file(path).errors == ()
