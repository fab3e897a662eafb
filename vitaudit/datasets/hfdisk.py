"""``hf:`` datasets: a folder the Hugging Face ``datasets`` library wrote with ``save_to_disk``
(``state.json`` and Arrow stream files), local or at a URI.

Read with pyarrow alone (the ``datasets`` package is not needed): each Arrow file is
memory-mapped, so declaring the dataset touches only the columns that are not pixels, and the
dataset pass reads one image cell at a time. Files at a URI are fetched once into the store's
``cache`` (or ``~/.cache/vitaudit/objects``) and mapped from there. The features the files'
schema metadata records say the class names of ``ClassLabel`` columns (labels,
``objects.category``); images are ``{bytes, path}`` structs (the ``Image`` feature). For a ``DatasetDict`` folder, name the split's folder
(``hf: data/my_set/validation``). Column mapping: :mod:`.tables`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from vitaudit.storage import Store, is_uri, join, local_copy, parent

from .base import DatasetError, Sample
from .paths import Namer
from .parquet import table_samples
from .tables import ChunkCache, Columns, image_bytes

_TABLES = ChunkCache(8)  # memory-mapped: costs address space, not memory


def _local(path: str, store: Store) -> str:
    return local_copy(path, store) if is_uri(path) else path


def _table(path: str, store: Store):
    import pyarrow as pa

    def load():
        return pa.ipc.open_stream(pa.memory_map(_local(path, store))).read_all()

    return _TABLES.get(("hf", path), load)


@dataclass(frozen=True)
class ArrowCell:
    """One cell of an image (or mask) column of an Arrow file of a ``save_to_disk`` folder."""

    file: str
    chunk: int  # unused (one chunk per file); kept for the cell signature tables share
    row: int
    column: str
    store: Store = field(default_factory=Store, repr=False)

    def read(self) -> bytes:
        value = _table(self.file, self.store).column(self.column)[self.row].as_py()
        folder = parent(self.file)

        def resolve(p: str) -> bytes:
            target = p if is_uri(p) or os.path.isabs(p) else join(folder, p)
            return self.store.read(target) if is_uri(target) else open(target, "rb").read()

        return image_bytes(value, resolve, f"{self.file}#{self.row}")


def load_hf(folder: str, columns: Columns, *, base_dir: str, store: Store | None = None
            ) -> tuple[list[Sample], str]:
    """The samples of a ``save_to_disk`` folder; raise :class:`DatasetError` (field ``hf``) for
    a folder that is not one, naming what is missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DatasetError("hf: datasets need pyarrow; pip install 'vitaudit[tables]'", "hf") from None
    store = store or Store()

    def text(name: str) -> str | None:
        path = join(folder, name)
        try:
            return store.read(path).decode("utf-8") if is_uri(path) else open(path, encoding="utf-8").read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatasetError(f"cannot read {path}: {exc}", "hf") from None

    state = text("state.json")
    if state is None:
        splits = text("dataset_dict.json")
        if splits is not None:
            names = json.loads(splits).get("splits", [])
            raise DatasetError(f"{folder} holds a DatasetDict; name one split's folder, e.g. hf: "
                               f"{join(folder, names[0]) if names else folder + '/<split>'}", "hf")
        raise DatasetError(f"{folder} is not a folder written by datasets' save_to_disk (no state.json)", "hf")
    try:
        files = [join(folder, f["filename"]) for f in json.loads(state)["_data_files"]]
    except (ValueError, KeyError, TypeError):
        raise DatasetError(f"{join(folder, 'state.json')} does not list '_data_files'", "hf") from None
    namer = Namer(folder, base_dir)
    samples: list[Sample] = []
    for file in files:
        rel = file.rsplit("/", 1)[-1]
        shown = namer.name(namer.below(rel)[0])
        try:
            table = _table(file, store)
        except Exception as exc:  # noqa: BLE001 - pyarrow's and storage's errors
            raise DatasetError(f"cannot read Arrow file {file}: {exc}", "hf") from None
        samples.extend(table_samples(table.schema, columns, file, shown, store, len(samples),
                                     [(0, table.num_rows)], lambda _c, cols, t=table: t.select(cols), ArrowCell))
    return samples, folder

