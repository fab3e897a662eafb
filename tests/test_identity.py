"""One identity per expectation, however pytest runs the audit: serially, under ``-n 2 --dist
loadgroup``, and with another rootdir (``--rootdir`` above the project and a separate
``--audit-compare ../elsewhere/audit.json``, which pytest takes as a path to find its rootdir from).
``vitaudit compare`` between any two of those runs finds nothing added, removed or changed, and the
ids in ``audit.json``, JUnit's ``id`` property and the failure lines are the same."""
from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from test_dataset_plugin import PICKED, SCENES  # noqa: F401  (also warms up torch before in-process runs)

AUDIT = """\
models:
  cnn: {name: "fixture:resnet-scenes"}
images:
  first:
    path: data/striped/00000.png
    regions:
      object: {mask: masks/00000.png}
datasets:
  scenes:
    folder: data
    labels: folders
    regions:
      object: {mask: "masks/{stem}.png"}
expect:
  - first: cnn.gradcam mass in object > 0.2
  - first: cnn.gradcam mass in object > 0.99
  - scenes: cnn accuracy > 0.5
  - scenes: mean cnn.gradcam mass in object > 0.1
  - scenes: cnn.gradcam mass in object > 0.2 for 50% of images per class
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for c, stems in PICKED.items():
        for stem in stems:
            (root / "data" / c).mkdir(parents=True, exist_ok=True)
            (root / "masks").mkdir(exist_ok=True)
            shutil.copy(SCENES / "clean" / c / f"{stem}.png", root / "data" / c / f"{stem}.png")
            shutil.copy(SCENES / "masks" / f"{stem}.png", root / "masks" / f"{stem}.png")
    (root / "audit_x.yaml").write_text(AUDIT)
    (tmp_path / "elsewhere").mkdir()
    return root


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "audit_x.yaml", *args]
    return subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=600)


def _compare(old: Path, new: Path, cwd: Path) -> dict:
    cmd = [sys.executable, "-m", "vitaudit.cli", "compare", str(old), str(new), "--format", "json"]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_compare_across_serial_xdist_and_another_rootdir_finds_no_change(project: Path) -> None:
    elsewhere = project.parent / "elsewhere"
    runs = {
        "serial": ["--audit-report", "serial/audit.html", "--junitxml", "serial/junit.xml"],
        "xdist": ["-n", "2", "--dist", "loadgroup", "--audit-report", "xdist/audit.html", "--junitxml", "xdist/junit.xml"],
    }
    outputs = {name: _pytest(project, *args) for name, args in runs.items()}
    shutil.copy(project / "serial" / "audit.json", elsewhere / "audit.json")
    outputs["rootdir"] = _pytest(project, "--rootdir", str(project.parent), "--audit-compare", "../elsewhere/audit.json",
                                 "--audit-report", "rootdir/audit.html", "--junitxml", "rootdir/junit.xml")
    for name, out in outputs.items():
        assert out.returncode == 1, out.stdout + out.stderr  # one expectation fails on purpose
        assert "1 failed, 8 passed" in out.stdout, out.stdout
    # pytest's own ids did move (that is what this test is about)...
    assert "rootdir: " + str(project.parent) in outputs["rootdir"].stdout
    classnames = {c.get("classname") for c in ET.parse(project / "rootdir" / "junit.xml").getroot().iter("testcase")}
    assert classnames == {"project.audit_x.yaml.first", "project.audit_x.yaml.scenes"}
    assert "@audit_x.yaml:scenes" in outputs["xdist"].stdout, outputs["xdist"].stdout[-3000:]
    # ...the failure line did not: the audit file relative to the project
    for out in outputs.values():
        assert "\naudit_x.yaml:16: 'first: cnn.gradcam mass in object > 0.99' failed" in out.stdout

    docs = {name: json.loads((project / name / "audit.json").read_text()) for name in outputs}
    ids = {name: sorted(r["nodeid"] for r in doc["expectations"]) for name, doc in docs.items()}
    assert ids["serial"] == ids["xdist"] == ids["rootdir"]
    assert "audit_x.yaml::scenes::cnn.gradcam-mass_in[object,50%,class=striped]" in ids["serial"]
    assert "audit_x.yaml::first::cnn.gradcam-mass_in-2[object]" in ids["serial"]
    for name in outputs:
        junit = ET.parse(project / name / "junit.xml").getroot()
        props = sorted(p.get("value") for p in junit.iter("property") if p.get("name") == "id")
        assert props == ids["serial"], name
    for a, b in itertools.permutations(outputs, 2):
        cmp = _compare(project / a / "audit.json", project / b / "audit.json", project)
        changed = {k: cmp[k] for k in ("newly_failing", "newly_passing", "other_changes", "deltas", "flips",
                                       "added", "removed")}
        assert changed == {k: [] for k in changed}, (a, b)
        assert cmp["regressed"] is False
    assert "Changed since" in (project / "rootdir" / "audit.html").read_text()


def test_a_duplicate_id_reads_back_in_pytest_and_junit(project: Path) -> None:
    """The ordinal of identical lines goes before the bracket, so the id pytest prints is one it finds."""
    result = _pytest(project, "-k", "first", "--audit-no-report", "--junitxml", "j.xml")
    assert "FAILED audit_x.yaml::first::cnn.gradcam-mass_in-2[object]" in result.stdout, result.stdout
    assert "]-2" not in result.stdout and "2]]" not in result.stdout
    names = {c.get("name") for c in ET.parse(project / "j.xml").getroot().iter("testcase")}
    assert names == {"cnn.gradcam-mass_in[object]", "cnn.gradcam-mass_in-2[object]"}
    again = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                            "audit_x.yaml::first::cnn.gradcam-mass_in-2[object]"], cwd=project,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "1 test collected" in again.stdout, again.stdout + again.stderr
