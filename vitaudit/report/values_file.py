"""Per-image values beside ``audit.json`` when there are many: ``audit.values.parquet``.

A million-image audit would make ``audit.json`` a few hundred megabytes of per-image rows that
dashboards do not want. Beyond :data:`LIMIT` images in one expectation, its per-image list goes
to a Parquet file beside the JSON (one table: ``nodeid``, ``image``, ``value``, ``passed``), and
the expectation's row says where (``per_image_file``, relative to the JSON) and how many
(``per_image_count``). :func:`join` puts the lists back (``vitaudit compare``, ``--audit-compare``).
Both read columns: :func:`split` writes a :class:`~vitaudit.per_image.PerImage` an expectation at a
time without a dict per image, and :func:`join` gives one back.
Without pyarrow (``pip install 'vitaudit[ray]'`` brings it) the lists stay in the JSON.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vitaudit.per_image import PerImage
    from vitaudit.results import RunResults

#: Per-image lists longer than this leave audit.json for the Parquet file.
LIMIT = 10_000


def values_path(json_path: str | Path) -> Path:
    """``reports/audit.values.parquet`` for ``reports/audit.json``."""
    p = Path(json_path)
    return p.with_name(f"{p.stem}.values.parquet")


def split(run: "RunResults", json_path: str | Path, limit: int = LIMIT) -> tuple["RunResults", dict[str, int]]:
    """Write the per-image lists of ``run`` longer than ``limit`` to the Parquet file beside
    ``json_path``; return ``run`` without them and, per node id, how many images each had.

    Done on the run, before the JSON document is built, so that the long lists are never copied."""
    import dataclasses

    import numpy as np

    path = values_path(json_path)
    big = [r for r in run.results if r.per_image and len(r.per_image) > limit]
    if not big:
        path.unlink(missing_ok=True)  # a file of an earlier run would be read as this one's
        return run, {}
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return run, {}

    from vitaudit.per_image import PerImage

    schema = pa.schema([("nodeid", pa.dictionary(pa.int32(), pa.string())), ("image", pa.string()),
                        ("value", pa.float64()), ("passed", pa.bool_())])
    nodeids = pa.array([r.nodeid for r in big], pa.string())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for k, r in enumerate(big):  # one expectation at a time, read column-wise
                cols = PerImage.from_rows(r.per_image)
                n, ok = len(cols), cols.has_value & np.isfinite(cols.value)
                writer.write_table(pa.table({
                    "nodeid": pa.DictionaryArray.from_arrays(pa.array(np.full(n, k, np.int32)), nodeids),
                    "image": pa.array(list(cols.images), pa.string()),
                    "value": pa.array(cols.value, pa.float64(), mask=~ok),
                    "passed": pa.array(cols.passed == 1, pa.bool_(), mask=cols.passed < 0),
                }, schema=schema))
                # The pool (mimalloc) keeps what a row group used; handed back at once, a million
                # images' file costs the driver one expectation's columns at a time, not all of them.
                pa.default_memory_pool().release_unused()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    counts = {r.nodeid: len(r.per_image) for r in big}
    results = [dataclasses.replace(r, per_image=None) if r.nodeid in counts else r for r in run.results]
    return dataclasses.replace(run, results=results), counts


def mark(doc: dict[str, Any], counts: dict[str, int], json_path: str | Path) -> dict[str, Any]:
    """Say in ``doc``'s rows which per-image lists :func:`split` moved, and where."""
    name = values_path(json_path).name
    for row in doc.get("expectations", []):
        if row.get("nodeid") in counts:
            row["per_image"] = None
            row["per_image_file"] = name
            row["per_image_count"] = counts[row["nodeid"]]
    return doc


def join(doc: dict[str, Any], base_dir: str | Path) -> dict[str, Any]:
    """Put back the per-image lists that :func:`split` moved out (rows that name a file)."""
    rows = [r for r in doc.get("expectations", []) if isinstance(r, dict) and r.get("per_image_file")]
    if not rows:
        return doc
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    by_file: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_file.setdefault(str(r["per_image_file"]), []).append(r)
    for name, file_rows in by_file.items():
        table = pq.read_table(Path(base_dir) / name)
        nodeid = pc.cast(table.column("nodeid"), pa.string())
        for r in file_rows:
            r["per_image"] = _columns(table.filter(pc.equal(nodeid, str(r["nodeid"]))))
    return doc


def _columns(table: Any) -> "PerImage":
    """One expectation's rows of the Parquet file as a :class:`~vitaudit.per_image.PerImage`
    (the same dicts as before, read from columns)."""
    import numpy as np

    from vitaudit.per_image import PerImage

    value, passed = table.column("value"), table.column("passed")
    has = ~np.asarray(value.is_null(), dtype=bool)
    checked = ~np.asarray(passed.is_null(), dtype=bool)
    ok = np.asarray(passed.fill_null(False), dtype=bool)
    return PerImage(table.column("image").to_pylist(), value.to_numpy().astype(np.float64), has,
                    np.where(checked, ok.astype(np.int8), np.int8(-1)).astype(np.int8))
