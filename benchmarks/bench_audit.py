"""What an audit run costs next to the models' own work.

Writes an audit of 20 images x 2 models (``vit_base_patch16_224`` and ``resnet50``, random
init, 224x224 inputs) x 10 expectations each (400 items: predictions, localisation with
several methods, an agreement), then times:

- the reference: loading both models + their plain forward passes over the 20 images
  (batch 8, ``torch.no_grad``);
- ``pytest`` on that audit in this process (collection, one pass per image and model, every
  metric, the pictures and the HTML/JSON report), with and without ``--audit-no-report``.

Goal: the audit run <= 1.2x the reference. Run: ``python benchmarks/bench_audit.py``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

N_IMAGES = 20

VIT = ["vit top1 is not 281",
       "vit prob(tabby) < 0.5",
       "vit.attention mass in thing > 0.01",
       "vit.rollout mass in thing > 0.01",
       "vit.attention pointing game hits all",
       "vit.rollout iou(top 20%, thing) > 0.0",
       "vit.gradcam mass in all >= 0",
       "vit.gradcam rank accuracy in thing >= 0",
       "vit.attention energy pointing game in thing >= 0",
       "agreement(vit.attention, vit.rollout) > -1.01"]
CNN = ["cnn top1 is not 281",
       "cnn prob(tabby) < 0.5",
       "cnn.gradcam mass in all > 0.99",
       "cnn.gradcam pointing game hits all",
       "cnn.gradcam iou(top 20%, thing) >= 0",
       "cnn.gradcam rank accuracy in thing >= 0",
       "cnn.gradcam energy pointing game in thing >= 0",
       "cnn.gradcam++ mass in all > 0.99",
       "cnn.layercam mass in all > 0.99",
       "cnn.hirescam mass in all > 0.99"]


def photos() -> list[np.ndarray]:
    """20 real photos of various sizes, cut from scikit-image's bundled pictures."""
    from skimage import data

    sources = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), data.stereo_motorcycle()[0]]
    out = []
    for i in range(N_IMAGES):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        k = i // len(sources)
        out.append(img[k * h // 10 : h - k * h // 12, k * w // 9 : w - k * w // 11])
    return out


def write_audit(folder: Path) -> Path:
    images, expects = [], []
    for i, img in enumerate(photos()):
        Image.fromarray(img).save(folder / f"p{i}.png")
        h, w = img.shape[:2]
        images.append(f"  p{i}:\n    path: p{i}.png\n    regions:\n"
                      f"      all: {{box: [0, 0, {w}, {h}]}}\n"
                      f"      thing: {{box: [0.25, 0.2, 0.75, 0.9], units: fraction}}")
        expects += [f"  - p{i}: {e}" for e in VIT + CNN]
    text = ("models:\n  vit: {name: vit_base_patch16_224, seed: 0}\n  cnn: {name: resnet50, seed: 0}\n"
            "images:\n" + "\n".join(images) + "\nexpect:\n" + "\n".join(expects) + "\n")
    path = folder / "audit_bench.yaml"
    path.write_text(text)
    return path


def reference(batch: int) -> float:
    """Load both models and run their plain forward passes over the 20 images."""
    from vitaudit.images import load_image
    from vitaudit.models import load_model

    start = time.perf_counter()
    imgs = [load_image(p) for p in photos()]
    for spec in ("vit_base_patch16_224", "resnet50"):
        model = load_model(spec, seed=0, device="cpu")
        x = torch.stack([model.preprocessing(im)[0] for im in imgs])
        with torch.no_grad():
            for i in range(0, len(x), batch):
                model.module(x[i : i + batch])
    return time.perf_counter() - start


def run_audit(path: Path, *extra: str) -> tuple[float, int]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = pytest.main([str(path), "-q", "-p", "no:cacheprovider", "--audit-device", "cpu",
                            "--audit-report", str(path.parent / "reports" / "audit.html"), *extra])
    return time.perf_counter() - start, int(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {N_IMAGES} images x 2 models x 10 expectations")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_audit(Path(tmp))
        reference(args.batch)  # warm-up: imports, allocator
        ref = statistics.median(reference(args.batch) for _ in range(args.repeat))
        runs, codes = [], set()
        for _ in range(args.repeat):
            t, code = run_audit(path)
            runs.append(t)
            codes.add(code)
        no_report = statistics.median(run_audit(path, "--audit-no-report")[0] for _ in range(args.repeat))
        size = (Path(tmp) / "reports" / "audit.html").stat().st_size / 2**20
    audit = statistics.median(runs)
    print(f"reference (load 2 models + plain forwards):  {ref:7.2f} s")
    print(f"pytest audit, 400 items, with the report:     {audit:7.2f} s  {audit / ref:5.2f}x  "
          f"goal <= 1.20x: {'met' if audit / ref <= 1.2 else 'NOT met'}  (exit codes {sorted(codes)}, report {size:.1f} MB)")
    print(f"pytest audit, 400 items, --audit-no-report:   {no_report:7.2f} s  {no_report / ref:5.2f}x")


if __name__ == "__main__":
    main()
