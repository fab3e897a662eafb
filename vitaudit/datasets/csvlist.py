"""``csv:`` datasets: a manifest with one row per image.

Columns: ``path`` (required), ``label`` (optional), and one column per region, whose cell is a
box ``"x0 y0 x1 y1"`` (pixels, spaces or commas between) or a mask file; an empty cell means
the image lacks that region. Paths in the CSV are relative to the CSV's folder, so a manifest
travels with its images. Rows keep the file's order. Regions from a CSV are held to the same
rules as boxes and masks written in an audit file (:mod:`vitaudit.regions`), and say the CSV
line they came from when they cannot be rasterised.
"""
from __future__ import annotations

import csv
import io
import os
import re

from vitaudit.regions import Region
from vitaudit.storage import Store, is_uri, join, parent

from .base import DatasetError, Sample
from .paths import FileIndex, Namer, first_few, source_for
from .regions import Declared, region_name, uri_mask

_NUMBER_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_BOX_RE = re.compile(r"^\s*([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)\s*$")


def load_csv(csv_path: str, *, base_dir: str, store: Store | None = None) -> list[Sample]:
    """The samples of a CSV manifest (a local file or a URI read through ``store``; its cells
    may be URIs too); raise :class:`DatasetError` (field ``csv``) naming the CSV line and
    column at fault."""
    store = store or Store()
    base = csv_path.rsplit("/", 1)[-1] if is_uri(csv_path) else os.path.basename(csv_path)
    root = parent(csv_path)

    def bad(message: str) -> DatasetError:
        return DatasetError(f"{base}: {message}", "csv")

    try:
        if is_uri(csv_path):
            fh = io.StringIO(store.read(csv_path).decode("utf-8-sig"), newline="")
        else:
            fh = open(csv_path, newline="", encoding="utf-8-sig")
        with fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader]
    except OSError as exc:
        raise bad(f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise bad("is not UTF-8 text") from None
    except csv.Error as exc:
        raise bad(f"is not valid CSV: {exc}") from None
    if not header:
        raise bad("is empty; its first line names the columns (path, label, then one per region)")
    columns = [c.strip() for c in header]
    _check_columns(columns, bad)
    path_at = columns.index("path")
    label_at = columns.index("label") if "label" in columns else None
    region_at = [(i, c) for i, c in enumerate(columns) if c not in ("path", "label")]
    namer = Namer(root, base_dir)
    index = FileIndex(store)
    missing: list[str] = []
    samples = []
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue  # blank lines, as spreadsheets leave them at the end
        if len(row) != len(columns):
            raise bad(f"line {line} has {len(row)} cells but the header names {len(columns)} columns")
        rel = row[path_at].strip()
        if not rel:
            raise bad(f"line {line} has an empty 'path'")
        path, name = namer.below(rel)
        regions = {}
        for i, column in region_at:
            cell = row[i].strip()
            if not cell:
                continue
            region = _cell_region(column, cell, root, csv_path, line, bad)
            if region.kind == "mask" and not index.exists(region.mask_path or ""):
                missing.append(f"{cell} (line {line})")
            regions[column] = uri_mask(region, store) if is_uri(region.mask_path or "") else Declared(region)
        label = row[label_at].strip() if label_at is not None else ""
        samples.append(Sample(index=len(samples), path=path, name=name, label=label or None, regions=regions,
                              source=source_for(path, store)))
    if missing:
        raise bad(f"{len(missing)} mask file(s) do not exist: {first_few(missing)}")
    if not samples:
        raise bad("lists no images")
    return samples


def _check_columns(columns: list[str], bad) -> None:
    from vitaudit.spec.errors import did_you_mean  # messages only

    if "path" not in columns:
        raise bad(f"has no 'path' column{did_you_mean('path', columns)}; columns: {', '.join(columns)}")
    for i, column in enumerate(columns):
        if not column:
            raise bad(f"column {i + 1} has no name")
        if columns.index(column) != i:
            raise bad(f"column '{column}' appears twice")
        if column.lower() in ("path", "label") and column not in ("path", "label"):
            raise bad(f"column '{column}' is written '{column.lower()}' (columns path and label are lower case)")
        if column not in ("path", "label") and (region_name(column) != column or column.lower() == "not"):
            raise bad(f"unknown column '{column}': besides path and label, each column is a region, "
                      f"named with letters, digits, '_' and '-' (e.g. '{region_name(column)}')")


def _cell_region(column: str, cell: str, root: str, csv_path: str, line: int, bad) -> Region:
    """A box (4 numbers) or a mask file (anything else) from one cell."""
    m = _BOX_RE.match(cell)
    if m:
        try:
            x0, y0, x1, y1 = (float(v) for v in m.groups())
        except ValueError:
            raise bad(f"line {line}, column '{column}': box '{cell}' holds a value that is not a number") from None
        if not all(v == v and abs(v) != float("inf") for v in (x0, y0, x1, y1)):
            raise bad(f"line {line}, column '{column}': box '{cell}' must hold finite numbers")
        if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0:
            raise bad(f"line {line}, column '{column}': box '{cell}' must be 'x0 y0 x1 y1' with 0 <= x0 < x1 "
                      "and 0 <= y0 < y1 (pixels)")
        return Region(column, "box", ((x0, y0), (x1, y1)), "px", None, csv_path, line)
    parts = [p for p in re.split(r"[\s,]+", cell) if p]
    if all(_NUMBER_RE.fullmatch(p) for p in parts):
        raise bad(f"line {line}, column '{column}': box '{cell}' needs 4 numbers 'x0 y0 x1 y1', got {len(parts)}")
    path = cell if is_uri(cell) else join(root, cell)
    return Region(column, "mask", (), "px", path, csv_path, line)
