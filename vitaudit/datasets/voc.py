"""``voc:`` datasets: a folder of Pascal VOC XML annotation files, one per image.

Each ``<object>``'s ``<name>`` is a region: the union of that image's boxes of that name
(:class:`~vitaudit.datasets.regions.BoxesRegion`). VOC boxes are 1-based inclusive pixel
indices, so ``xmin=1, xmax=W`` is the whole width; like detectron2 we read them as the
pixel-edge box ``[xmin - 1, ymin - 1, xmax, ymax]``. Files are taken in sorted name order;
``<filename>`` is relative to ``images_dir``. XML is read with defusedxml, which refuses
entity expansion and external references: annotation files come from outside.

``labels="largest"`` gives an image the name of its largest box (VOC images have no class).
"""
from __future__ import annotations

import os
from collections import defaultdict

from vitaudit.storage import Store, is_uri, join

from .base import DatasetError, Sample
from .paths import Namer, source_for
from .regions import BoxesRegion, region_name


def load_voc(xml_dir: str, *, images_dir: str, base_dir: str, labels: str | None = None,
             store: Store | None = None) -> list[Sample]:
    """The samples of every ``*.xml`` in ``xml_dir`` (a local folder or a URI prefix read through
    ``store``; so may ``images_dir`` be); raise :class:`DatasetError` (field ``voc``) naming the
    file (and line, for malformed XML) at fault."""
    import io

    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    store = store or Store()
    try:
        if is_uri(xml_dir):
            files = [f for f in store.find(xml_dir, (".xml",)) if "/" not in f]
        else:
            files = sorted(f for f in os.listdir(xml_dir) if f.lower().endswith(".xml"))
    except OSError as exc:
        raise DatasetError(f"cannot list VOC folder {xml_dir}: {exc.strerror or exc}", "voc") from None
    if not files:
        raise DatasetError(f"VOC folder {xml_dir} holds no .xml annotation file", "voc")
    namer = Namer(images_dir, base_dir)
    fetched: dict[str, bytes] = {}
    if is_uri(xml_dir):  # one round of concurrent requests, not one request after another
        try:
            fetched = dict(zip(files, store.read_many([join(xml_dir, f) for f in files])))
        except OSError as exc:
            raise DatasetError(f"cannot read VOC annotations in {xml_dir}: {exc}", "voc") from None
    samples = []
    for i, fname in enumerate(files):
        def bad(message: str, fname: str = fname) -> DatasetError:
            return DatasetError(f"{fname}: {message}", "voc")

        try:
            root = ET.parse(io.BytesIO(fetched[fname]) if fname in fetched else os.path.join(xml_dir, fname)).getroot()
        except ET.ParseError as exc:
            line = getattr(exc, "position", (0, 0))[0]
            raise bad(f"not valid XML at line {line} ({exc.msg if hasattr(exc, 'msg') else exc})") from None
        except DefusedXmlException as exc:
            raise bad(f"refused: it uses XML entities or a DTD ({type(exc).__name__}), which an annotation "
                      "file has no need of") from None
        except OSError as exc:
            raise bad(f"cannot be read: {exc.strerror or exc}") from None
        if root.tag != "annotation":
            raise bad(f"the root element is <{root.tag}>, not <annotation>")
        filename = (root.findtext("filename") or "").strip()
        if not filename:
            raise bad("has no <filename>")
        size = _size(root, bad)
        boxes: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
        best: tuple[float, str] | None = None
        for k, obj in enumerate(root.iter("object"), 1):
            raw = (obj.findtext("name") or "").strip()
            if not raw:
                raise bad(f"object {k} has no <name>")
            box = _box(obj, k, bad)
            name = region_name(raw)
            boxes[name].append(box)
            area = (box[2] - box[0]) * (box[3] - box[1])
            if best is None or area > best[0]:
                best = (area, name)
        path, name = namer.below(filename)
        where = f"{fname} ({filename})"
        regions = {r: BoxesRegion(r, tuple(b), size, where) for r, b in boxes.items()}
        label = best[1] if labels == "largest" and best is not None else None
        samples.append(Sample(index=i, path=path, name=name, label=label, regions=regions,
                              source=source_for(path, store)))
    return samples


def _size(root, bad) -> tuple[int, int] | None:
    """``(height, width)`` from ``<size>`` when it states a positive one (some tools write 0)."""
    node = root.find("size")
    if node is None:
        return None
    try:
        w, h = int(float(node.findtext("width") or 0)), int(float(node.findtext("height") or 0))
    except ValueError:
        raise bad("<size> holds a width or height that is not a number") from None
    return (h, w) if h > 0 and w > 0 else None


def _box(obj, k: int, bad) -> tuple[float, float, float, float]:
    node = obj.find("bndbox")
    if node is None:
        raise bad(f"object {k} has no <bndbox>")
    try:
        xmin, ymin, xmax, ymax = (float(node.findtext(t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError:
        raise bad(f"object {k}: <bndbox> holds a value that is not a number") from None
    if any(v != v for v in (xmin, ymin, xmax, ymax)):
        raise bad(f"object {k}: <bndbox> needs xmin, ymin, xmax and ymax")
    if xmax < xmin or ymax < ymin:
        raise bad(f"object {k}: <bndbox> has xmax < xmin or ymax < ymin ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})")
    return (xmin - 1.0, ymin - 1.0, xmax, ymax)
