"""``coco:`` datasets: a COCO instances JSON (``images``, ``annotations``, ``categories``).

Each category is a region of every image that has instances of it: the union of those
instances (:class:`~vitaudit.datasets.regions.CocoRegion`, decoded by pycocotools from
polygons, RLE with compressed or uncompressed counts, or the bbox of an instance without
segmentation). Crowd instances (``iscrowd: 1``, usually uncompressed RLE) count too: their
pixels are pixels of the category. Images keep the JSON's order; ``file_name`` is relative
to ``images_dir``. Only structure is checked here (no image is opened), so the JSON of a
large set loads in the time ``json.load`` takes.

A COCO image has no class of its own. ``labels="largest"`` gives it the category of its
largest non-crowd instance (by ``area``), the usual way to read a detection set as a
classification one; an image without instances then has no class.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from numbers import Real

from vitaudit.storage import Store, is_uri, parent

from .base import DatasetError, Sample
from .paths import Namer, source_for
from .regions import CocoRegion, region_name


def load_coco(json_path: str, *, images_dir: str | None = None, base_dir: str,
              labels: str | None = None, store: Store | None = None) -> list[Sample]:
    """The samples of a COCO JSON (a local file or a URI read through ``store``; so may
    ``images_dir`` be); raise :class:`DatasetError` (field ``coco``) for a file that cannot be
    read or is not COCO instances data (naming the entry at fault)."""
    store = store or Store()
    base = json_path.rstrip("/").rsplit("/", 1)[-1] if is_uri(json_path) else os.path.basename(json_path)
    try:
        if is_uri(json_path):
            data = json.loads(store.read(json_path))
        else:
            with open(json_path, "rb") as fh:
                data = json.load(fh)
    except OSError as exc:
        raise DatasetError(f"cannot read COCO file {json_path}: {exc.strerror or exc}", "coco") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{base} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                           "coco") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{base} is not UTF-8 JSON text", "coco") from None

    def bad(message: str) -> DatasetError:
        return DatasetError(f"{base}: {message}", "coco")

    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise bad("not a COCO instances file (expected an object with an 'images' list)")
    categories = _categories(data.get("categories", []), bad)
    images: dict[object, dict] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            raise bad(f"images[{i}] needs 'id' and 'file_name'")
        h, w = img.get("height"), img.get("width")
        if not (_whole(h) and _whole(w) and h > 0 and w > 0):
            raise bad(f"image {img['id']} ({img['file_name']}) needs positive whole 'height' and 'width'")
        if img["id"] in images:
            raise bad(f"image id {img['id']} appears twice")
        images[img["id"]] = img
    if not images:
        raise bad("lists no images")
    segs: dict[object, dict[str, list[object]]] = defaultdict(lambda: defaultdict(list))
    largest: dict[object, tuple[float, str]] = {}
    for i, ann in enumerate(data.get("annotations", []) or []):
        if not isinstance(ann, dict):
            raise bad(f"annotations[{i}] is not an object")
        aid = ann.get("id", f"#{i}")
        img = images.get(ann.get("image_id"))
        if img is None:
            raise bad(f"annotation {aid} names image_id {ann.get('image_id')!r}, which 'images' does not list")
        name = categories.get(ann.get("category_id"))
        if name is None:
            raise bad(f"annotation {aid} names category_id {ann.get('category_id')!r}, which 'categories' "
                      "does not list")
        segs[img["id"]][name].append(_segmentation(ann, aid, img, bad))
        if labels == "largest" and not ann.get("iscrowd"):
            area = ann.get("area")
            if not isinstance(area, Real):
                bbox = ann.get("bbox") or (0, 0, 0, 0)
                area = float(bbox[2]) * float(bbox[3])
            if img["id"] not in largest or area > largest[img["id"]][0]:
                largest[img["id"]] = (float(area), name)
    namer = Namer(images_dir or parent(json_path), base_dir)
    samples = []
    for i, (iid, img) in enumerate(images.items()):
        path, name = namer.below(img["file_name"])
        size = (int(img["height"]), int(img["width"]))
        where = f"{base}: image {iid} ({img['file_name']})"
        regions = {r: CocoRegion(r, tuple(s), size, where) for r, s in segs.get(iid, {}).items()}
        label = largest[iid][1] if iid in largest else None
        samples.append(Sample(index=i, path=path, name=name, label=label, regions=regions,
                              source=source_for(path, store)))
    return samples


def _whole(v: object) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and float(v).is_integer()


def _categories(cats: object, bad) -> dict[object, str]:
    if not isinstance(cats, list):
        raise bad("'categories' must be a list")
    out: dict[object, str] = {}
    by_name: dict[str, str] = {}
    for i, cat in enumerate(cats):
        if not isinstance(cat, dict) or "id" not in cat or not isinstance(cat.get("name"), str):
            raise bad(f"categories[{i}] needs 'id' and 'name'")
        name = region_name(cat["name"])
        if name in by_name and by_name[name] != cat["name"]:
            raise bad(f"categories '{by_name[name]}' and '{cat['name']}' would both be region '{name}'")
        if cat["id"] in out:
            raise bad(f"category id {cat['id']} appears twice")
        by_name[name] = cat["name"]
        out[cat["id"]] = name
    return out


def _segmentation(ann: dict, aid: object, img: dict, bad) -> object:
    """One instance as :class:`CocoRegion` holds it: polygons, an RLE dict, or a bbox tuple.

    Polygons with fewer than 3 points are dropped (as detectron2 does); an instance left
    with none falls back to its bbox, so it still says where the object is.
    """
    seg = ann.get("segmentation")
    h, w = int(img["height"]), int(img["width"])
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not isinstance(size, list) or len(size) != 2 or not isinstance(counts, (list, str)):
            raise bad(f"annotation {aid}: an RLE segmentation needs 'size' [height, width] and 'counts'")
        if [int(size[0]), int(size[1])] != [h, w]:
            raise bad(f"annotation {aid}: RLE size {size} differs from its image's [height, width] [{h}, {w}]")
        if isinstance(counts, list) and (not all(_whole(c) and c >= 0 for c in counts) or sum(counts) != h * w):
            raise bad(f"annotation {aid}: uncompressed RLE counts must be whole numbers >= 0 adding up to "
                      f"height x width = {h * w}")
        return {"size": [h, w], "counts": counts}
    if isinstance(seg, list) and seg:
        polys = [p for p in seg if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                 and all(isinstance(v, Real) and not isinstance(v, bool) for v in p)]
        if polys:
            return [[float(v) for v in p] for p in polys]
    bbox = ann.get("bbox")
    if (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, Real) and not isinstance(v, bool) for v in bbox)
            and bbox[2] > 0 and bbox[3] > 0):
        return tuple(float(v) for v in bbox)
    what = "no usable polygon" if isinstance(seg, list) and seg else "no segmentation"
    raise bad(f"annotation {aid} has {what} and no bbox [x, y, width, height] with positive size")
