"""The Ray executor against the local one, and what the driver costs at scale.

1. End to end: N fixture scenes (``fixtures/dataset_files``), the audit of ``bench_dataset.py``
   (six aggregate expectations, ``fixture:vit-scenes`` + ``fixture:resnet-scenes``), run by
   ``pytest`` in a fresh process with ``--audit-executor local`` and with ``--audit-executor ray
   --audit-ray-address local`` (a Ray started by the run on this machine's CPUs: its start-up
   counts). Prints both times, the ratio (goal <= 1.3x), the start-up part (the same two runs on
   20 images: what does not grow with N), and whether every per-image value of ``audit.json`` is
   identical.
2. The driver at scale: in a fresh process per size, the driver's side of a pass without the
   actors' work: N sample descriptors, N x E per-image rows merged as they arrive (the
   ``Collected`` of ``vitaudit.audit.ray_pass``, Arrow-shaped batches of the pass's batch size),
   the items' per-image lists and ``audit.json`` (+ ``audit.values.parquet``) written. Prints peak
   resident memory at each size (goal: +<= 100 MB from 10,000 to 100,000 images) and the merge
   rate in values/s, extrapolated to 10M images.

Run: ``python benchmarks/bench_ray.py [--sizes 10000] [--driver-sizes 10000 100000] [--skip-end-to-end]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dataset import AUDIT, generate, measured  # noqa: E402

DRIVER = r"""
import json, os, resource, sys, time
from pathlib import Path


def rss():  # current resident memory, MB
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


import numpy as np
n, exps, batch, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
from vitaudit.datasets.base import Dataset, Sample
from types import SimpleNamespace
from vitaudit.audit.ray_pass import Collected, Rows
from vitaudit.report import write_report
from vitaudit.results import ExpectationResult, RunResults

mem = {"imports": rss()}
samples = tuple(Sample(i, f"/data/scenes/{i % 5}/{i:07d}.png", f"scenes/{i % 5}/{i:07d}.png", f"class{i % 5}",
                       {}) for i in range(n))
dataset = Dataset("scenes", "folder", samples, classes=tuple(f"class{k}" for k in range(5)))
chosen = [SimpleNamespace(id=f"e{k}", region=None, line=10 + k, text=f"scenes: mean m{k} > 0", kind="localisation")
          for k in range(exps)]
got = Collected(dataset, chosen)
mem["descriptors"] = rss()
rng = np.random.default_rng(0)
merge = 0.0
values = 0
for a in range(0, n, batch):   # what the actors send back, one batch of the pass at a time
    rows = Rows()
    for i in range(a, min(a + batch, n)):
        rows.add(i, -1, None, None, None, "10.0.0.1 node abcdef01 pid 1 cuda:0")
        for k in range(len(chosen)):
            rows.add(i, k, float(rng.random()), bool(i % 3), None)
    arrays = rows.arrays()
    values += len(arrays["index"]) - (min(a + batch, n) - a)
    t1 = time.perf_counter()
    got.add(arrays)
    merge += time.perf_counter() - t1
mem["values"] = rss()
results = []
for k, e in enumerate(chosen):
    vals = sorted(got.values[k], key=lambda v: v.index)
    results.append(ExpectationResult(nodeid=f"audit::{e.id}", file="audit.yaml", line=e.line, text=e.text,
                                     kind=e.kind, outcome="passed", dataset="scenes", aggregate="mean",
                                     n_images=n, per_image=[{"image": v.image, "value": v.value, "passed": v.passed}
                                                            for v in vals]))
run = RunResults(started_at="", duration=0.0, command="", environment={}, results=results)
mem["report rows"] = rss()
t2 = time.perf_counter()
write_report(run, out / "audit.html", out / "audit.json")
written = time.perf_counter() - t2
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "values": values, "mem": mem, "merge_s": merge, "write_s": written, "rss_mb": rss,
                  "json_mb": (out / "audit.json").stat().st_size / 2**20,
                  "parquet_mb": (out / "audit.values.parquet").stat().st_size / 2**20
                  if (out / "audit.values.parquet").exists() else 0.0}))
"""


def per_image_values(report: Path) -> dict:
    doc = json.loads(report.with_suffix(".json").read_text())
    return {r["nodeid"]: (r["outcome"], r["value"], r["n_images"], r["per_image"]) for r in doc["expectations"]}


def end_to_end(tmp: Path, n: int) -> dict:
    root = tmp / f"scenes{n}"
    generate(root, n)
    audit = tmp / f"audit_ray{n}.yaml"
    audit.write_text(AUDIT.format(root=root, vit="fixture:vit-scenes", cnn="fixture:resnet-scenes",
                                  accuracy="vit accuracy > 0.0", vit_extra="", cnn_extra=""))
    out = {"n": n}
    for name, extra in (("local", ["--audit-executor", "local"]),
                        ("ray", ["--audit-executor", "ray", "--audit-ray-address", "local"])):
        report = tmp / f"report-{name}{n}" / "audit.html"
        cmd = [sys.executable, "-m", "pytest", str(audit), "-q", "-p", "no:cacheprovider", f"--rootdir={tmp}",
               f"--audit-report={report}", "--audit-device=cpu", "--audit-batch-size=32", *extra]
        wall, rss, rc = measured(cmd)
        if rc != 0:
            raise SystemExit(f"the {name} run failed (exit {rc}): {' '.join(cmd)}")
        out[name], out[f"{name}_rss"], out[f"{name}_values"] = wall, rss, per_image_values(report)
    out["identical"] = out.pop("local_values") == out.pop("ray_values")
    out["ratio"] = out["ray"] / out["local"]
    return out


def driver(tmp: Path, n: int, exps: int) -> dict:
    out = tmp / f"driver{n}"
    out.mkdir()
    res = subprocess.run([sys.executable, "-c", DRIVER, str(n), str(exps), "32", str(out)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000])
    p.add_argument("--driver-sizes", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--expectations", type=int, default=6, help="per-image values per image (driver part)")
    p.add_argument("--skip-end-to-end", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vitaudit-bench-ray-") as d:
        tmp = Path(d)
        if not args.skip_end_to_end:
            small = end_to_end(tmp, 20)
            startup = small["ray"] - small["local"]
            for n in args.sizes:
                r = end_to_end(tmp, n)
                print(f"{n:>7,} images: local {r['local']:.1f} s, ray {r['ray']:.1f} s = {r['ratio']:.2f}x "
                      f"(goal <= 1.3x); Ray's fixed cost (20-image runs: {small['ray']:.1f} s vs "
                      f"{small['local']:.1f} s) {startup:.1f} s = {startup / r['ray']:.0%} of the Ray run; "
                      f"driver peak RSS local {r['local_rss']:.0f} MB, ray {r['ray_rss']:.0f} MB; "
                      f"per-image values identical: {r['identical']}", flush=True)
        rows = [driver(tmp, n, args.expectations) for n in args.driver_sizes]
    for r in rows:
        rate = r["values"] / r["merge_s"]
        print(f"driver, {r['n']:>9,} images x {args.expectations} expectations: peak RSS {r['rss_mb']:.0f} MB; merge "
              f"{r['merge_s']:.1f} s = {rate:,.0f} values/s (10M images: {1e7 * args.expectations / rate / 60:.0f} "
              f"min); audit.json {r['json_mb']:.2f} MB + values {r['parquet_mb']:.1f} MB written in "
              f"{r['write_s']:.1f} s; resident MB after " + ", ".join(f"{k} {v:.0f}" for k, v in r["mem"].items()),
              flush=True)
    if len(rows) > 1:
        print(f"driver peak RSS growth {rows[0]['n']:,} -> {rows[-1]['n']:,} images: "
              f"{rows[-1]['rss_mb'] - rows[0]['rss_mb']:+.0f} MB (goal <= +100 MB)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
