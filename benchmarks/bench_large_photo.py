"""A camera-sized photo: 48 megapixels (8000 x 6000 JPEG), five expectations on EfficientNet-Lite0.

Writes the photo (scikit-image's ``chelsea`` upscaled) and an audit of five expectations in a
temporary folder, then runs, each in a fresh process so that peak resident memory is its own:

- the reference: import torch, load the model, decode the JPEG (``vitaudit.load_image``) and
  run one plain forward pass (``torch.no_grad``);
- ``pytest`` on the audit (its imports, one pass, the maps, every metric, the pictures and the
  report).

Both times start before the first import; "peak RSS" is the process's ``ru_maxrss`` (importing
torch alone is about 700 MB of it on the build machine).

Goal: the audit within 2x the reference's time and under 1 GB resident.
Run: ``python benchmarks/bench_large_photo.py`` (``--audit-max-side N`` is passed through).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

W, H = 8000, 6000

AUDIT = """models:
  eff: {name: efficientnet_lite0, pretrained: true}
labels:
  cat: [tabby, tiger cat, Egyptian cat, Persian cat, Siamese cat]
images:
  kitty:
    path: kitty48mp.jpg
    regions:
      face: {box: [0.28, 0.2, 0.72, 0.95], units: fraction}
      body: {polygon: [[0.05, 0.3], [0.95, 0.3], [0.95, 1], [0.05, 1]], units: fraction}
expect:
  - kitty: eff top1 in cat
  - kitty: eff.gradcam mass in face > 0.5
  - kitty: eff.gradcam pointing game hits face
  - kitty: eff.gradcam iou(top 20%, face) > 0.2
  - kitty: eff.eigencam energy pointing game in body > 0.3
"""

REFERENCE = """
import resource, sys, time
start = time.perf_counter()
import torch
from vitaudit.images import load_image
from vitaudit.models import load_model
model = load_model("efficientnet_lite0", pretrained=True, device="cpu")
image = load_image(sys.argv[1])
x, _ = model.preprocessing(image)
with torch.no_grad():
    model.module(x[None])
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

AUDIT_RUN = """
import resource, sys, time
start = time.perf_counter()
import pytest
code = pytest.main(sys.argv[1:])
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, int(code))
"""


def make_photo(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    path = folder / "kitty48mp.jpg"
    Image.fromarray(data.chelsea()).resize((W, H), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def measure(code: str, *args: str, cwd: Path) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, check=False)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise SystemExit(f"failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return [float(v) for v in lines[-1].split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit-max-side", default=None, help="passed to pytest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo = make_photo(folder)
        (folder / "audit_big.yaml").write_text(AUDIT)
        ref_s, ref_kb = measure(REFERENCE, str(photo), cwd=folder)
        extra = ["--audit-max-side", args.audit_max_side] if args.audit_max_side else []
        run_s, run_kb, code = measure(AUDIT_RUN, "-q", "-p", "no:cacheprovider", "audit_big.yaml", *extra,
                                      cwd=folder)
        doc = json.loads((folder / "reports" / "audit.json").read_text())
        values = {r["id"] if "id" in r else r["text"]: r.get("value") for r in doc["expectations"]}
    print(f"photo {W}x{H} JPEG ({photo.name}), EfficientNet-Lite0, 5 expectations; pytest exit code {int(code)}")
    print("| | time | peak RSS |\n|---|---:|---:|")
    print(f"| reference: import + load model + decode + plain forward | {ref_s:.2f} s | {ref_kb / 1024:.0f} MB |")
    print(f"| pytest on the audit (maps, metrics, report) | {run_s:.2f} s | {run_kb / 1024:.0f} MB |")
    print(f"| ratio | {run_s / ref_s:.2f}x | |")
    print("values:", json.dumps(values))


if __name__ == "__main__":
    main()
