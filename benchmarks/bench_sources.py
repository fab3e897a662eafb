"""The same dataset audit over four sources: local files, a local S3 server, Parquet, WebDataset.

Generates N fixture scenes with object masks (``fixtures/dataset_files.write_scene_dataset``),
writes them also as Parquet parts and tar shards (``fixtures/dataset_tables``), uploads the
folder to an S3-compatible server on 127.0.0.1 (moto in server mode, in this process; s3fs
talks HTTP to it), then runs ``pytest`` on one audit per source, each in a fresh process:
two aggregate expectations (``fixture:vit-scenes`` attention mass in the object, accuracy),
so decoding, fetching and the models' forwards are what is timed. It prints, per source and
size, the wall time, its ratio to local files (goal: within 1.2x, fetching overlapping the
models) and the peak resident memory (goal: flat in N).

Then the listing rate: ``--list-objects`` empty objects are put under one prefix and the
prefix is declared as a ``folder:`` dataset (one paged ``ListObjectsV2`` walk, nothing
decoded); the rate gives the time for 1,000,000 objects (goal: under 30 s).

Run: ``python benchmarks/bench_sources.py [--sizes 1000 10000] [--list-objects 20000]``.
The moto server shares this machine's cores with the audit, unlike a real object store.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dataset import measured  # noqa: E402
from s3_server import S3Server  # noqa: E402

CLASSES = ["striped", "checkered", "dotted", "confetti", "rainbow"]

SOURCES = {
    "local files": """
    folder: {root}/clean
    labels: folders
    regions: {{object: {{mask: "{root}/masks/{{stem}}.png"}}}}""",
    "S3 (local server)": """
    folder: s3://bench/clean
    labels: folders
    regions: {{object: {{mask: "s3://bench/masks/{{stem}}.png"}}}}
    storage_options: {{endpoint_url: "{endpoint}"}}""",
    "Parquet": """
    parquet: {root}/parquet_clean
    columns: {{key: key, label: label, masks: {{object: mask}}}}
    classes: {classes}""",
    "WebDataset": """
    webdataset: "{root}/webdataset_clean/scenes-{{{first}..{last}}}.tar"
    columns: {{masks: {{object: mask.png}}}}""",
}

AUDIT = """\
models:
  vit: {{name: "fixture:vit-scenes"}}
datasets:
  scenes:{source}
expect:
  - scenes: mean vit.attention mass in object > 0.0
  - scenes: vit accuracy > 0.0
"""


def prepare(root: Path, n: int, server: S3Server) -> int:
    """Scenes, tables and shards below ``root``; the folder and masks uploaded; the shard count."""
    import dataset_files
    import dataset_tables
    import s3fs

    dataset_files.write_scene_dataset(root, n, shortcut=False, formats=("masks",))
    rows = dataset_tables.scene_rows(root, n)
    dataset_tables.write_parquet(rows, root / "parquet_clean", parts=max(1, n // 1000), row_group=100)
    shards = dataset_tables.write_shards(rows, root / "webdataset_clean", per_shard=500)
    del rows
    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
    if not fs.exists("bench"):
        fs.mkdir("bench")
    for part in ("clean", "masks"):
        fs.put(str(root / part), f"bench/{part}", recursive=True)
    return len(shards)


def run_sources(tmp: Path, n: int, server: S3Server) -> list[dict]:
    root = tmp / f"n{n}"
    t = time.perf_counter()
    shards = prepare(root, n, server)
    print(f"  prepared {n} scenes (files, Parquet, {shards} shards, upload) in {time.perf_counter() - t:.0f} s",
          flush=True)
    out = []
    for name, source in SOURCES.items():
        audit = root / f"audit_{len(out)}.yaml"
        audit.write_text(AUDIT.format(source=source.format(root=root, endpoint=server.endpoint, classes=CLASSES,
                                                           first="000", last=f"{shards - 1:03d}")))
        cmd = [sys.executable, "-m", "pytest", str(audit), "-q", "-p", "no:cacheprovider", "--audit-no-report",
               "--rootdir", str(root)]
        wall, rss, rc = measured(cmd)
        out.append({"source": name, "n": n, "wall": wall, "rss": rss, "rc": rc})
        print(f"  {name:18s} {wall:7.1f} s  peak {rss:6.0f} MB  exit {rc}", flush=True)
    return out


def listing_rate(server: S3Server, count: int) -> tuple[float, float]:
    """Seconds to put ``count`` empty objects, and to declare their prefix as a dataset."""
    import s3fs

    from vitaudit.storage import Store

    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
    if not fs.exists("listing"):
        fs.mkdir("listing")
    t = time.perf_counter()
    batch = 2000
    for i in range(0, count, batch):
        fs.pipe({f"listing/many/{j % 5}/{j:07d}.png": b"" for j in range(i, min(count, i + batch))})
    put_s = time.perf_counter() - t
    store = Store({"endpoint_url": server.endpoint})
    t = time.perf_counter()
    found = store.find("s3://listing/many", (".png",))
    list_s = time.perf_counter() - t
    assert len(found) == count, (len(found), count)
    return put_s, list_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--list-objects", type=int, default=20000)
    args = ap.parse_args(argv)
    server = S3Server().start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="vitaudit-bench-sources-") as tmp:
            for n in args.sizes:
                print(f"{n} images:", flush=True)
                rows += run_sources(Path(tmp), n, server)
        if args.list_objects:
            put_s, list_s = listing_rate(server, args.list_objects)
            rate = args.list_objects / list_s
            print(f"listing: {args.list_objects} objects put in {put_s:.0f} s; declared (listed) in {list_s:.2f} s "
                  f"= {rate:,.0f} objects/s -> 1,000,000 objects in {1e6 / rate:.0f} s", flush=True)
    finally:
        server.stop()
    print("\n| source | images | wall (s) | vs local files | peak RSS (MB) |\n|---|---|---|---|---|")
    for r in rows:
        local = next(x for x in rows if x["n"] == r["n"] and x["source"] == "local files")
        print(f"| {r['source']} | {r['n']} | {r['wall']:.1f} | {r['wall'] / local['wall']:.2f}x | {r['rss']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
