"""The same dataset audit over four sources: local files, a local S3 server, Parquet, WebDataset.

Generates N fixture scenes with object masks (``fixtures/dataset_files.write_scene_dataset``),
writes them also as Parquet parts and tar shards (``fixtures/dataset_tables``), uploads the
folder and its masks to an S3-compatible server on 127.0.0.1 (``--server``: SeaweedFS in its own
process, the default when installed, or moto in server mode inside this process; s3fs talks HTTP
to either), then runs ``pytest`` on one audit per source, each in a fresh process: two aggregate
expectations (``fixture:vit-scenes`` attention mass in the object, accuracy), so decoding,
fetching and the models' forwards are what is timed. It prints, per source and size, the wall
time, its ratio to local files (goal: within 1.2x, fetching overlapping the models), the audit
process's CPU time (the client's), the S3 server's CPU time over that run (the server shares this
machine's cores, which a real object store would not), the client CPU per image beyond local
files' (what fetching costs the client), and the peak resident memory (goal: flat in N).

Then the listing: for each of ``--list-objects``, that many one-byte objects are put under a
prefix and the prefix is listed as a ``folder:`` dataset lists it (``Store.find``: one paged
``ListObjectsV2`` walk, nothing decoded), in a fresh process, once with the obstore fast path
and once with s3fs alone (``--list-clients``; ``botocore``: its raw paginator, for comparison).
Each line gives the wall time, the client's CPU time and the server's, so the time for
1,000,000 objects (goal: under 30 s) says whose it is. The listing runs against SeaweedFS
(``fixtures/seaweedfs_server.py``, ``pip install 'vitaudit[bench]'``), whose pages cost the same
however long the prefix, or against moto (``--list-server moto``), which rescans the whole
prefix for every 1,000-key page.

Run: ``python benchmarks/bench_sources.py [--sizes 1000 10000] [--server seaweedfs|moto]
[--list-objects 10000 1000000]``
(``--sizes`` with no number: the listing only). The servers share this machine's cores with
the audit and the client, unlike a real object store; ``--pin`` gives SeaweedFS the last core
and every source's audit the others (local files too, so the ratio compares like with like).
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

from s3_server import S3Server  # noqa: E402

CLASSES = ["striped", "checkered", "dotted", "confetti", "rainbow"]

#: The sources timed; "S3, s3fs reads" is the S3 source with obstore's reads switched off
#: (``VITAUDIT_S3_READS=s3fs``), to show what the client's reads cost each way (not run by default).
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
    "S3, s3fs reads": """
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

SOURCE_ENV = {"S3, s3fs reads": {"VITAUDIT_S3_READS": "s3fs"}}
DEFAULT_SOURCES = [name for name in SOURCES if name != "S3, s3fs reads"]

AUDIT = """\
models:
  vit: {{name: "fixture:vit-scenes"}}
datasets:
  scenes:{source}
expect:
  - scenes: mean vit.attention mass in object > 0.0
  - scenes: vit accuracy > 0.0
"""


def prepare(root: Path, n: int, server) -> int:
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


WRAP = """\
import os, resource, subprocess, sys, time
if os.environ.get("BENCH_CLIENT_CPUS"):  # --pin: the audit (and its children) on these cores only
    os.sched_setaffinity(0, {int(c) for c in os.environ["BENCH_CLIENT_CPUS"].split(",")})
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
wall = time.perf_counter() - t
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, use.ru_maxrss / 1024, use.ru_utime + use.ru_stime, rc)
"""


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, int]:
    """Wall time (s), peak RSS (MB), CPU time (s, user + system) and exit code of ``cmd`` in a
    fresh process (with ``env`` added to the environment)."""
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    wall, rss, cpu, rc = out.stdout.split()
    return float(wall), float(rss), float(cpu), int(rc)


def run_sources(tmp: Path, n: int, server, server_cpu, names: list[str], repeat: int = 1) -> list[dict]:
    """Each source's audit of ``n`` scenes, ``repeat`` rounds (each round runs every source once, so
    a burst of load from elsewhere falls on all of them); per source the round with the median
    wall time."""
    import statistics

    root = tmp / f"n{n}"
    t = time.perf_counter()
    shards = prepare(root, n, server)
    print(f"  prepared {n} scenes (files, Parquet, {shards} shards, upload) in {time.perf_counter() - t:.0f} s",
          flush=True)
    runs: dict[str, list[dict]] = {}
    for round_ in range(repeat):
        for i, (name, source) in enumerate(SOURCES.items()):
            if name not in names:
                continue
            audit = root / f"audit_{i}.yaml"
            audit.write_text(AUDIT.format(source=source.format(root=root, n=n, endpoint=server.endpoint,
                                                               classes=CLASSES, first="000",
                                                               last=f"{shards - 1:03d}")))
            cmd = [sys.executable, "-m", "pytest", str(audit), "-q", "-p", "no:cacheprovider", "--audit-no-report",
                   "--rootdir", str(root)]
            before = server_cpu()
            wall, rss, cpu, rc = measured(cmd, SOURCE_ENV.get(name))
            srv = server_cpu() - before
            if rc != 0:  # say why: the same run again, its summary lines
                tail = subprocess.run(cmd + ["-rf", "--tb=line"], capture_output=True, text=True,
                                      env={**os.environ, **SOURCE_ENV.get(name, {})}).stdout.splitlines()
                print("\n".join("    | " + line[:300] for line in tail[-8:]), flush=True)
            runs.setdefault(name, []).append({"source": name, "n": n, "wall": wall, "rss": rss, "rc": rc, "cpu": cpu,
                                              "server_cpu": srv})
            print(f"  {name:18s} {wall:7.1f} s  client CPU {cpu:7.1f} s  server CPU {srv:6.1f} s  "
                  f"peak {rss:6.0f} MB  exit {rc}" + (f"  (round {round_ + 1})" if repeat > 1 else ""), flush=True)
    out = []
    for name, mine in runs.items():
        median = statistics.median_low([r["wall"] for r in mine])
        out.append(dict(next(r for r in mine if r["wall"] == median), rounds=len(mine)))
    return out


LIST = """\
import sys, time
import botocore.session
from vitaudit.storage import Store
t, cpu = time.perf_counter(), time.process_time()
if sys.argv[3] == "botocore":  # the raw paginator: what any botocore-based client pays at least
    bucket, prefix = sys.argv[2][len("s3://"):].split("/", 1)
    s3 = botocore.session.get_session().create_client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
    found = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
             for o in page.get("Contents", ())]
else:
    found = Store({"endpoint_url": sys.argv[1]}).find(sys.argv[2], (".png",))
print(len(found), time.perf_counter() - t, time.process_time() - cpu)
"""
#: How the listing is parsed: ``Store.find``'s obstore fast path, ``Store.find`` with s3fs alone,
#: or botocore's own paginator (not vitaudit's code: the floor for any botocore-based client).
CLIENTS = {"obstore": "", "s3fs": "s3fs", "botocore": ""}


def listing_rate(server, counts: list[int], clients: list[str], server_cpu) -> list[dict]:
    """For each count: put that many one-byte objects under a fresh prefix, then list the prefix
    as a ``folder:`` dataset does (``Store.find``), in another process (so the client does not
    share this process's interpreter lock with an in-process server), once per client. Records
    the listing's wall time, the client's CPU time and the server's (``server_cpu()`` before and
    after), so the million figure can say whose time it is."""
    out = []
    for count in counts:
        t = time.perf_counter()
        keys = (f"n{count}/{j % 5}/{j:07d}.png" for j in range(count))
        put_small(server, "listing", keys)
        put_s = time.perf_counter() - t
        for client in clients:
            before = server_cpu()
            got = subprocess.run([sys.executable, "-c", LIST, server.endpoint, f"s3://listing/n{count}", client],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT), "VITAUDIT_S3_LISTING": CLIENTS[client]}
                                 ).stdout.split()
            srv = server_cpu() - before
            assert int(got[0]) == count, (got, count)
            wall, cpu = float(got[1]), float(got[2])
            out.append({"count": count, "client": client, "put": put_s, "wall": wall, "client_cpu": cpu,
                        "server_cpu": srv})
            print(f"  {count:>9,} objects, {client:7s}: put in {put_s:5.0f} s, listed in {wall:6.2f} s "
                  f"({count / wall:9,.0f} objects/s); client CPU {cpu:6.2f} s, server CPU {srv:6.2f} s", flush=True)
    return out


def put_small(server, bucket: str, keys) -> None:
    """One-byte objects (not empty ones: an empty object could be a folder marker, which the
    fast listing resolves with a HEAD request each) at ``keys``."""
    if hasattr(server, "put_small"):  # SeaweedFS: through its filer, thousands a second
        server.put_small(bucket, keys)
        return
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=server.endpoint)
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    batch: dict[str, bytes] = {}
    for key in keys:
        batch[f"{bucket}/{key}"] = b"x"
        if len(batch) == 2000:
            fs.pipe(batch)
            batch = {}
    if batch:
        fs.pipe(batch)


def listing_section(args: argparse.Namespace) -> None:
    print(f"listing ({args.list_server}):", flush=True)
    server, server_cpu = start_server(args.list_server)
    try:
        rows = listing_rate(server, args.list_objects, args.list_clients, server_cpu)
    finally:
        server.stop()
    for client in args.list_clients:
        mine = sorted((r for r in rows if r["client"] == client), key=lambda r: r["count"])
        big = mine[-1]
        if big["count"] == 1_000_000:
            print(f"  {client}: 1,000,000 objects listed in {big['wall']:.1f} s (client CPU {big['client_cpu']:.1f} s, "
                  f"server CPU {big['server_cpu']:.1f} s)", flush=True)
            continue
        # A line through the two largest counts: a fixed cost (imports, the client's set-up) plus a
        # cost per object; extrapolating from one point would charge the fixed cost a million-fold.
        small = mine[-2] if len(mine) > 1 else {"count": 0, "wall": 0.0, "client_cpu": 0.0, "server_cpu": 0.0}
        at = {k: small[k] + (big[k] - small[k]) * (1e6 - small["count"]) / (big["count"] - small["count"])
              for k in ("wall", "client_cpu", "server_cpu")}
        print(f"  {client}: 1,000,000 objects would list in {at['wall']:.0f} s (linear through {small['count']:,} and "
              f"{big['count']:,} objects; client CPU {at['client_cpu']:.0f} s, server CPU {at['server_cpu']:.0f} s)",
              flush=True)
    if args.list_server == "moto":
        print("  (moto's time per page grows with the prefix, so its rate falls as the prefix grows)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--list-objects", type=int, nargs="*", default=[10000, 100000])
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds per size (every source once a round); the table gives each source's median round")
    ap.add_argument("--server", choices=["seaweedfs", "moto"], default=None,
                    help="the S3 server the S3 source reads from (default: seaweedfs when installed, else moto, "
                         "which runs inside this process)")
    ap.add_argument("--list-server", choices=["seaweedfs", "moto"], default=None,
                    help="the S3 server the listing runs against (default: seaweedfs when installed, else moto)")
    ap.add_argument("--pin", action="store_true",
                    help="the S3 server (SeaweedFS) on the last core and every audit, of every source, on the "
                         "others: a server that takes no core from the client, as a real object store does not")
    ap.add_argument("--list-clients", nargs="*", default=["obstore", "s3fs"], choices=list(CLIENTS))
    ap.add_argument("--sources", nargs="*", default=DEFAULT_SOURCES, choices=list(SOURCES), metavar="SOURCE",
                    help="the sources to time (default: all but 'S3, s3fs reads'), of: " + ", ".join(SOURCES))
    args = ap.parse_args(argv)
    from seaweedfs_server import weed_binary

    args.server = args.server or ("seaweedfs" if weed_binary() else "moto")
    args.list_server = args.list_server or ("seaweedfs" if weed_binary() else "moto")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    server_cpus = None
    if args.pin:
        cores = sorted(os.sched_getaffinity(0))
        if args.server != "seaweedfs" or len(cores) < 2:
            ap.error("--pin needs SeaweedFS (moto runs in this process) and at least 2 cores")
        server_cpus = {cores[-1]}
        os.environ["BENCH_CLIENT_CPUS"] = ",".join(str(c) for c in cores[:-1])
        print(f"pinned: S3 server on core {cores[-1]}, every audit on cores {os.environ['BENCH_CLIENT_CPUS']}")
    rows = []
    if args.sizes:
        server, server_cpu = start_server(args.server, server_cpus)
        print(f"sources (S3: {args.server} on {server.endpoint}):", flush=True)
        try:
            with tempfile.TemporaryDirectory(prefix="vitaudit-bench-sources-") as tmp:
                warm_up(Path(tmp))
                for n in args.sizes:
                    print(f"{n} images:", flush=True)
                    rows += run_sources(Path(tmp), n, server, server_cpu, args.sources, args.repeat)
        finally:
            server.stop()
    if args.list_objects:
        listing_section(args)
    if rows:
        print("\n| source | images | wall (s) | vs local files | client CPU (s) | beyond local, per image | "
              "server CPU (s) | peak RSS (MB) |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        local = next((x for x in rows if x["n"] == r["n"] and x["source"] == "local files"), r)
        extra = (r["cpu"] - local["cpu"]) / r["n"] * 1000
        print(f"| {r['source']} | {r['n']} | {r['wall']:.1f} | {r['wall'] / local['wall']:.2f}x | {r['cpu']:.1f} | "
              f"{extra:+.1f} ms | {r['server_cpu']:.1f} | {r['rss']:.0f} |" + ("" if r["rc"] == 0 else f" exit {r['rc']}"))
    return 0


def warm_up(tmp: Path) -> None:
    """One untimed audit of 10 local scenes, so the first timed process does not also pay for
    reading torch, timm and the fixture models from a cold disk cache."""
    import dataset_files

    root = tmp / "warm"
    dataset_files.write_scene_dataset(root, 10, shortcut=False, formats=("masks",))
    audit = root / "audit_warm.yaml"
    audit.write_text(AUDIT.format(source=SOURCES["local files"].format(root=root)))
    subprocess.run([sys.executable, "-m", "pytest", str(audit), "-q", "-p", "no:cacheprovider", "--audit-no-report",
                    "--rootdir", str(root)], capture_output=True)


def start_server(kind: str, cpus: set[int] | None = None):
    """A started S3 server of ``kind`` and a function giving its CPU seconds so far: SeaweedFS's
    process's own, or, for moto (threads of this process, which otherwise only waits on the
    audit's), this process's."""
    if kind == "seaweedfs":
        from seaweedfs_server import SeaweedServer

        server = SeaweedServer(cpus).start()
        return server, server.cpu_seconds
    return S3Server().start(), time.process_time


if __name__ == "__main__":
    raise SystemExit(main())
