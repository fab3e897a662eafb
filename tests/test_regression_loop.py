"""The shipped regression audit end to end: the clean models pass against the committed values; the
same audit with the shortcut models swapped in fails with the deltas; ``vitaudit compare`` on the two
runs' JSON exits 1 and names the flipped expectations."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_plugin import _warm_up_imports  # noqa: F401  (torch imported before the in-process runs)
from vitaudit.audit import value_baselines

AUDITS = Path(__file__).resolve().parent.parent / "audits"
AUDIT = AUDITS / "audit_regression.yaml"


@pytest.fixture
def shipped(pytester: pytest.Pytester) -> Path:
    """A copy of the shipped audit, its committed values and the images it names."""
    shutil.copy(AUDIT, pytester.path / AUDIT.name)
    values = value_baselines.path_for(AUDIT)
    target = value_baselines.path_for(pytester.path / AUDIT.name)
    target.parent.mkdir(parents=True)
    shutil.copy(values, target)
    for name in {line.split("images/", 1)[1].split()[0].rstrip("}") for line in AUDIT.read_text().splitlines()
                 if "images/" in line}:
        (pytester.path / "images" / Path(name).parent).mkdir(parents=True, exist_ok=True)
        shutil.copy(AUDITS / "images" / name, pytester.path / "images" / name)
    return pytester.path / AUDIT.name


def test_committed_values_cover_every_relative_expectation():
    from vitaudit.spec import parse_audit_file

    spec = parse_audit_file(AUDIT)
    assert not spec.errors
    relative = [e for e in spec.expectations if e.relative is not None]
    assert len(relative) == len(spec.expectations) == 9
    stored = value_baselines.read(value_baselines.path_for(AUDIT))
    assert sorted(stored) == sorted(value_baselines.key_for(e) for e in relative)


def test_clean_passes_shortcut_fails_with_deltas_and_compare_names_them(pytester, shipped):
    clean = pytester.runpytest("-p", "no:cacheprovider", "--audit-report", "clean/audit.html")
    clean.assert_outcomes(passed=9)

    shipped.write_text(shipped.read_text().replace('fixture:vit-scenes"', 'fixture:vit-scenes-shortcut"')
                       .replace('fixture:resnet-scenes"', 'fixture:resnet-scenes-shortcut"'))
    swapped = pytester.runpytest("-p", "no:cacheprovider", "--audit-report", "shortcut/audit.html")
    # The shortcut models classify as well (the prob checks pass) but look at the watermark.
    swapped.assert_outcomes(passed=2, failed=7)
    # the failure sentences (under CI=true pytest's short summary repeats them whole, so count those)
    out = "\n".join(line for line in swapped.stdout.lines if line.startswith("audit_regression.yaml:"))
    assert out.count("difference from the baseline: -") == 5  # object mass (4) and agreement fell
    assert out.count("difference from the baseline: +") == 2  # watermark mass rose
    doc = json.loads((pytester.path / "shortcut" / "audit.json").read_text())
    failed = {r["nodeid"] for r in doc["expectations"] if r["outcome"] == "failed"}
    for r in doc["expectations"]:
        assert r["baseline"] is not None and r["threshold"] is not None

    cmd = [sys.executable, "-m", "vitaudit.cli", "compare", "clean/audit.json", "shortcut/audit.json"]
    result = subprocess.run(cmd, cwd=pytester.path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    text = result.stdout
    assert text.splitlines()[1].startswith("REGRESSED: 7 newly failing")
    listed = text[text.index("newly failing (7):"):text.index("\n\n", text.index("newly failing (7):"))]
    for nodeid in failed:
        r = next(x for x in doc["expectations"] if x["nodeid"] == nodeid)
        where = f"{r['file']}:{r['line']}" + ("" if r["text"].startswith(r["image"]) else f" [{r['image']}]")
        assert f"{where}  passed -> failed  {r['text']!r}" in listed
    assert "striped: vit prob" not in listed and "dotted: resnet prob" not in listed
