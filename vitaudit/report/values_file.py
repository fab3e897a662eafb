"""Per-image values beside ``audit.json`` when there are many: ``audit.values.parquet``.

A million-image audit would make ``audit.json`` a few hundred megabytes of per-image rows that
dashboards do not want. Beyond :data:`LIMIT` images in one expectation, its per-image list goes
to a Parquet file beside the JSON (one table: ``nodeid``, ``image``, ``value``, ``passed``), and
the expectation's row says where (``per_image_file``, relative to the JSON) and how many
(``per_image_count``). :func:`join` puts the lists back (``vitaudit compare``, ``--audit-compare``).
Without pyarrow (``pip install 'vitaudit[ray]'`` brings it) the lists stay in the JSON.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

#: Per-image lists longer than this leave audit.json for the Parquet file.
LIMIT = 10_000


def values_path(json_path: str | Path) -> Path:
    """``reports/audit.values.parquet`` for ``reports/audit.json``."""
    p = Path(json_path)
    return p.with_name(f"{p.stem}.values.parquet")


def split(doc: dict[str, Any], json_path: str | Path, limit: int = LIMIT) -> dict[str, Any]:
    """Move the long per-image lists of ``doc``'s rows to the Parquet file beside ``json_path``."""
    path = values_path(json_path)
    rows = [r for r in doc.get("expectations", []) if r.get("per_image") and len(r["per_image"]) > limit]
    if not rows:
        path.unlink(missing_ok=True)  # a file of an earlier run would be read as this one's
        return doc
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return doc
    nodeids, images, values, passed = [], [], [], []
    for r in rows:
        for p in r["per_image"]:
            nodeids.append(r["nodeid"])
            images.append(p.get("image"))
            values.append(p.get("value"))
            passed.append(p.get("passed"))
    table = pa.table({"nodeid": pa.array(nodeids, pa.string()).dictionary_encode(),
                      "image": pa.array(images, pa.string()), "value": pa.array(values, pa.float64()),
                      "passed": pa.array(passed, pa.bool_())})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for r in rows:
        r["per_image_count"] = len(r["per_image"])
        r["per_image"] = None
        r["per_image_file"] = path.name
    return doc


def join(doc: dict[str, Any], base_dir: str | Path) -> dict[str, Any]:
    """Put back the per-image lists that :func:`split` moved out (rows that name a file)."""
    rows = [r for r in doc.get("expectations", []) if isinstance(r, dict) and r.get("per_image_file")]
    if not rows:
        return doc
    import pyarrow.parquet as pq

    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_file.setdefault(str(r["per_image_file"]), []).append(r)
    for name, file_rows in by_file.items():
        table = pq.read_table(Path(base_dir) / name).to_pydict()
        lists: dict[str, list[dict[str, Any]]] = {}
        for nodeid, image, value, ok in zip(table["nodeid"], table["image"], table["value"], table["passed"]):
            lists.setdefault(nodeid, []).append({"image": image, "value": value, "passed": ok})
        for r in file_rows:
            r["per_image"] = lists.get(r["nodeid"], [])
    return doc
