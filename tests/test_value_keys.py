"""Recorded values (``values.json``) keyed by what each expectation measures, stale keys reported and
pruned by ``--audit-update-baselines``, and recordings that do not depend on how pytest ran: values
and ``.npy`` map baselines recorded under ``-n 2`` are byte-identical to serial ones."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vitaudit.audit import value_baselines

SCENES = Path(__file__).resolve().parent.parent / "audits" / "images" / "scenes"

HEAD = """\
models:
  vit: {name: "fixture:vit-scenes"}
  resnet: {name: "fixture:resnet-scenes"}
images:
  striped:
    path: scenes/shortcut_striped_0.png
    regions:
      object: {mask: scenes/shortcut_striped_0_object.png}
  dotted:
    path: scenes/shortcut_dotted_0.png
    regions:
      object: {mask: scenes/shortcut_dotted_0_object.png}
expect:
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "scenes").mkdir(parents=True)
    for stem in ("shortcut_striped_0", "shortcut_dotted_0"):
        for suffix in ("", "_object"):
            shutil.copy(SCENES / f"{stem}{suffix}.png", root / "scenes" / f"{stem}{suffix}.png")
    return root


def _write(project: Path, *lines: str) -> Path:
    path = project / "audit_v.yaml"
    path.write_text(HEAD + "".join(f"  - {line}\n" for line in lines))
    return path


def _pytest(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--audit-no-report", "audit_v.yaml", *args]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600,
                          env=None if env is None else {**os.environ, **env})


def _keys(project: Path) -> list[str]:
    return sorted(json.loads(value_baselines.path_for(project / "audit_v.yaml").read_text())["values"])


def test_other_lines_come_and_go_without_renaming_a_key(project: Path) -> None:
    prob = "striped: vit prob(striped) >= baseline * 0.9"
    mass = "dotted: resnet.gradcam mass in object >= baseline - 0.05"
    _write(project, prob, mass)
    rec = _pytest(project, "--audit-update-baselines")
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert _keys(project) == ["dotted::resnet.gradcam-mass_in[object]", "striped::vit-prob[striped]"]

    # A line that measures the same thing as a later one goes in before it (the later item's id becomes
    # ...-2[...]), another is added, the tolerance changes: every relative line still finds its value.
    _write(project, "striped: vit prob(striped) >= baseline - 0.2", "dotted: vit top1 is dotted",
           prob.replace("0.9", "0.8"), mass)
    run = _pytest(project, "-v")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "striped::vit-prob-2[striped] PASSED" in run.stdout
    assert "no recorded value" not in run.stdout

    # and the first of them goes again
    _write(project, "dotted: vit top1 is dotted", prob, mass)
    run = _pytest(project)
    assert run.returncode == 0, run.stdout + run.stderr


def test_stale_keys_are_reported_and_pruned_by_update_baselines(project: Path) -> None:
    keep = "striped: vit prob(striped) >= baseline * 0.9"
    gone = "dotted: resnet.gradcam mass in object >= baseline - 0.05"
    _write(project, keep, gone)
    assert _pytest(project, "--audit-update-baselines").returncode == 0
    assert len(_keys(project)) == 2

    # Without --audit-update-baselines a stale key is left alone (and said nothing of).
    _write(project, keep, "dotted: resnet top1 is dotted")
    plain = _pytest(project)
    assert plain.returncode == 0 and "no expectation records" not in plain.stdout
    assert len(_keys(project)) == 2

    # An audit file with an error keeps its keys (the broken line may be the one that recorded it).
    _write(project, keep, "dotted: resnet top1 is dotted", "dotted: resnet.gradcam mass in obejct >= baseline - 0.05")
    broken = _pytest(project, "--audit-update-baselines")
    assert "audit_v.yaml: 1 recorded value(s) no expectation records any more, kept (the audit file has errors" \
        in broken.stdout, broken.stdout
    assert len(_keys(project)) == 2

    _write(project, keep, "dotted: resnet top1 is dotted")
    update = _pytest(project, "--audit-update-baselines")
    assert update.returncode == 0, update.stdout + update.stderr
    assert ("audit_v.yaml: 1 recorded value(s) no expectation records any more, pruned: "
            "dotted::resnet.gradcam-mass_in[object]") in update.stdout
    assert _keys(project) == ["striped::vit-prob[striped]"]


def test_values_and_map_baselines_recorded_under_xdist_are_byte_identical_to_serial(project: Path) -> None:
    _write(project,
           '"*": vit.attention mass in object >= baseline - 0.05',
           '"*": resnet.gradcam mass in object >= baseline - 0.05',
           '"*": vit.rollout baseline similarity > 0.9',
           '"*": resnet.gradcam baseline similarity > 0.9',
           "striped: vit prob(striped) >= baseline * 0.9",
           "dotted: resnet prob(dotted) >= baseline * 0.9")
    other = project.parent / "xdist"
    shutil.copytree(project, other)
    # One thread in both, as each of two xdist workers on two cores has by default: some CPUs round
    # a convolution differently with another thread count (1e-7 between 1 and 2 MKL threads on an
    # AVX-512 Xeon), which is not what this test is about (keys, merging and writing).
    one = {"OMP_NUM_THREADS": "1"}
    serial = _pytest(project, "--audit-update-baselines", env=one)
    assert serial.returncode == 0, serial.stdout + serial.stderr
    parallel = _pytest(other, "--audit-update-baselines", "-n", "2", env=one)
    assert parallel.returncode == 0, parallel.stdout + parallel.stderr

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "baselines").rglob("*"))
                if p.is_file()}

    a, b = files(project), files(other)
    assert sorted(a) == sorted(b) and len(a) == 5  # values.json and four maps
    assert [k for k in a if a[k] != b[k]] == []
