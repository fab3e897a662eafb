"""The same dataset audit over four sources: local files, a local S3 server, Parquet, WebDataset.

Generates N fixture scenes with object masks (``fixtures/dataset_files.write_scene_dataset``),
writes them also as Parquet parts and tar shards (``fixtures/dataset_tables``), uploads the
folder to an S3-compatible server on 127.0.0.1 (moto in server mode, in this process; s3fs
talks HTTP to it), then runs ``pytest`` on one audit per source, each in a fresh process:
two aggregate expectations (``fixture:vit-scenes`` attention mass in the object, accuracy),
so decoding, fetching and the models' forwards are what is timed. It prints, per source and
size, the wall time, its ratio to local files (goal: within 1.2x, fetching overlapping the
models) and the peak resident memory (goal: flat in N).

Then the listing rate: for each of ``--list-objects``, that many empty objects are put under a
prefix and the prefix is listed as a ``folder:`` dataset lists it (one paged ``ListObjectsV2``
walk, nothing decoded), in a fresh process; the rate gives the time for 1,000,000 objects
(goal: under 30 s).

Run: ``python benchmarks/bench_sources.py [--sizes 1000 10000] [--list-objects 5000 20000]``.
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
    folder: s3://bench/n{n}/clean
    labels: folders
    regions: {{object: {{mask: "s3://bench/n{n}/masks/{{stem}}.png"}}}}
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
    for part in ("clean", "masks"):  # a fresh prefix per size (put into an existing one would nest)
        fs.put(str(root / part), f"bench/n{n}/{part}", recursive=True)
    return len(shards)


def run_sources(tmp: Path, n: int, server: S3Server, names: list[str]) -> list[dict]:
    root = tmp / f"n{n}"
    t = time.perf_counter()
    shards = prepare(root, n, server)
    print(f"  prepared {n} scenes (files, Parquet, {shards} shards, upload) in {time.perf_counter() - t:.0f} s",
          flush=True)
    out = []
    for name, source in SOURCES.items():
        if name not in names:
            continue
        audit = root / f"audit_{len(out)}.yaml"
        audit.write_text(AUDIT.format(source=source.format(root=root, n=n, endpoint=server.endpoint, classes=CLASSES,
                                                           first="000", last=f"{shards - 1:03d}")))
        cmd = [sys.executable, "-m", "pytest", str(audit), "-q", "-p", "no:cacheprovider", "--audit-no-report",
               "--rootdir", str(root)]
        wall, rss, rc = measured(cmd)
        if rc != 0:  # say why: the same run again, its summary lines
            tail = subprocess.run(cmd + ["-rf", "--tb=line"], capture_output=True, text=True).stdout.splitlines()
            print("\n".join("    | " + line[:300] for line in tail[-8:]), flush=True)
        out.append({"source": name, "n": n, "wall": wall, "rss": rss, "rc": rc})
        print(f"  {name:18s} {wall:7.1f} s  peak {rss:6.0f} MB  exit {rc}", flush=True)
    return out


LIST = """\
import sys, time
from vitaudit.storage import Store
store = Store({"endpoint_url": sys.argv[1]})
t, cpu = time.perf_counter(), time.process_time()
found = store.find("s3://listing/" + sys.argv[2], (".png",))
print(len(found), time.perf_counter() - t, time.process_time() - cpu)
"""


def listing_rate(server: S3Server, counts: list[int]) -> list[tuple[int, float, float]]:
    """For each count: seconds to put that many empty objects under a fresh prefix (through
    s3fs's batched writes), and to list the prefix as a ``folder:`` dataset does, in another
    process (so the client does not share this process's interpreter lock with the server)."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
    if not fs.exists("listing"):
        fs.mkdir("listing")
    out = []
    for count in counts:
        t = time.perf_counter()
        for i in range(0, count, 2000):
            fs.pipe({f"listing/n{count}/{j % 5}/{j:07d}.png": b"" for j in range(i, min(count, i + 2000))})
        put_s = time.perf_counter() - t
        got = subprocess.run([sys.executable, "-c", LIST, server.endpoint, f"n{count}"], capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.split()
        assert int(got[0]) == count, (got, count)
        out.append((count, put_s, float(got[1])))
        print(f"  {count} objects: put in {put_s:.0f} s, listed in {float(got[1]):.2f} s "
              f"({count / float(got[1]):,.0f} objects/s; the client's own CPU time {float(got[2]):.2f} s, "
              f"{count / max(float(got[2]), 1e-9):,.0f} objects per client CPU second)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--list-objects", type=int, nargs="*", default=[5000, 20000])
    ap.add_argument("--sources", nargs="*", default=list(SOURCES), help="a subset of: " + ", ".join(SOURCES))
    args = ap.parse_args(argv)
    server = S3Server().start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="vitaudit-bench-sources-") as tmp:
            for n in args.sizes:
                print(f"{n} images:", flush=True)
                rows += run_sources(Path(tmp), n, server, args.sources)
        if args.list_objects:
            print("listing:", flush=True)
            listed = listing_rate(server, args.list_objects)
            count, _, seconds = listed[-1]
            print(f"  at {count / seconds:,.0f} objects/s, 1,000,000 objects would list in {1e6 / count * seconds:.0f} s "
                  "(linear extrapolation; moto's time per page grows with the prefix, so the rate falls as it "
                  "grows, and the client's CPU time above is what vitaudit itself spends)", flush=True)
    finally:
        server.stop()
    print("\n| source | images | wall (s) | vs local files | peak RSS (MB) |\n|---|---|---|---|---|")
    for r in rows:
        local = next((x for x in rows if x["n"] == r["n"] and x["source"] == "local files"), r)
        print(f"| {r['source']} | {r['n']} | {r['wall']:.1f} | {r['wall'] / local['wall']:.2f}x | {r['rss']:.0f} |"
              + ("" if r["rc"] == 0 else f" exit {r['rc']}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
