"""Stored baseline maps, in the manner of pytest-regressions: written with a flag, compared after.

A baseline is the heat map at the original image's geometry, downscaled so its longest side is
at most 128 px, stored as float16 ``.npy`` under ``<audit folder>/baselines/<audit file>/``,
one file per (image, map). Small enough to commit; precise enough for similarity checks.

Under ``--audit-update-baselines`` with pytest-xdist, several workers (and several expectations
of one map) may want the same file: each file is written once per run, atomically (a temporary
file renamed over it), under a lock on its folder; a writer that finds the same bytes already
there leaves the file alone, so unchanged baselines keep their timestamps too.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

MAX_SIDE = 128


def _safe(text: str) -> str:
    return re.sub(r"[^\w.@=+-]+", "_", text).strip("_") or "map"  # letters of any script stay


def path_for(audit_file: str, image: str, ref) -> Path:
    """``audits/baselines/audit_pets/goat/vit.attention.npy`` for ``audits/audit_pets.yaml``."""
    audit = Path(audit_file).absolute()
    stem = audit.name[: -len(".yaml")] if audit.name.endswith(".yaml") else audit.stem
    return audit.parent / "baselines" / _safe(stem) / _safe(image) / f"{_safe(ref.label)}.npy"


def shown(path: str | Path) -> str:
    """A path as the user would type it (relative to the working directory when inside it)."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def downscale(heatmap: np.ndarray) -> np.ndarray:
    from vitaudit.metrics import resize_map

    h, w = heatmap.shape
    scale = min(1.0, MAX_SIDE / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize_map(heatmap, size) if size != (h, w) else heatmap


def encode(heatmap: np.ndarray) -> bytes:
    """The ``.npy`` bytes of a heat map's baseline (downscaled, float16)."""
    buf = io.BytesIO()
    np.save(buf, downscale(heatmap).astype(np.float16))
    return buf.getvalue()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (released when the process dies); no-op where flock is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: os.replace is still atomic
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def save(path: Path, heatmap: np.ndarray) -> bool:
    """Write atomically (a temporary file, then rename), unless the same bytes are there already.

    Returns whether the file was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode(heatmap)
    with _locked(path.parent):
        try:
            if path.read_bytes() == data:
                return False
        except OSError:
            pass  # missing (or unreadable): write it
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return True


def load(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    return np.load(path, allow_pickle=False).astype(np.float32)
