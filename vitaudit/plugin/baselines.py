"""Stored baseline maps, in the manner of pytest-regressions: written with a flag, compared after.

A baseline is the heat map at the original image's geometry, downscaled so its longest side is
at most 128 px, stored as float16 ``.npy`` under ``<audit folder>/baselines/<audit file>/``,
one file per (image, map). Small enough to commit; precise enough for similarity checks.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

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


def save(path: Path, heatmap: np.ndarray) -> None:
    """Write atomically (a temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = downscale(heatmap).astype(np.float16)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    return np.load(path, allow_pickle=False).astype(np.float32)
