"""The ``vitaudit explain`` command, run as a user would (a subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitaudit.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_explain_writes_overlay_map_and_json(tmp_path):
    out, npy = tmp_path / "overlay.png", tmp_path / "map.npy"
    p = run("explain", "skimage:chelsea", "--model", "efficientnet_lite0", "--pretrained", "--method", "gradcam",
            "--out", str(out), "--save-map", str(npy), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert set(doc) >= {"model", "method", "target", "topk", "map_shape"}
    assert doc["model"] == "efficientnet_lite0" and doc["method"] == "gradcam"
    assert len(doc["topk"]) == 5 and set(doc["topk"][0]) == {"label", "index", "prob"}
    assert "cat" in doc["topk"][0]["label"]
    assert doc["map_shape"] == [300, 451]
    m = np.load(npy)
    assert m.dtype == np.float32 and m.shape == (300, 451) and 0 <= m.min() and m.max() <= 1
    assert np.asarray(Image.open(out)).shape == (300, 451, 3)


def test_explain_a_class_by_name_with_plain_output(tmp_path):
    p = run("explain", "skimage:coffee", "--model", "efficientnet_lite0", "--pretrained", "--target", "cup")
    assert p.returncode == 0, p.stderr
    assert "target='cup' (968)" in p.stdout and "espresso" in p.stdout


@pytest.mark.parametrize("args,message,code", [
    (["explain", "nope.jpg", "--model", "resnet18"], "image file not found: nope.jpg", 1),
    (["explain", "skimage:chelsea", "--model", "resnt50"], "did you mean 'resnet50'", 1),
    (["explain", "skimage:chelsea", "--model", "efficientnet_lite0", "--pretrained", "--target", "tabbby"],
     "unknown label 'tabbby'; close matches: 'tabby, tabby cat' (281)", 1),
    (["explain", "skimage:chelsea", "--model", "efficientnet_lite0", "--method", "rollout"], "rollout applies to vit models", 1),
    (["explain", "skimage:chelsea", "--model", "efficientnet_lite0", "--method", "gradcan"], "did you mean gradcam", 1),
    (["explain", "skimage:chelsea"], "the following arguments are required: --model", 2),
    (["explain", "skimage:chelsee", "--model", "resnet18"], "did you mean chelsea", 1),
])
def test_bad_input_is_one_line_and_nonzero(args, message, code, capsys):
    """In-process (the subprocess tests above cover the real entry point)."""
    from vitaudit.cli import main

    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's usage errors
        rc = exc.code
    assert rc == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert message in lines[0]
