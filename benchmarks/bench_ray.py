"""The Ray executor against the local one, and what the driver costs at scale.

1. End to end: N fixture scenes (``fixtures/dataset_files``), the audit of ``bench_dataset.py``
   (six aggregate expectations, ``fixture:vit-scenes`` + ``fixture:resnet-scenes``), run by
   ``pytest`` in a fresh process with ``--audit-executor local`` and with ``--audit-executor ray
   --audit-ray-address local`` (a Ray started by the run on this machine's CPUs: its start-up
   counts). Prints both times, the ratio (goal <= 1.3x), the start-up part (the same two runs on
   20 images: what does not grow with N), and whether every per-image value of ``audit.json`` is
   identical.
2. The driver at scale: in a fresh process per size, the driver's side of a pass without the
   actors' work, through the product's own code: the audit above parsed (on 5 generated images),
   its dataset given N sample descriptors, N x 6 per-image rows merged as they arrive (the
   ``Collected`` of ``vitaudit.audit.ray_pass``, Arrow-shaped batches of the pass's batch size)
   into the pass's columns, each item's verdict and result made as ``AggregateItem`` makes them
   (``dataset_results.fill``, per class for the per-class aggregate; no pictures) and read back
   as the controller does, and ``audit.json`` (+ ``audit.values.parquet``) written. Prints peak
   resident memory at each size (goal: +<= 100 MB from 10,000 to 100,000 images), how much of
   it the N sample descriptors themselves take (the input; measured apart with tracemalloc), and
   the merge rate in values/s, extrapolated to 10M images.

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
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace


def rss():  # current resident memory, MB
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


import numpy as np
import ray.data  # noqa: F401 - a Ray pass's driver has Ray Data loaded (and with it pyarrow and pandas, which
                 # pyarrow's conversions use): a fixed cost, not one of the size, and the same at every size
n, batch, audit, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
from vitaudit.aggregate import verdict
from vitaudit.audit.dataset_pass import DatasetRun
from vitaudit.audit.ray_pass import Collected, Rows
from vitaudit.datasets.base import Sample
from vitaudit.image_values import ImageValues
from vitaudit.plugin import dataset_results
from vitaudit.report import write_report
from vitaudit.results import ExpectationResult, RunResults
from vitaudit.spec import parse_audit_file

spec = parse_audit_file(audit)  # the bench's audit (six aggregates, one per class), on 5 real images
small = spec.datasets["scenes"]
regions = small.samples[0].regions  # one real region source, shared: the descriptors carry no pixels
mem = {"imports": rss()}
samples = tuple(Sample(i, f"/data/scenes/{i % 5}/{i:07d}.png", f"scenes/{i % 5}/{i:07d}.png", f"class{i % 5}",
                       regions) for i in range(n))
dataset = replace(small, samples=samples, classes=tuple(f"class{k}" for k in range(5)))
exps = list(spec.expectations)
got = Collected(dataset, exps)
mem["descriptors"] = rss()
rng = np.random.default_rng(0)
merge = 0.0
values = 0
for a in range(0, n, batch):   # what the actors send back, one batch of the pass at a time
    rows = Rows()
    for i in range(a, min(a + batch, n)):
        rows.add(i, -1, None, None, None, "10.0.0.1 node abcdef01 pid 1 cuda:0")
        for k in range(len(exps)):
            x = float(rng.random())
            check = (x > 0.1) if exps[k].aggregate in ("share", "accuracy") else None
            rows.add(i, k, None if i % 997 == 0 else x, check, "no signal" if i % 997 == 0 else None)
    arrays = rows.arrays()
    values += len(arrays["index"]) - (min(a + batch, n) - a)
    t1 = time.perf_counter()
    got.add(arrays)
    merge += time.perf_counter() - t1
t1 = time.perf_counter()
run = DatasetRun(dataset, {e.id: got.image_values(k) for k, e in enumerate(exps)}, [], {}, 0.0, executor="ray")
merge += time.perf_counter() - t1
mem["values"] = rss()
# Each item as AggregateItem.runtest makes it (per class for 'per class'), then as the controller reads it.
audit_file = SimpleNamespace(evaluator=lambda: SimpleNamespace(session=SimpleNamespace(pictures=False)))
results = []
for e in exps:
    for group in (dataset.classes if e.group == "class" else [None]):
        vals = ImageValues.of(run.values[e.id])
        vals = vals.of_label(group) if group is not None else vals
        v = verdict(e.aggregate, vals, e.op, e.value, e.share, confidence=e.confidence)
        result = ExpectationResult(nodeid=f"audit::{e.id}::{group}", file="audit.yaml", line=e.line, text=e.text,
                                   kind=e.kind, outcome="passed", dataset="scenes", aggregate=e.aggregate,
                                   group=group).to_dict()
        dataset_results.fill(result, SimpleNamespace(group=group, expectation=e), audit_file, run, vals, v, e)
        results.append(ExpectationResult.from_dict(result))
run_results = RunResults(started_at="", duration=0.0, command="", environment={}, results=results)
mem["report rows"] = rss()
t2 = time.perf_counter()
write_report(run_results, out / "audit.html", out / "audit.json")
written = time.perf_counter() - t2
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "exps": len(exps), "values": values, "mem": mem, "merge_s": merge, "write_s": written,
                  "rss_mb": peak, "json_mb": (out / "audit.json").stat().st_size / 2**20,
                  "parquet_mb": (out / "audit.values.parquet").stat().st_size / 2**20
                  if (out / "audit.values.parquet").exists() else 0.0}))
"""

SAMPLES = r"""
import sys, tracemalloc
from vitaudit.datasets.base import Sample
n = int(sys.argv[1])
tracemalloc.start()
samples = tuple(Sample(i, f"/data/scenes/{i % 5}/{i:07d}.png", f"scenes/{i % 5}/{i:07d}.png", f"class{i % 5}")
                for i in range(n))
print(tracemalloc.get_traced_memory()[0] / 2**20)
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


def driver(tmp: Path, n: int) -> dict:
    out = tmp / f"driver{n}"
    out.mkdir()
    root = tmp / "scenes-driver"
    if not root.exists():
        generate(root, 5)
    audit = tmp / "audit_driver.yaml"
    audit.write_text(AUDIT.format(root=root, vit="fixture:vit-scenes", cnn="fixture:resnet-scenes",
                                  accuracy="vit accuracy > 0.0", vit_extra="", cnn_extra=""))
    res = subprocess.run([sys.executable, "-c", DRIVER, str(n), "32", str(audit), str(out)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"the driver simulation failed on {n} images:\n{res.stderr[-3000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    res = subprocess.run([sys.executable, "-c", SAMPLES, str(n)], capture_output=True, text=True, check=True)
    row["samples_mb"] = float(res.stdout.strip().splitlines()[-1])
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000])
    p.add_argument("--driver-sizes", type=int, nargs="+", default=[10000, 100000])
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
        rows = [driver(tmp, n) for n in args.driver_sizes]
    for r in rows:
        rate = r["values"] / r["merge_s"]
        print(f"driver, {r['n']:>9,} images x {r['exps']} expectations: peak RSS {r['rss_mb']:.0f} MB; merge "
              f"{r['merge_s']:.1f} s = {rate:,.0f} values/s (10M images: {1e7 * r['exps'] / rate / 60:.0f} "
              f"min); audit.json {r['json_mb']:.2f} MB + values {r['parquet_mb']:.1f} MB written in "
              f"{r['write_s']:.1f} s; resident MB after " + ", ".join(f"{k} {v:.0f}" for k, v in r["mem"].items())
              + f"; the {r['n']:,} sample descriptors alone: {r['samples_mb']:.1f} MB (tracemalloc)", flush=True)
    if len(rows) > 1:
        grow = rows[-1]["rss_mb"] - rows[0]["rss_mb"]
        own = rows[-1]["samples_mb"] - rows[0]["samples_mb"]
        print(f"driver peak RSS growth {rows[0]['n']:,} -> {rows[-1]['n']:,} images: {grow:+.0f} MB (goal <= +100 MB), "
              f"of which the sample descriptors (the input) {own:+.0f} MB")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
