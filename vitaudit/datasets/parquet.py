"""``parquet:`` datasets: one row per image in Parquet files (a file, a folder of part files, or
a glob), local or at a URI; the layout Spark, Ray Data and the ``datasets`` library write.

Declaring the dataset reads only the footers and the columns that are not pixels (label,
boxes, objects, key: see :mod:`.tables`); the image and mask columns are read when the dataset
pass decodes, one row group at a time (:class:`ParquetCell`, through a small shared cache), so
memory stays bounded by a few row groups whatever the number of rows. Rows keep the files'
order (files sorted by path). Class names of integer labels come from ``classes:``, or from the
``datasets`` feature metadata a table written by that library carries.
"""
from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass, field

from vitaudit.regions import Region
from vitaudit.storage import Store, is_uri, join, parent

from .base import DatasetError, Sample
from .paths import Namer, first_few, source_for
from .regions import FetchedMask
from .tables import ChunkCache, Columns, boxes_region, hf_names, image_bytes, label_of, object_regions

_CHUNKS = ChunkCache(3)


def parquet_files(spec: str, store: Store) -> tuple[list[str], str]:
    """The part files ``spec`` names (a file, a folder: every ``*.parquet`` below it, or a glob),
    sorted, and the folder they are named relative to."""
    wild = any(c in spec for c in "*?[")
    try:
        if is_uri(spec):
            if wild:
                files = store.glob(spec)
                root = parent(spec.split("*")[0] + "x")
            elif store.kind(spec) == "directory":
                root = spec.rstrip("/")
                files = [join(root, r) for r in store.find(spec, (".parquet",))]
            else:
                files, root = ([spec], parent(spec)) if store.kind(spec) == "file" else ([], parent(spec))
        elif wild:
            files = sorted(globlib.glob(spec, recursive=True))
            root = os.path.dirname(spec.split("*")[0] + "x")
        elif os.path.isdir(spec):
            root = spec
            files = sorted(os.path.join(d, f) for d, _, fs in os.walk(spec) for f in fs if f.endswith(".parquet"))
        else:
            files, root = ([spec] if os.path.isfile(spec) else []), os.path.dirname(spec)
    except OSError as exc:
        raise DatasetError(f"cannot list Parquet files {spec}: {exc}", "parquet") from None
    if not files:
        raise DatasetError(f"no Parquet file found at {spec} (a file, a folder of *.parquet parts, or a glob)",
                           "parquet")
    return files, root


def open_parquet(path: str, store: Store):
    """A ``pyarrow.parquet.ParquetFile`` on a local path or a URI (ranged reads through fsspec)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError("parquet: datasets need pyarrow; pip install 'vitaudit[tables]'", "parquet") from None
    return pq.ParquetFile(store.open(path) if is_uri(path) else path)


@dataclass(frozen=True)
class ParquetCell:
    """One cell of an image (or mask) column: row ``row`` of row group ``row_group`` of ``file``."""

    file: str
    row_group: int
    row: int
    column: str
    store: Store = field(default_factory=Store, repr=False)

    def read(self) -> bytes:
        def load():
            pf = open_parquet(self.file, self.store)
            return pf.read_row_group(self.row_group, columns=[self.column]).column(0).to_pylist()

        cells = _CHUNKS.get((self.file, self.row_group, self.column), load)
        folder = parent(self.file)

        def resolve(p: str) -> bytes:
            target = p if is_uri(p) or os.path.isabs(p) else join(folder, p)
            return self.store.read(target) if is_uri(target) else open(target, "rb").read()

        return image_bytes(cells[self.row], resolve, f"{self.file}#{self.row}")


def load_parquet(spec: str, columns: Columns, *, base_dir: str, store: Store | None = None
                 ) -> tuple[list[Sample], str]:
    """The samples of the Parquet rows ``spec`` names, and the folder they are named below;
    raise :class:`DatasetError` naming a missing column (and those there are) or a bad cell."""
    store = store or Store()
    files, root = parquet_files(spec, store)
    namer = Namer(root, base_dir)
    named = []
    for file in files:
        rel = file[len(root) + 1:] if file.startswith(root.rstrip("/") + "/") or file.startswith(root + os.sep) \
            else file.rsplit("/", 1)[-1]
        named.append((file, namer.name(namer.below(rel)[0])))
    return parquet_samples(named, columns, store), root


def parquet_samples(files: list[tuple[str, str]], columns: Columns, store: Store) -> list[Sample]:
    """The samples of Parquet files given as ``(path or URI, name shown in reports)``, in order
    (``parquet:``, and the files of a hub dataset's split for ``hf:``)."""
    samples: list[Sample] = []
    for file, shown in files:
        try:
            pf = open_parquet(file, store)
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors come in several classes
            raise DatasetError(f"cannot read Parquet file {file}: {exc}", "parquet") from None
        samples.extend(table_samples(pf.schema_arrow, columns, file, shown, store, len(samples),
                                     ((rg, pf.metadata.row_group(rg).num_rows) for rg in range(pf.num_row_groups)),
                                     lambda rg, cols, pf=pf: pf.read_row_group(rg, columns=cols), ParquetCell))
    return samples


def table_samples(schema, columns: Columns, file: str, shown: str, store: Store, first: int, groups,
                  read_group, cell) -> list[Sample]:
    """The samples of one table file: ``groups`` yields ``(chunk, rows)``, ``read_group(chunk,
    names)`` the non-pixel columns of a chunk as an Arrow table, ``cell(file, chunk, row,
    column, store)`` a source for an image or mask cell. Shared by ``parquet:`` and ``hf:``."""
    names = list(schema.names)
    wanted = [columns.image, *columns.meta(), *columns.masks.values()]
    missing = [c for c in dict.fromkeys(wanted) if c not in names]
    if missing:
        raise DatasetError(f"{shown} has no column {first_few([repr(m) for m in missing])}; its columns: "
                           f"{', '.join(names)}", "columns")
    meta = schema.metadata
    label_names = columns.classes or (hf_names(meta, columns.label) if columns.label else ())
    object_names = columns.classes or (hf_names(meta, columns.objects, "category") if columns.objects else ())
    path_images = _is_text(schema.field(columns.image).type)
    read_cols = columns.meta() + ([columns.image] if path_images else [])
    folder = parent(file)
    out: list[Sample] = []
    row_in_file = 0
    for chunk, n_rows in groups:
        values = read_group(chunk, read_cols).to_pydict() if read_cols else {}
        for row in range(n_rows):
            where = f"{shown}#{row_in_file}"
            key = values[columns.key][row] if columns.key else None
            name = str(key) if key is not None else where
            regions: dict[str, object] = {}
            if columns.objects:
                regions.update(object_regions(values[columns.objects][row], object_names, columns.box_format, where))
            for region, col in columns.boxes.items():
                found = boxes_region(region, values[col][row], columns.box_format, where)
                if found is not None:
                    regions[region] = found
            for region, col in columns.masks.items():
                mask_of = Region(region, "mask", (), "px", f"{where} column {col}", shown, 0)
                regions[region] = FetchedMask(mask_of, cell(file, chunk, row, col, store))
            label = label_of(values[columns.label][row], label_names, where) if columns.label else None
            if path_images:
                rel = values[columns.image][row]
                if not rel:
                    raise DatasetError(f"{where}: column '{columns.image}' is empty", "columns")
                path = rel if is_uri(rel) or os.path.isabs(rel) else join(folder, rel)
                source = source_for(path, store)
            else:
                path, source = f"{file}#{row_in_file}", cell(file, chunk, row, columns.image, store)
            out.append(Sample(index=first + len(out), path=path, name=name, label=label, regions=regions,
                              source=source))
            row_in_file += 1
    return out


def _is_text(dtype) -> bool:
    import pyarrow as pa

    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
