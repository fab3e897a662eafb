"""COCO, VOC and CSV loaders: the masks they give, checked against masks drawn here with numpy
slicing (and an RLE encoder written here), and the errors they report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitaudit.datasets.base import DatasetError, RegionSource
from vitaudit.datasets.coco import load_coco
from vitaudit.datasets.csvlist import load_csv
from vitaudit.datasets.voc import load_voc
from vitaudit.regions import RegionError

H, W = 10, 12


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE, written independently: run lengths over the column-major
    (Fortran) flattening, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _box(r0, r1, c0, c1, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


# independently drawn masks
BLOB = _box(5, 9, 6, 11) | _box(7, 10, 2, 6)  # an irregular blob for RLE
CROWD = _box(0, 3, 0, 12) & ~_box(1, 2, 4, 8)  # a band with a hole
L_SHAPE = _box(2, 4, 2, 8) | _box(4, 8, 2, 4)  # polygon (2,2) (8,2) (8,4) (4,4) (4,8) (2,8)


def _coco(tmp_path: Path, **changes) -> Path:
    data = {
        "images": [{"id": 1, "file_name": "a/one.png", "height": H, "width": W},
                   {"id": 2, "file_name": "two.png", "height": H, "width": W},
                   {"id": 3, "file_name": "three.png", "height": H, "width": W}],
        "categories": [{"id": 7, "name": "traffic light"}, {"id": 8, "name": "dog"}, {"id": 9, "name": "cat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "iscrowd": 0, "area": 20,
             "segmentation": [[2, 2, 8, 2, 8, 4, 4, 4, 4, 8, 2, 8]]},
            {"id": 11, "image_id": 1, "category_id": 7, "iscrowd": 0, "area": 32,
             "segmentation": _compressed_rle(BLOB)},
            {"id": 12, "image_id": 1, "category_id": 8, "iscrowd": 0, "area": 30, "bbox": [1, 2, 3, 4]},
            {"id": 13, "image_id": 2, "category_id": 9, "iscrowd": 1, "area": 99,
             "segmentation": _uncompressed_rle(CROWD)},
            {"id": 14, "image_id": 2, "category_id": 8, "iscrowd": 0, "area": 6, "bbox": [9, 7, 5, 5],
             "segmentation": [[1, 1, 2, 2]]},  # degenerate polygon: falls back to the (clipped) bbox
        ],
    }
    data.update(changes)
    path = tmp_path / "ann" / "instances.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_coco_regions_match_drawn_masks(tmp_path: Path) -> None:
    path = _coco(tmp_path)
    samples = load_coco(str(path), images_dir=str(tmp_path / "imgs"), base_dir=str(tmp_path), labels="largest")
    assert [s.name for s in samples] == ["imgs/a/one.png", "imgs/two.png", "imgs/three.png"]
    assert samples[0].path == str(tmp_path / "imgs" / "a" / "one.png")
    one, two, three = samples
    assert sorted(one.regions) == ["dog", "traffic_light"] and sorted(two.regions) == ["cat", "dog"]
    assert three.regions == {}
    assert all(isinstance(r, RegionSource) for s in samples for r in s.regions.values())
    np.testing.assert_array_equal(one.regions["traffic_light"].mask((H, W)), L_SHAPE | BLOB)
    np.testing.assert_array_equal(one.regions["dog"].mask((H, W)), _box(2, 6, 1, 4))
    np.testing.assert_array_equal(two.regions["cat"].mask((H, W)), CROWD)
    np.testing.assert_array_equal(two.regions["dog"].mask((H, W)), _box(7, 10, 9, 12))  # clipped to the image
    # largest non-crowd instance by area; the crowd (area 99) does not name the image
    assert [s.label for s in samples] == ["traffic_light", "dog", None]


def test_coco_each_segmentation_kind_alone(tmp_path: Path) -> None:
    for seg, expected in ((_compressed_rle(BLOB), BLOB), (_uncompressed_rle(BLOB), BLOB),
                          ([[2, 2, 8, 2, 8, 4, 4, 4, 4, 8, 2, 8]], L_SHAPE)):
        path = _coco(tmp_path, annotations=[{"id": 1, "image_id": 3, "category_id": 9, "segmentation": seg}])
        (s,) = [s for s in load_coco(str(path), base_dir=str(tmp_path)) if s.regions]
        assert s.name == "ann/three.png"  # file names default to the JSON's folder
        np.testing.assert_array_equal(s.regions["cat"].mask((H, W)), expected)


def test_coco_region_on_an_image_of_another_size(tmp_path: Path) -> None:
    s = load_coco(str(_coco(tmp_path)), base_dir=str(tmp_path))[0]
    with pytest.raises(RegionError, match=r"^instances.json: image 1 \(a/one.png\): region 'dog' is annotated on "
                                          r"a 12x10 \(WxH\) image but the image is 24x20$"):
        s.regions["dog"].mask((20, 24))
    outside = _coco(tmp_path, annotations=[{"id": 1, "image_id": 1, "category_id": 8, "bbox": [20, 20, 4, 4]}])
    s = load_coco(str(outside), base_dir=str(tmp_path))[0]
    with pytest.raises(RegionError, match="region 'dog' covers no pixel of the image"):
        s.regions["dog"].mask((H, W))


@pytest.mark.parametrize("changes, message", [
    ({"images": [{"id": 1, "file_name": "x.png", "height": 0, "width": 4}]},
     "image 1 (x.png) needs positive whole 'height' and 'width'"),
    ({"images": [{"id": 1, "height": 4, "width": 4}]}, "images[0] needs 'id' and 'file_name'"),
    ({"images": []}, "lists no images"),
    ({"annotations": [{"id": 5, "image_id": 42, "category_id": 7, "bbox": [0, 0, 1, 1]}]},
     "annotation 5 names image_id 42, which 'images' does not list"),
    ({"annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]},
     "annotation 5 names category_id 1, which 'categories' does not list"),
    ({"annotations": [{"id": 5, "image_id": 1, "category_id": 7, "segmentation": {"size": [4, 4], "counts": [16]}}]},
     "annotation 5: RLE size [4, 4] differs from its image's [height, width] [10, 12]"),
    ({"annotations": [{"id": 5, "image_id": 1, "category_id": 7, "segmentation": {"size": [H, W], "counts": [3, 4]}}]},
     "annotation 5: uncompressed RLE counts must be whole numbers >= 0 adding up to height x width = 120"),
    ({"annotations": [{"id": 5, "image_id": 1, "category_id": 7, "segmentation": []}]},
     "annotation 5 has no segmentation and no bbox [x, y, width, height] with positive size"),
    ({"categories": [{"id": 7, "name": "traffic light"}, {"id": 8, "name": "traffic_light"}]},
     "categories 'traffic light' and 'traffic_light' would both be region 'traffic_light'"),
])
def test_coco_errors(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_coco(str(_coco(tmp_path, **changes)), base_dir=str(tmp_path))
    assert str(info.value) == f"instances.json: {message}" and info.value.field == "coco"


def test_coco_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=r"^bad.json is not valid JSON: Expecting property name enclosed in "
                                           r"double quotes \(line 2, column 12\)$"):
        load_coco(str(path), base_dir=str(tmp_path))


VOC_XML = """<annotation>
  <folder>VOC2012</folder>
  <filename>{filename}</filename>
  <size><width>12</width><height>10</height><depth>3</depth></size>
  {objects}
</annotation>
"""


def _obj(name: str, xmin, ymin, xmax, ymax) -> str:
    return (f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def _voc(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "Annotations"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_voc_boxes_are_one_based_inclusive_and_clipped(tmp_path: Path) -> None:
    folder = _voc(tmp_path, {
        "b.xml": VOC_XML.format(filename="b.jpg", objects=_obj("potted plant", 1, 1, 12, 10)),
        "a.xml": VOC_XML.format(filename="a.jpg", objects=_obj("dog", 2, 3, 4, 5) + _obj("dog", 8, 8, 14, 12)
                                + _obj("person", 1, 1, 1, 1)),
        "notes.txt": "not an annotation",
    })
    samples = load_voc(str(folder), images_dir=str(tmp_path / "JPEGImages"), base_dir=str(tmp_path),
                       labels="largest")
    assert [s.name for s in samples] == ["JPEGImages/a.jpg", "JPEGImages/b.jpg"]
    a, b = samples
    # xmin=2..xmax=4 (1-based, inclusive) is columns 1, 2, 3; the second box runs past the border
    np.testing.assert_array_equal(a.regions["dog"].mask((H, W)), _box(2, 5, 1, 4) | _box(7, 10, 7, 12))
    np.testing.assert_array_equal(a.regions["person"].mask((H, W)), _box(0, 1, 0, 1))
    assert b.regions["potted_plant"].mask((H, W)).all()  # 1..W, 1..H is the whole image
    assert [s.label for s in samples] == ["dog", "potted_plant"]
    with pytest.raises(RegionError, match=r"^a.xml \(a.jpg\): region 'dog' is annotated on a 12x10 \(WxH\) image "
                                          r"but the image is 6x5$"):
        a.regions["dog"].mask((5, 6))


@pytest.mark.parametrize("text, message", [
    ("<annotation><filename>a.jpg</filename>\n<object><name>x</name></objec>\n</annotation>",
     r"a.xml: not valid XML at line 2 \(mismatched tag: line 2, column \d+\)"),
    ('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY e "boom">]>\n<annotation><filename>&e;</filename></annotation>',
     r"a.xml: refused: it uses XML entities or a DTD \(EntitiesForbidden\), which an annotation file has no need of"),
    ("<annotation><size><width>4</width></size></annotation>", "a.xml: has no <filename>"),
    ("<root><filename>a.jpg</filename></root>", "a.xml: the root element is <root>, not <annotation>"),
    (VOC_XML.format(filename="a.jpg", objects=_obj("dog", 5, 1, 2, 3)),
     r"a.xml: object 1: <bndbox> has xmax < xmin or ymax < ymin \(5, 1, 2, 3\)"),
    (VOC_XML.format(filename="a.jpg", objects="<object><name>dog</name></object>"), "a.xml: object 1 has no <bndbox>"),
])
def test_voc_errors(tmp_path: Path, text: str, message: str) -> None:
    folder = _voc(tmp_path, {"a.xml": text})
    with pytest.raises(DatasetError, match=f"^{message}$") as info:
        load_voc(str(folder), images_dir=str(tmp_path), base_dir=str(tmp_path))
    assert info.value.field == "voc"


def _mask_png(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(path)


def test_csv_boxes_masks_and_labels(tmp_path: Path) -> None:
    _mask_png(tmp_path / "data" / "masks" / "a.png", BLOB)
    (tmp_path / "data" / "list.csv").write_text(
        "path,label,object,corner\n"
        "imgs/a.png,cat,masks/a.png,0 0 4 3\n"
        "imgs/b.png,,,\"1, 2, 5, 6\"\n"
        "\n")
    samples = load_csv(str(tmp_path / "data" / "list.csv"), base_dir=str(tmp_path))
    assert [(s.name, s.label, sorted(s.regions)) for s in samples] == [
        ("data/imgs/a.png", "cat", ["corner", "object"]), ("data/imgs/b.png", None, ["corner"])]
    np.testing.assert_array_equal(samples[0].regions["object"].mask((H, W)), BLOB)
    np.testing.assert_array_equal(samples[0].regions["corner"].mask((H, W)), _box(0, 3, 0, 4))
    np.testing.assert_array_equal(samples[1].regions["corner"].mask((H, W)), _box(2, 6, 1, 5))
    # a CSV box is held to the audit format's rules, and its error names the CSV line
    with pytest.raises(RegionError, match=r"list.csv:3: region 'corner' box \[1, 2, 5, 6\] extends past the "
                                          r"image's bottom edge \(height 4\)"):
        samples[1].regions["corner"].mask((4, 8))


@pytest.mark.parametrize("text, message", [
    ("Path,label\na.png,x\n", r"has no 'path' column \(did you mean 'Path'\?\); columns: Path, label"),
    ("path,my region\na.png,0 0 1 1\n", "unknown column 'my region': besides path and label, each column is a "
                                        "region, named with letters, digits, '_' and '-' \\(e.g. 'my_region'\\)"),
    ("path,Label\na.png,x\n", "column 'Label' is written 'label' \\(columns path and label are lower case\\)"),
    ("path,obj,obj\na.png,,\n", "column 'obj' appears twice"),
    ("path,obj\na.png,1 2 3\n", "line 2, column 'obj': box '1 2 3' needs 4 numbers 'x0 y0 x1 y1', got 3"),
    ("path,obj\na.png,4 0 2 3\n", "line 2, column 'obj': box '4 0 2 3' must be 'x0 y0 x1 y1' with 0 <= x0 < x1 "
                                  "and 0 <= y0 < y1 \\(pixels\\)"),
    ("path,obj\na.png,m/a.png\nb.png,m/b.png\n", r"2 mask file\(s\) do not exist: m/a.png \(line 2\), m/b.png "
                                                 r"\(line 3\)"),
    ("path,obj\na.png\n", "line 2 has 1 cells but the header names 2 columns"),
    ("path,obj\n,\n", "lists no images"),
    ("path,obj\n ,1 1 2 2\n", "line 2 has an empty 'path'"),
    ("", r"is empty; its first line names the columns \(path, label, then one per region\)"),
])
def test_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(DatasetError, match=f"^list.csv: {message}$") as info:
        load_csv(str(tmp_path / "list.csv"), base_dir=str(tmp_path))
    assert info.value.field == "csv"


@pytest.mark.parametrize("raw, name", [("traffic light", "traffic_light"), ("  hair   drier ", "hair_drier"),
                                       ("t-shirt/top", "t-shirt_top"), ("10", "_10"), ("dog", "dog")])
def test_region_names_from_annotation_names(raw: str, name: str) -> None:
    from vitaudit.datasets.regions import region_name

    assert region_name(raw) == name


@pytest.mark.parametrize("rel, path, name", [
    ("a/b.png", "data/a/b.png", "data/a/b.png"), ("./a/b.png", "data/a/b.png", "data/a/b.png"),
    ("a//b.png", "data/a/b.png", "data/a/b.png"), ("a/../b.png", "data/b.png", "data/b.png"),
    ("../x.png", "x.png", "x.png"), ("../../up.png", "../up.png", "../up.png"), ("a\\b.png", "data/a/b.png", "data/a/b.png"),
    (".hidden/c.png", "data/.hidden/c.png", "data/.hidden/c.png"),
])
def test_sample_paths_and_names(tmp_path: Path, rel: str, path: str, name: str) -> None:
    """Names are relative to the audit file's folder, normalised, with '/' separators."""
    import os

    from vitaudit.datasets.paths import Namer

    base = tmp_path / "audit"
    got_path, got_name = Namer(str(base / "data"), str(base)).below(rel)
    assert got_path == os.path.normpath(str(base / path)) and got_name == name
