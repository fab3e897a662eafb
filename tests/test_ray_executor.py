"""``--audit-executor ray`` on a real local Ray (2 CPUs) and on a simulated two-node cluster: the
same audit.json as the local executor, every image once when an actor is killed mid-pass, an image
that kills its worker each time, a model that cannot load on a worker, and one-line refusals.

Ray starts once for the module (several seconds); the audits join it by address from pytest
subprocesses, as a run joins a real cluster."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import importlib.util

import pytest

from vitaudit.audit import ray_cluster
from vitaudit.audit.ray_cluster import Cluster, ClusterError, RayOptions

if importlib.util.find_spec("ray") is None:  # found, not imported: Ray reads its settings on import
    pytest.skip("pip install 'vitaudit[ray]'", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT / "audits" / "datasets" / "scenes"
HELPERS = '''
"""Imported by the Ray workers (on PYTHONPATH): a region whose rasterising kills the process."""
import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KillerRegion:
    name: str

    def mask(self, size):
        os._exit(3)  # as a crash in native code would


@dataclass(frozen=True)
class Whole:
    name: str

    def mask(self, size):
        return np.ones(size, bool)
'''

EVERY_KIND = """\
models:
  vit: {name: "fixture:vit-scenes"}
  cnn: {name: "fixture:resnet-scenes"}
datasets:
  few:
    folder: data
    labels: folders
    on_error: skip
    regions:
      object: {mask: "masks/{stem}.png"}
expect:
  - few: vit accuracy > 0.1
  - few: mean vit.attention mass in object > 0.1
  - few: cnn.gradcam pointing game hits object for 10% of images
  - few: mean agreement(vit.rollout, cnn.gradcam) > -1
  - few: mean vit.attention baseline similarity > -2
  - few: mean cnn.gradcam deletion auc < 2 steps 4
  - few: mean cnn.gradcam sanity similarity < 2
"""


@pytest.fixture(scope="module")
def helpers(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("rayhelpers")
    (folder / "vitaudit_ray_helpers.py").write_text(HELPERS)
    return folder


@pytest.fixture(scope="module")
def local_ray(helpers: Path):
    """ray.init(num_cpus=2) on 127.0.0.1, its files in a temporary folder; workers import the helpers."""
    saved_env, saved_path = dict(os.environ), list(sys.path)
    ray_cluster._quiet_defaults(local=True)  # before Ray is imported: 127.0.0.1, a token of our own
    import ray

    if ray.is_initialized():
        ray.shutdown()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(helpers), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(helpers))
    temp = Path(os.environ.get("TMPDIR", "/tmp")) / f"vr{os.getpid()}"
    ctx = ray.init(num_cpus=2, _temp_dir=str(temp), _node_ip_address="127.0.0.1", include_dashboard=False,
                   log_to_driver=False, logging_level="ERROR")
    yield ctx.address_info["gcs_address"]
    ray_cluster.disconnect()
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
    os.environ.clear()
    os.environ.update(saved_env)
    sys.path[:] = saved_path


def _copy_scenes(path: Path, n_per_class: int) -> list[str]:
    picked = []
    for folder in sorted((SCENES / "clean").iterdir()):
        for src in sorted(folder.glob("*.png"))[:n_per_class]:
            (path / "data" / folder.name).mkdir(parents=True, exist_ok=True)
            (path / "masks").mkdir(exist_ok=True)
            shutil.copy(src, path / "data" / folder.name / src.name)
            shutil.copy(SCENES / "masks" / src.name, path / "masks" / src.name)
            picked.append(f"data/{folder.name}/{src.name}")
    return picked


def _every_kind_project(path: Path) -> None:
    """10 scenes (2 per class) and one file that is not an image (counted out, listed)."""
    _copy_scenes(path, 2)
    (path / "data" / "striped" / "broken.png").write_bytes(b"not a png")
    shutil.copy(next((path / "masks").glob("*.png")), path / "masks" / "broken.png")
    (path / "audit_k.yaml").write_text(EVERY_KIND)


def _results(path: Path) -> dict[str, dict]:
    """audit.json's results by node id, without what differs from run to run (durations)."""
    # the project's own folder (in the causes of unreadable images) differs from test to test
    doc = json.loads((path / "reports" / "audit.json").read_text().replace(str(path), "<project>"))
    out = {}
    for r, row in zip(doc["run"]["results"], doc["expectations"]):
        r = {**r, "per_image": row["per_image"]}  # written once, in the row
        r.pop("duration", None)
        out[r["nodeid"]] = r
    return out


def _run(pytester: pytest.Pytester, *args: str):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-p", "no:xdist", *args, timeout=900)


# ------------------------------------------------------------------ without a cluster


def test_an_unreachable_address_fails_in_one_line_within_30s(pytester: pytest.Pytester) -> None:
    (pytester.path / "audit_x.yaml").write_text(EVERY_KIND)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = _run(pytester, "--audit-executor", "ray", "--audit-ray-address", f"127.0.0.1:{port}")
    assert time.monotonic() - start < 30
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [ln for ln in result.stderr.lines if ln.startswith("ERROR")]
    assert errors == [f"ERROR: --audit-ray-address 127.0.0.1:{port}: no Ray cluster answers at 127.0.0.1:{port} "
                      "(Connection refused); start one with `ray start --head`, or use --audit-ray-address local"]


def test_xdist_with_ray_is_refused_in_one_line(pytester: pytest.Pytester) -> None:
    (pytester.path / "audit_x.yaml").write_text(EVERY_KIND)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--audit-executor", "ray")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --audit-executor ray spreads each dataset over the cluster itself; run it "
                                 "without pytest-xdist (-n/--dist)*"])


def test_workers_are_sized_against_the_cluster_in_one_line() -> None:
    cpu_only = Cluster("10.0.0.1:6379", {"CPU": 8.0}, nodes=2, started_here=False, owned=False)
    with pytest.raises(ClusterError, match=r"^--audit-ray-gpus-per-worker 1: the cluster at 10.0.0.1:6379 has 8 "
                                           r"CPUs and 0 GPUs; use --audit-ray-gpus-per-worker 0 for CPU workers$"):
        ray_cluster.pool(cpu_only, RayOptions(gpus_per_worker=1))
    with pytest.raises(ClusterError, match=r"^--audit-ray-workers 5: .* room for 4 workers of 2 CPUs$"):
        ray_cluster.pool(cpu_only, RayOptions(min_workers=5, cpus_per_worker=2))
    assert ray_cluster.pool(cpu_only, RayOptions()) == ray_cluster.Pool(8, 8, 1.0, 0.0)
    assert ray_cluster.pool(cpu_only, RayOptions(min_workers=1, max_workers=3)) == ray_cluster.Pool(1, 3, 1.0, 0.0)
    gpus = Cluster("a:1", {"CPU": 16.0, "GPU": 2.0}, nodes=1, started_here=False, owned=False)
    assert ray_cluster.pool(gpus, RayOptions()) == ray_cluster.Pool(2, 2, 1.0, 1.0)  # 1 GPU each by default


def test_the_driver_takes_each_row_once_and_only_rows_of_the_pass() -> None:
    """Rows come back keyed by index: a repeat (a retried task) is dropped and counted, a row for
    an image or an expectation the pass does not have is left out, and what is missing is known."""
    from types import SimpleNamespace

    from vitaudit.audit.ray_pass import Collected, Rows
    from vitaudit.image_values import ImageValue
    from vitaudit.datasets.base import Dataset, Sample

    samples = tuple(Sample(i, f"/d/{i}.png", f"{i}.png", "cat") for i in range(5))
    got = Collected(Dataset("d", "folder", samples), [SimpleNamespace(id="a", region=None),
                                                       SimpleNamespace(id="b", region=None)])
    rows = Rows()
    for i in (0, 1, 1, 7):  # image 1 twice, image 7 is not in the dataset
        rows.add(i, -1, None, None, "cannot read" if i == 1 else None, "10.0.0.1 node x pid 9 cpu")
        rows.add(i, 0, 0.5 + i, True, None)
        rows.add(i, 1, None, False, "no signal")
    rows.add(2, 5, 1.0, True, None)  # an expectation the pass does not have
    got.add(rows.arrays())
    assert (got.done, got.duplicates, got.strays) == (2, 3, 4)
    assert got.unreadable == [(1, "1.png", "cannot read")] and got.workers == {"10.0.0.1 node x pid 9 cpu"}
    assert [list(got.image_values(k)) for k in range(2)] == [[ImageValue(0, "0.png", 0.5, True, "cat"), ImageValue(1, "1.png", 1.5, True, "cat")],
                          [ImageValue(0, "0.png", None, False, "cat", "no signal"),
                           ImageValue(1, "1.png", None, False, "cat", "no signal")]]
    assert got.missing(0, 5) == [2, 3, 4]


# ------------------------------------------------------------------ on a local 2-CPU Ray

LOCAL_RUNS: dict[str, dict] = {}


def test_the_shipped_dataset_audit_gives_the_same_audit_json_under_ray(pytester: pytest.Pytester,
                                                                        local_ray: str) -> None:
    shutil.copy(ROOT / "audits" / "audit_datasets.yaml", pytester.path / "audit_datasets.yaml")
    (pytester.path / "datasets").symlink_to(ROOT / "audits" / "datasets")
    local = _run(pytester, "--audit-executor", "local")
    local_results = _results(pytester.path)
    on_ray = _run(pytester, "--audit-executor", "ray", "--audit-ray-address", local_ray)
    ray_results = _results(pytester.path)
    assert on_ray.ret == local.ret, on_ray.stdout.str()[-3000:]
    assert len(local_results) > 20 and set(ray_results) == set(local_results)
    for nodeid, r in local_results.items():
        assert ray_results[nodeid] == r, nodeid  # outcome, value, n_images, per-image values, unreadable, cards
    doc = json.loads((pytester.path / "reports" / "audit.json").read_text())
    env = doc["run"]["environment"]
    assert env["executor"] == f"ray (cluster {local_ray})"
    count, workers = env["workers"].split(": ", 1)
    # the file's seven datasets ran in one pipeline: its two actors started (and loaded the models) once
    assert int(count) == 2 and all(w.startswith("127.0.0.1 node ") and w.endswith(" cpu")
                                   for w in workers.removesuffix(" ...").split("; "))


def test_every_kind_gives_the_same_audit_json_under_ray(pytester: pytest.Pytester, local_ray: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Prediction, localisation, comparison, baseline, faithfulness and sanity on 10 images.

    Like with like: each 1-CPU actor computes with one thread (Ray sets ``OMP_NUM_THREADS=1``),
    so the local reference does too. Some CPUs round some products differently with another
    thread count (an AVX-512 Xeon here: a batch-1 convolution, 1e-7 of the logits, between 1 and
    2 MKL threads), so against the local run with every core the values agree within rounding."""
    _every_kind_project(pytester.path)
    batches = "--audit-batch-size=4"  # 3 batches: both actors get work
    _run(pytester, "--audit-executor", "ray", "--audit-update-baselines").assert_outcomes(passed=7)  # runs locally
    _run(pytester, "--audit-executor", "local", batches).assert_outcomes(passed=7)
    every_core = _results(pytester.path)
    with monkeypatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        _run(pytester, "--audit-executor", "local", batches).assert_outcomes(passed=7)
    local = _results(pytester.path)
    _run(pytester, "--audit-executor", "ray", "--audit-ray-address", local_ray, batches).assert_outcomes(passed=7)
    on_ray = _results(pytester.path)
    assert local == on_ray
    assert set(every_core) == set(local)
    for nodeid, r in every_core.items():
        assert r["outcome"] == local[nodeid]["outcome"], nodeid
        assert [(v["image"], v["passed"]) for v in r["per_image"]] == [(v["image"], v["passed"]) for v in
                                                                       local[nodeid]["per_image"]], nodeid
        assert [v["value"] for v in r["per_image"]] == pytest.approx([v["value"] for v in local[nodeid]["per_image"]],
                                                                     rel=1e-5, abs=1e-6), nodeid
    assert all(r["n_images"] == 10 and len(r["per_image"]) == 10 for r in local.values())
    for r in local.values():  # the same unreadable list under both (compared above), and it is not empty
        (listed,) = r["aggregate_view"]["not_counted"]
        assert listed.startswith("data/striped/broken.png: ")
    LOCAL_RUNS["every_kind"] = local
    LOCAL_RUNS["baselines"] = str(pytester.path / "baselines")


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapWorker(MapBatches(MeasureBatches))" in cmd:
                pids.append(int(entry.name))
    return pids


def _evaluator(path: Path, text: str):
    from vitaudit.audit.evaluate import Evaluator
    from vitaudit.audit.session import AuditSession
    from vitaudit.spec import parse_audit_file

    (path / "audit_r.yaml").write_text(text)
    spec = parse_audit_file(path / "audit_r.yaml")
    assert spec.errors == ()
    return Evaluator(spec, AuditSession(device="cpu", pictures=False))


def _rows(run) -> dict[str, list[tuple]]:
    return {k: [(v.index, v.image, v.value, v.passed, v.error) for v in vals] for k, vals in run.values.items()}


def test_an_actor_killed_mid_pass_loses_no_image_and_repeats_none(tmp_path: Path, local_ray: str) -> None:
    from vitaudit.audit.dataset_pass import run_dataset
    from vitaudit.audit.ray_pass import run_dataset_ray

    _copy_scenes(tmp_path, 6)
    ev = _evaluator(tmp_path, EVERY_KIND.split("expect:")[0] + "expect:\n"
                    "  - few: mean vit.attention mass in object > 0.1\n"
                    "  - few: cnn.gradcam pointing game hits object for 10% of images\n")
    dataset, exps = ev.spec.datasets["few"], list(ev.spec.expectations)
    killed: list[int] = []

    def kill_one(done: int, total: int, workers: int = 0) -> None:
        if not killed and done < total:
            pids = _actor_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    on_ray = run_dataset_ray(ev, dataset, exps, options=RayOptions(address="auto"), batch_size=3, progress=kill_one)
    assert killed, "no actor was running to kill"
    local = run_dataset(ev, dataset, exps, batch_size=3)
    assert _rows(on_ray) == _rows(local)
    for vals in on_ray.values.values():
        assert sorted(v.index for v in vals) == list(range(30))


def test_an_image_that_kills_its_worker_each_time_fails_alone(tmp_path: Path, local_ray: str) -> None:
    from dataclasses import replace

    from vitaudit_ray_helpers import KillerRegion, Whole

    from vitaudit.audit.ray_pass import run_dataset_ray

    _copy_scenes(tmp_path, 1)
    ev = _evaluator(tmp_path, EVERY_KIND.split("expect:")[0] + "expect:\n"
                    "  - few: mean vit.attention mass in object > 0.1\n")
    dataset = ev.spec.datasets["few"]
    samples = tuple(replace(s, regions={"object": KillerRegion("object") if s.index == 2 else Whole("object")})
                    for s in dataset.samples)
    dataset = replace(dataset, samples=samples)
    start = time.monotonic()
    run = run_dataset_ray(ev, dataset, list(ev.spec.expectations), options=RayOptions(address="auto"), batch_size=4)
    assert time.monotonic() - start < 400
    (values,) = run.values.values()
    assert [v.index for v in values] == [0, 1, 2, 3, 4]
    bad = values[2]
    assert bad.value is None and bad.passed is False
    assert bad.error.startswith("its worker process died each time it was measured")
    assert all(v.value is not None and v.error is None for i, v in enumerate(values) if i != 2)


def test_a_model_that_cannot_load_on_a_worker_fails_its_files_items_in_one_line(pytester: pytest.Pytester,
                                                                                local_ray: str) -> None:
    """The checkpoint is there where the driver loads it, and gone by the time the workers look."""
    _copy_scenes(pytester.path, 1)
    shutil.copy(ROOT / "fixtures" / "weights" / "vit-scenes.safetensors", pytester.path / "mine.safetensors")
    head = EVERY_KIND.split("expect:")[0]
    (pytester.path / "audit_a.yaml").write_text(
        head.replace('vit: {name: "fixture:vit-scenes"}',
                     'vit: {name: "fixture:vit-scenes", checkpoint: mine.safetensors}')
        + "expect:\n  - few: mean vit.attention mass in object > 0.1\n")
    (pytester.path / "audit_b.yaml").write_text(head + "expect:\n  - few: mean vit.attention mass in object > 0.1\n")
    pytester.makeconftest("""
        import os
        import vitaudit.audit.ray_pass as ray_pass

        real = ray_pass.pool

        def pool(cluster, options):  # after the driver loaded the models, before the workers do
            if os.path.exists("mine.safetensors"):
                os.remove("mine.safetensors")
            return real(cluster, options)

        ray_pass.pool = pool
    """)
    result = _run(pytester, "--audit-executor", "ray", "--audit-ray-address", local_ray)
    result.assert_outcomes(passed=1, failed=1)  # the report's outcome: error (bad input), below
    outcomes = {r["file"]: (r["outcome"], r["message"]) for r in _results(pytester.path).values()}
    assert outcomes["audit_b.yaml"][0] == "passed"
    outcome, message = outcomes["audit_a.yaml"]
    assert outcome == "error"
    assert "\n" not in message
    assert "none of its 5 images could be measured" in message
    assert "model 'vit' (fixture:vit-scenes, declared at " in message and "failed to load" in message
    assert "(on worker 127.0.0.1, pid " in message


# ------------------------------------------------------------------ on two simulated nodes


def test_two_nodes_give_the_same_audit_json(pytester: pytest.Pytester, local_ray: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    from ray.cluster_utils import Cluster as RayCluster

    if "every_kind" not in LOCAL_RUNS:
        pytest.skip("needs the local run of test_every_kind_gives_the_same_audit_json_under_ray")
    ray_cluster.disconnect()
    ray.shutdown()
    temp = Path(os.environ.get("TMPDIR", "/tmp")) / f"vr2n{os.getpid()}"  # not /tmp/ray: ours alone
    # cluster_utils writes the head's address to <RAY_TMPDIR or TMPDIR or /tmp>/ray/ray_current_cluster
    # whatever temp_dir says (and fails where that folder does not exist): there too, ours alone
    (temp / "ray").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    cluster = RayCluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                               "temp_dir": str(temp)})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        _every_kind_project(pytester.path)
        shutil.copytree(LOCAL_RUNS["baselines"], pytester.path / "baselines")  # the maps the local run used
        result = _run(pytester, "--audit-executor", "ray", "--audit-ray-address", cluster.address,
                      "--audit-batch-size=4")
        result.assert_outcomes(passed=7)
        assert _results(pytester.path) == LOCAL_RUNS["every_kind"]
        doc = json.loads((pytester.path / "reports" / "audit.json").read_text())
        workers = doc["run"]["environment"]["workers"]
        assert workers.startswith("2: ")  # one 1-CPU actor on each node
        assert len({w.split(" pid ")[0] for w in workers[3:].split("; ")}) == 2, workers
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
