"""``vitaudit init``: for each source kind (folder, COCO, VOC, CSV) the drafted audit parses with the
normal loader, records its values, and passes under pytest on the run that wrote it; on the shortcut
models it flags the watermark corner by itself; ``--images DIR`` alone drafts predictions and map
baselines. Small samples keep it fast (each case is one probe pass and one pytest run)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vitaudit import cli
from vitaudit.spec import parse_audit_file

SCENES = Path(__file__).resolve().parent.parent / "audits" / "datasets" / "scenes"
MASKS = str(SCENES / "masks" / "{stem}.png")


def run_pytest(path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent),
                                                         os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", path.name, "-q", "-p", "no:cacheprovider",
                           "--audit-no-report", "-o", "addopts=", "--rootdir", str(path.parent)],
                          cwd=path.parent, capture_output=True, text=True, env=env, timeout=600)


def init(tmp_path: Path, *args: str) -> tuple[Path, str]:
    out = tmp_path / "audit_drafted.yaml"
    code = cli.main(["init", *args, "--out", str(out)])
    assert code == 0
    return out, out.read_text()


@pytest.mark.parametrize("model, source, regions, labelled", [
    ("fixture:vit-scenes", ["--dataset", str(SCENES / "clean"), "--masks", MASKS], ["object"], True),
    ("fixture:resnet-scenes", ["--coco", str(SCENES / "coco_clean.json")], ["object"], False),
    ("fixture:resnet-scenes", ["--voc", str(SCENES / "voc_clean"), "--images", str(SCENES)], ["object"], False),
    ("fixture:resnet-scenes", ["--dataset", str(SCENES / "manifest_clean.csv")], ["object"], True),
], ids=["folder", "coco", "voc", "csv"])
def test_drafted_audit_is_valid_and_passes(tmp_path, capsys, model, source, regions, labelled):
    out, text = init(tmp_path, "--model", model, *source, "--sample", "10", "--sanity-images", "2")
    key = model.split(":")[1].replace("-", "_")
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"run it: pytest {out}" in printed
    spec = parse_audit_file(out)
    assert spec.errors == ()
    data = spec.datasets["data"]
    assert len(data.samples) == 10 and data.size == 150
    assert [r for r in data.region_names if not r.startswith(("corner_", "band_"))] == regions
    texts = [e.text for e in spec.expectations]
    assert f"data: mean {key}.gradcam mass in object >= baseline - 1.5 * ci" in texts
    assert (f"data: {key} accuracy >= baseline - 1.5 * ci per class" in texts) == labelled
    assert any(t.endswith("with 95% confidence") for t in texts)
    # a clean model: no border region is flagged
    assert "no corner or border band draws more than 2x its area" in text and "corner_top_left <" not in text
    values = json.loads((tmp_path / "baselines" / "audit_drafted" / "values.json").read_text())["values"]
    relative = [e for e in spec.expectations if e.relative is not None]
    assert relative and all(isinstance(v, dict) and "ci" in v for v in values.values() if "per_image" in v)
    assert len([k for k in values if k.startswith("data::")]) >= len([e for e in relative if e.image == "data"])
    result = run_pytest(out)
    assert result.returncode == 0, result.stdout[-3000:]
    assert " failed" not in result.stdout and " error" not in result.stdout


def test_flags_the_shortcut_models_watermark_corner_without_being_told(tmp_path, capsys):
    out, text = init(tmp_path, "--model", "fixture:vit-scenes-shortcut", "--dataset", str(SCENES / "shortcut"),
                     "--masks", MASKS, "--sample", "16", "--sanity-images", "0")
    printed = capsys.readouterr().out
    assert "finding: vit_scenes_shortcut.attention puts" in printed and "in corner_top_left" in printed
    spec = parse_audit_file(out)
    assert spec.errors == ()
    flagged = {e.text for e in spec.expectations if any(m.name == "xfail" for m in e.marks)
               and "corner_" in e.text}
    assert "data: mean vit_scenes_shortcut.attention mass in corner_top_left < 0.04 with 95% confidence" in flagged
    assert all("corner_top_left" in t for t in flagged)  # only the watermark's corner, no other border
    assert "FINDING: vit_scenes_shortcut.attention puts" in text
    result = run_pytest(out)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "xfailed" in result.stdout


def test_images_alone_draft_predictions_and_map_baselines(tmp_path, capsys):
    out, text = init(tmp_path, "--model", "fixture:resnet-scenes", "--images", str(SCENES / "clean" / "striped"),
                     "--max-images", "3")
    spec = parse_audit_file(out)
    assert spec.errors == () and len(spec.images) == 3
    texts = [e.text for e in spec.expectations]
    assert sum(1 for t in texts if 'resnet_scenes top1 is "striped"' in t) == 3
    assert sum(1 for e in spec.expectations if e.metric == "baseline_similarity") == 3
    assert len(list((tmp_path / "baselines" / "audit_drafted").rglob("*.npy"))) == 3
    result = run_pytest(out)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("args, says", [
    (["--model", "fixture:resnet-scenes"], "give a dataset (--dataset, --folder, --coco, --voc, --csv) or --images DIR"),
    (["--model", "fixture:resnet-scenes", "--voc", str(SCENES / "voc_clean")], "a Pascal VOC dataset needs --images DIR"),
    (["--model", "fixture:nope", "--dataset", str(SCENES / "clean")], "--model fixture:nope:"),
    (["--model", "fixture:resnet-scenes", "--dataset", str(SCENES / "clean"), "--masks", "nowhere/{stem}.png"],
     "audit_drafted.yaml:"),
])
def test_bad_command_lines_are_one_line(tmp_path, capsys, args, says):
    assert cli.main(["init", *args, "--out", str(tmp_path / "audit_drafted.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vitaudit init: error: ") and says in err[-1], err


def test_out_must_be_collected_by_pytest(tmp_path, capsys):
    assert cli.main(["init", "--model", "fixture:resnet-scenes", "--dataset", str(SCENES / "clean"),
                     "--out", str(tmp_path / "first.yaml")]) == 1
    assert "pytest collects files named audit_*.yaml" in capsys.readouterr().err
