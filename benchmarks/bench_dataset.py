"""What a dataset audit costs next to the models' own work, in time, memory and report size.

Generates N fixture scenes with object masks into a temporary folder
(``fixtures/dataset_files.write_scene_dataset``), writes an audit of six aggregate
expectations on them (``fixture:vit-scenes`` + ``fixture:resnet-scenes``: attention mass,
rollout pointing game, Grad-CAM mass, agreement, accuracy, and one per class), then runs, each in
a fresh process so start-up, imports and model loads count on both sides:

- the reference: load both models, decode every image and run both models' plain batched
  forwards (``torch.no_grad``, the pass's batch size);
- ``pytest`` on the audit, with the HTML/JSON report.

It prints the ratio (goal <= 1.5x), each run's peak resident memory and its growth from the
first size to the last (goal <= 150 MB from 1,000 to 10,000 images), and the report's size
(goal <= 5 MB at 10,000). ``--gpu`` adds ViT-B/16 + ResNet-50 (random init, 224 px) on 2,000
images on CUDA.

Run: ``python benchmarks/bench_dataset.py [--sizes 1000 10000] [--repeat 1]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

AUDIT = """\
models:
  vit: {{name: "{vit}"{vit_extra}}}
  cnn: {{name: "{cnn}"{cnn_extra}}}
datasets:
  scenes:
    folder: {root}/clean
    labels: folders
    regions:
      object: {{mask: "{root}/masks/{{stem}}.png"}}
expect:
  - scenes: mean vit.attention mass in object > 0.0
  - scenes: vit.rollout pointing game hits object for 1% of images
  - scenes: cnn.gradcam mass in object > 0.0 for 1% of images
  - scenes: agreement(vit.rollout, cnn.gradcam) > -1 for 1% of images
  - scenes: {accuracy}
  - scenes: vit.attention mass in object > 0.0 for 1% of images per class
"""

REFERENCE = """\
import sys, time, glob
from concurrent.futures import ThreadPoolExecutor
import torch
import vitaudit
from vitaudit.images import load_image
start = time.perf_counter()
specs, device, batch, root = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3]), sys.argv[4]
kwargs = {} if not sys.argv[5:] else {"pretrained": False, "num_classes": 5}
models = [vitaudit.load_model(s, device=device, **kwargs) for s in specs]
files = sorted(glob.glob(root + "/clean/*/*.png"))
with ThreadPoolExecutor(4) as pool:
    for i in range(0, len(files), batch):
        images = list(pool.map(load_image, files[i:i + batch]))
        for m in models:
            x = torch.stack([m.preprocessing(im)[0] for im in images]).to(m.device)
            with torch.no_grad():
                m.module(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
print(time.perf_counter() - start)
"""

WRAP = """\
import resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t
print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, rc)
"""


def measured(cmd: list[str]) -> tuple[float, float, int]:
    """Wall time (s), peak RSS (MB) and exit code of ``cmd`` in a fresh process."""
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, check=True)
    wall, rss, rc = out.stdout.split()
    return float(wall), float(rss), int(rc)


def generate(root: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT / "fixtures"))
    import dataset_files

    dataset_files.write_scene_dataset(root, n, shortcut=False, formats=("masks",))


def run_size(tmp: Path, n: int, args: argparse.Namespace, gpu: bool = False) -> dict:
    root = tmp / f"scenes{n}"
    t = time.perf_counter()
    generate(root, n)
    gen = time.perf_counter() - t
    if gpu:
        models = dict(vit="vit_base_patch16_224", cnn="resnet50", accuracy="vit top1 is not 0 for 1% of images",
                      vit_extra=", pretrained: false, num_classes: 5, model_kwargs: {img_size: 224}",
                      cnn_extra=", pretrained: false, num_classes: 5")
        device, batch = args.gpu_device, 128
    else:
        models = dict(vit="fixture:vit-scenes", cnn="fixture:resnet-scenes", accuracy="vit accuracy > 0.0",
                      vit_extra="", cnn_extra="")
        device, batch = "cpu", 32
    audit = tmp / f"audit_bench{n}.yaml"
    audit.write_text(AUDIT.format(root=root, **models))
    report = tmp / f"report{n}" / "audit.html"
    ref_cmd = [sys.executable, "-c", REFERENCE, f"{models['vit']},{models['cnn']}", device, str(batch), str(root)]
    if gpu:
        ref_cmd.append("random")
    audit_cmd = [sys.executable, "-m", "pytest", str(audit), "-q", "-p", "no:cacheprovider", f"--rootdir={tmp}",
                 f"--audit-report={report}", f"--audit-device={device}", f"--audit-batch-size={batch}",
                 *args.pytest_args.split()]
    refs, audits = [], []
    for _ in range(args.repeat):  # interleaved, so drifts in machine load hit both sides alike
        refs.append(measured(ref_cmd))
        audits.append(measured(audit_cmd))
    ref = min(refs, key=lambda r: r[0])
    aud = min(audits, key=lambda r: r[0])
    if ref[2] != 0:
        raise SystemExit(f"the reference failed (exit {ref[2]}): {' '.join(ref_cmd[:2])} ...")
    if aud[2] != 0:
        raise SystemExit(f"the audit failed (exit {aud[2]}): {' '.join(audit_cmd)}")
    html = report.stat().st_size / 2**20
    doc = json.loads(report.with_suffix(".json").read_text())
    return dict(n=n, generate=gen, reference=ref[0], reference_rss=ref[1], audit=aud[0], audit_rss=aud[1],
                ratio=aud[0] / ref[0], html_mb=html, json_mb=report.with_suffix(".json").stat().st_size / 2**20,
                items=doc["summary"]["total"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--repeat", type=int, default=1, help="runs of each side; the fastest counts")
    p.add_argument("--gpu", action="store_true", help="also ViT-B/16 + ResNet-50 on 2,000 images on CUDA")
    p.add_argument("--gpu-device", default="cuda", help=argparse.SUPPRESS)  # "cpu": a smoke run of that case
    p.add_argument("--gpu-images", type=int, default=2000, help=argparse.SUPPRESS)
    p.add_argument("--pytest-args", default="", help="more options for the audit's pytest (e.g. the Ray executor's)")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vitaudit-bench-") as d:
        tmp = Path(d)
        for n in args.sizes:
            rows.append(run_size(tmp, n, args))
            print(_row(rows[-1], "fixture models, cpu"), flush=True)
        if args.gpu:
            import torch

            if args.gpu_device.startswith("cuda") and not torch.cuda.is_available():
                raise SystemExit("--gpu: no CUDA device here")
            row = run_size(tmp, args.gpu_images, args, gpu=True)
            card = torch.cuda.get_device_name(0) if args.gpu_device.startswith("cuda") else args.gpu_device
            print(_row(row, f"ViT-B/16 + ResNet-50, {card}"), flush=True)
    if len(rows) > 1:
        growth = rows[-1]["audit_rss"] - rows[0]["audit_rss"]
        print(f"peak RSS growth {rows[0]['n']:,} -> {rows[-1]['n']:,} images: {growth:+.0f} MB (goal <= 150 MB); "
              f"reference {rows[-1]['reference_rss'] - rows[0]['reference_rss']:+.0f} MB")
    print(textwrap.dedent("""\
        goals: audit <= 1.5x reference; RSS growth <= 150 MB from 1,000 to 10,000 images; report <= 5 MB at 10,000"""))
    return 0


def _row(r: dict, what: str) -> str:
    return (f"{r['n']:>6,} images ({what}): reference {r['reference']:.1f} s, audit {r['audit']:.1f} s "
            f"= {r['ratio']:.2f}x; peak RSS {r['reference_rss']:.0f} / {r['audit_rss']:.0f} MB; "
            f"report {r['html_mb']:.2f} MB HTML, {r['json_mb']:.2f} MB JSON; {r['items']} items "
            f"(scenes written in {r['generate']:.1f} s)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
