"""The probe run of ``vitaudit init``: one dataset pass, by the plugin itself, and what it measured.

The probe audit (the plan's sentences on the dataset) is written where the drafted audit will be,
and ``pytest <it> --audit-update-baselines`` runs in a child process, with the pass's progress line
passed through: every expectation of the file shares one pass over the images, relative thresholds
record their values and intervals in ``baselines/<file>/values.json`` (the drafted file's), and
``audit.json`` gives every row's value and interval. The objects' share of each image (what a
uniform map would put in them) is counted here from the dataset's own masks.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .source import InitError

_PROGRESS = re.compile(r"\d+/\d+ images")


@dataclass
class Measured:
    """What the probe run gave: audit.json rows by (text as written, class), and the regions' areas."""

    rows: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    area: dict[str, float] = field(default_factory=dict)  # region -> mean share of the image it covers
    area_by_class: dict[str, dict[str, float]] = field(default_factory=dict)  # region -> class -> share
    n_images: int = 0
    classes: tuple[str, ...] = ()

    def row(self, text: str, group: str | None = None) -> dict[str, Any] | None:
        return self.rows.get((text, group))

    def classes_of(self, text: str) -> dict[str, dict[str, Any]]:
        return {g: r for (t, g), r in self.rows.items() if t == text and g is not None}


def run_probe(audit: Path, say: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict[tuple[str, str | None], dict[str, Any]]:
    """Run pytest on ``audit`` recording values (``--audit-update-baselines``); its audit.json rows."""
    with tempfile.TemporaryDirectory(prefix="vitaudit-init-") as tmp:
        report = Path(tmp) / "probe.html"
        cmd = [sys.executable, "-m", "pytest", audit.name, "--audit-update-baselines", "--audit-report", str(report),
               "-q", "-p", "no:cacheprovider", "--rootdir", str(audit.parent), "-o", "addopts=", "--tb=line"]
        env = dict(os.environ)
        proc = subprocess.Popen(cmd, cwd=audit.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, bufsize=1)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            for part in line.replace("\r", "\n").splitlines():
                if _PROGRESS.search(part):
                    say(f"  {part.strip()}")
                tail = (tail + [part])[-30:]
        code = proc.wait()
        doc_path = report.with_suffix(".json")
        if not doc_path.is_file():
            raise InitError(f"the probe run of {audit} wrote no report (pytest exit {code}): "
                            + " | ".join(x for x in tail if x.strip())[-800:])
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    rows = {}
    for r in doc["expectations"]:
        if r.get("outcome") == "error":
            raise InitError(f"{r.get('file')}:{r.get('line')}: {r.get('text')}: {r.get('message')}")
        rows[(str(r["text"]), r.get("group"))] = r
    return rows


def region_areas(dataset, regions: list[str]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean share of each image that each region covers, over the images that have it (and per class):
    what a uniform map would put in it."""
    from PIL import Image

    sums: dict[str, list[float]] = {r: [] for r in regions}
    by_class: dict[str, dict[str, list[float]]] = {r: {} for r in regions}
    for s in dataset.samples:
        with Image.open(s.path) as im:
            w, h = im.size
        for r in regions:
            if r not in s.regions:
                continue
            share = float(np.asarray(s.regions[r].mask((h, w)), dtype=bool).mean())
            sums[r].append(share)
            if s.label is not None:
                by_class[r].setdefault(s.label, []).append(share)
    area = {r: float(np.mean(v)) for r, v in sums.items() if v}
    area_by_class = {r: {c: float(np.mean(v)) for c, v in sorted(cs.items())} for r, cs in by_class.items()}
    return area, area_by_class
