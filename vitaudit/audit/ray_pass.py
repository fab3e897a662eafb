"""The dataset pass on a Ray cluster: one Ray Data pipeline per (audit file, dataset).

The driver sends sample descriptors (path, label, annotations; never pixels), one row per batch:
the batches are the index ranges of the configured batch size, as in the local pass, so every
image is measured in the same company under every executor and the values are identical.
``map_batches`` runs :class:`MeasureBatches` in an actor pool: its constructor loads the file's
models once per actor (weights read where the actor runs), its call decodes and measures a batch
with the local pass's own code (:func:`~.dataset_pass.measure_shard`) and returns per-image rows
(:data:`COLUMNS`, Arrow-friendly). The driver keeps only the per-image values.

Nothing lost, nothing twice, never hung (Ray Data's defaults are none of these):

- a per-image error is caught in the actor and becomes that image's error value;
- actors restart, but a batch is retried a finite number of times (:data:`TASK_RETRIES`); a
  small :class:`Ledger` actor counts the attempts at each batch, so a batch that killed its
  worker twice is then measured one image at a time, and an image that kills its worker even
  alone is left out with the cause while the rest of its batch is measured;
- the driver checks that the rows are exactly the input set (one per image and expectation,
  keyed by index); a pipeline that fails is run again for what is missing (:data:`ROUNDS`),
  rows that a finished pipeline left out are measured by the driver itself, and anything still
  missing fails with the cause.
"""
from __future__ import annotations

import os
import pickle
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from vitaudit.image_values import ImageValues, ValuesBuilder

from .dataset_pass import DatasetRun, Plan, SampleEvaluator, ShardValues, batch_size_for, decoded, measure_shard
from .ray_cluster import Cluster, Pool, RayOptions, connect, pool, quiet_warnings
from .session import AuditSession

if TYPE_CHECKING:
    from vitaudit.datasets.base import Dataset, Sample
    from vitaudit.spec import AuditSpec, Expectation

    from .evaluate import Evaluator

#: Retries of one batch after its worker died (the first two measure it whole, the later ones
#: one image at a time, leaving out an image that was being measured when a worker died).
TASK_RETRIES = 3
#: Pipelines run for one pass: the first, then again for the batches a failed one left missing.
ROUNDS = 3
#: Per-image rows: ``exp`` is the expectation's position in the pass (-1: the image's own row,
#: with ``error`` the cause when it could not be read, and ``worker`` who measured it); ``""``
#: stands for no error, ``passed`` -1 for none.
COLUMNS = ("index", "exp", "value", "has_value", "passed", "error", "worker")


class Rows:
    """Per-image rows as numpy columns (what ``map_batches`` returns)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def add(self, index: int, exp: int, value: float | None, passed: bool | None, error: str | None,
            worker: str | None = None) -> None:
        c = self.cols
        c["index"].append(index)
        c["exp"].append(exp)
        c["value"].append(np.nan if value is None else float(value))
        c["has_value"].append(value is not None)
        c["passed"].append(-1 if passed is None else int(bool(passed)))
        c["error"].append(error)
        c["worker"].append(worker)

    def arrays(self) -> dict[str, np.ndarray]:
        c = self.cols
        # Strings with "" for none: a None among strings does not survive Arrow's conversion as None.
        err = np.asarray([e or "" for e in c["error"]], dtype=str)
        who = np.asarray([w or "" for w in c["worker"]], dtype=str)
        return {"index": np.asarray(c["index"], dtype=np.int64), "exp": np.asarray(c["exp"], dtype=np.int32),
                "value": np.asarray(c["value"], dtype=np.float64), "has_value": np.asarray(c["has_value"], dtype=bool),
                "passed": np.asarray(c["passed"], dtype=np.int8), "error": err, "worker": who}


def _counted(exp: "Expectation", sample: "Sample") -> bool:
    """Whether ``sample`` counts for ``exp`` (an expectation about a region counts the images that have it)."""
    return exp.region is None or exp.region.region.name in sample.regions


class Ledger:
    """Attempts at each batch, and the image each was measuring alone (for the next attempt).

    Made a Ray actor by :func:`_ledger`; one per pass, on the driver's node, without a CPU."""

    def __init__(self) -> None:
        self.attempts: dict[int, int] = {}
        self.current: dict[int, int] = {}  # batch -> the image being measured alone
        self.killers: dict[int, set[int]] = {}

    def begin(self, batch: int) -> tuple[int, list[int]]:
        """The attempt number of ``batch`` (1 on the first), and its images that killed a worker alone."""
        self.attempts[batch] = self.attempts.get(batch, 0) + 1
        if batch in self.current:  # the last attempt died while measuring this image alone
            self.killers.setdefault(batch, set()).add(self.current.pop(batch))
        return self.attempts[batch], sorted(self.killers.get(batch, ()))

    def alone(self, batch: int, index: int | None) -> None:
        if index is None:
            self.current.pop(batch, None)
        else:
            self.current[batch] = index


def _ledger():
    import ray

    return ray.remote(num_cpus=0, max_restarts=0)(Ledger).remote()


class MeasureBatches:
    """Ray Data's callable class: models loaded once per actor, each call measures whole batches.

    ``spec`` is the audit file's (without its datasets' sample lists); ``exp_ids`` the
    expectations the driver asks for, in order (the ``exp`` column indexes them); ``max_side`` and
    ``batch_size`` the driver session's."""

    def __init__(self, spec: "AuditSpec", dataset: "Dataset", exp_ids: Sequence[str], max_side: int | None,
                 ledger: Any, batch_size: int | None = None) -> None:
        import ray

        from .evaluate import Evaluator

        self.ledger = ledger
        node = ray.util.get_node_ip_address()
        node_id = ray.get_runtime_context().get_node_id()[:8]
        # The driver's session options that measuring reads (--audit-batch-size also sizes the
        # batches of a faithfulness curve's forwards): the same values as on the driver.
        session = AuditSession(device="auto", pictures=False, max_side=max_side, batch_size=batch_size)
        evaluator = Evaluator(spec, session)
        by_id = {e.id: e for e in spec.expectations}
        self.exps = [by_id[i] for i in exp_ids]
        self.plan = Plan(evaluator, self.exps)
        devices = sorted({str(m.device) for m in self.plan.models.values()}) or ["cpu"]
        self.worker = f"{node} node {node_id} pid {os.getpid()} {'+'.join(devices)}"
        # What stops an expectation on this worker alone (the driver's own problems were left out)
        self.problems = {e.id: f"{self.plan.problems[e.id]} (on worker {node}, pid {os.getpid()})"
                         for e in self.exps if e.id in self.plan.problems}
        self.sample_ev = SampleEvaluator(evaluator, self.plan, dataset)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        rows = Rows()
        for start, blob in zip(batch["start"], batch["samples"]):
            start = int(start)
            samples: list["Sample"] = pickle.loads(blob)
            attempt, killers = ray.get(self.ledger.begin.remote(start))
            if attempt <= 2:
                self._whole(samples, rows)
            else:
                self._alone(start, samples, set(killers), attempt, rows)
        return rows.arrays()

    def _whole(self, samples: list["Sample"], rows: Rows) -> None:
        _, images = next(decoded(samples, len(samples), workers=0))
        try:
            shard = measure_shard(self.sample_ev, samples, images)
        except Exception:  # noqa: BLE001 - one image's error must not cost the others: measure them alone
            for s, im in zip(samples, images):
                self._one(s, im, rows)
            return
        self._emit(samples, shard, rows)

    def _alone(self, start: int, samples: list["Sample"], killers: set[int], attempt: int, rows: Rows) -> None:
        for s in samples:
            if s.index in killers:
                cause = (f"its worker process died each time it was measured ({attempt - 1} attempts, the last "
                         "with this image alone: a crash in native code or out of memory); not measured")
                self._fail(s, cause, rows)
                continue
            self.ledger.alone.remote(start, s.index)
            _, images = next(decoded([s], 1, workers=0))
            self._one(s, images[0], rows)
        self.ledger.alone.remote(start, None)

    def _one(self, sample: "Sample", image: Any, rows: Rows) -> None:
        try:
            shard = measure_shard(self.sample_ev, [sample], [image])
        except Exception as exc:  # noqa: BLE001 - that image fails with the cause
            self._fail(sample, f"{type(exc).__name__}: {' '.join(str(exc).split())}", rows)
            return
        self._emit([sample], shard, rows)

    def _fail(self, sample: "Sample", cause: str, rows: Rows) -> None:
        rows.add(sample.index, -1, None, None, None, self.worker)
        for k, exp in enumerate(self.exps):
            if _counted(exp, sample):
                rows.add(sample.index, k, None, False, cause)

    def _emit(self, samples: list["Sample"], shard: ShardValues, rows: Rows) -> None:
        unreadable = {i: cause for i, _, cause in shard.unreadable}
        for s in samples:
            rows.add(s.index, -1, None, None, unreadable.get(s.index), self.worker)
        for k, exp in enumerate(self.exps):
            problem = self.problems.get(exp.id)
            if problem is not None:
                for s in samples:
                    if s.index not in unreadable and _counted(exp, s):
                        rows.add(s.index, k, None, False, problem)
                continue
            for v in shard.values.get(exp.id, []):
                rows.add(v.index, k, v.value, v.passed, v.error)


def _text(x: Any) -> str | None:
    """A string cell as it comes back ("" or a missing cell: none)."""
    if x is None or (isinstance(x, float) and x != x) or x == "":
        return None
    return str(x)


class Collected:
    """What the driver has received: exactly one row per (image, expectation), keyed by index."""

    def __init__(self, dataset: "Dataset", exps: Sequence["Expectation"]) -> None:
        n = len(dataset.samples)
        self.samples = dataset.samples
        self.exps = list(exps)
        self.seen = np.zeros(n, dtype=bool)
        self.seen_exp = np.zeros((len(self.exps), n), dtype=bool)
        self.values = [ValuesBuilder() for _ in self.exps]  # columns, per expectation
        self.unreadable: list[tuple[int, str, str]] = []
        self.workers: set[str] = set()
        self.done = 0
        self.duplicates = 0
        self.strays = 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Take the rows of one batch of results; a row for an (image, expectation) already taken,
        or for an image or expectation the pass does not have, is counted and left out."""
        n = len(self.samples)
        index = np.asarray(batch["index"], dtype=np.int64)
        exp = np.asarray(batch["exp"], dtype=np.int64)
        ok = (index >= 0) & (index < n) & (exp < len(self.exps))
        self.strays += int((~ok).sum())
        rows = np.flatnonzero(ok)
        marks = rows[exp[rows] < 0]
        marks = marks[self._first(self.seen, index[marks])]
        self.seen[index[marks]] = True
        self.done += len(marks)
        error, worker = batch["error"], batch["worker"]
        for j in marks:
            who, cause = _text(worker[j]), _text(error[j])
            if who is not None:
                self.workers.add(who)
            if cause is not None:
                self.unreadable.append((int(index[j]), self.samples[index[j]].name, cause))
        value, has, passed = batch["value"], batch["has_value"], batch["passed"]
        for k in np.unique(exp[rows][exp[rows] >= 0]):
            sel = rows[exp[rows] == k]
            sel = sel[self._first(self.seen_exp[k], index[sel])]
            self.seen_exp[k][index[sel]] = True
            has_k = np.asarray(has[sel], dtype=bool)
            self.values[k].add(index[sel], np.where(has_k, np.asarray(value[sel], dtype=np.float64), np.nan), has_k,
                               np.asarray(passed[sel], dtype=np.int8), error[sel])

    def _first(self, seen: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Which of ``idx`` are new: not seen before, and the first of their repeats in ``idx``."""
        fresh = ~seen[idx]
        _, first = np.unique(idx, return_index=True)
        once = np.zeros(len(idx), dtype=bool)
        once[first] = True
        keep = fresh & once
        self.duplicates += int(len(idx) - keep.sum())
        return keep

    def add_shard(self, samples: Sequence["Sample"], shard: ShardValues, wanted: set[int]) -> None:
        """Values the driver measured itself, for the images in ``wanted`` only."""
        rows = Rows()
        unreadable = {i: cause for i, _, cause in shard.unreadable}
        for s in samples:
            if s.index in wanted:
                rows.add(s.index, -1, None, None, unreadable.get(s.index), "driver")
        for k, exp in enumerate(self.exps):
            for v in shard.values.get(exp.id, []):
                if v.index in wanted:
                    rows.add(v.index, k, v.value, v.passed, v.error)
        self.add(rows.arrays())

    def fail(self, index: int, cause: str) -> None:
        rows = Rows()
        s = self.samples[index]
        rows.add(index, -1, None, None, None, None)
        for k, exp in enumerate(self.exps):
            if _counted(exp, s):
                rows.add(index, k, None, False, cause)
        self.add(rows.arrays())

    def image_values(self, k: int) -> ImageValues:
        """The values of the pass's ``k``-th expectation, as columns in dataset order (once: the
        builder hands its chunks over)."""
        return self.values[k].build(self.samples)

    def missing(self, lo: int, hi: int) -> list[int]:
        return (lo + np.flatnonzero(~self.seen[lo:hi])).tolist()


def _one_line(exc: BaseException) -> str:
    """A Ray error's first meaningful line (Ray's own messages run to pages of traceback)."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "\t", "Traceback"))]
    first = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


def slim_spec(spec: "AuditSpec", dataset: "Dataset") -> tuple["AuditSpec", "Dataset"]:
    """The spec and dataset the actors need: without any dataset's sample list (the rows carry those)."""
    datasets = {k: replace(d, samples=()) for k, d in spec.datasets.items()}
    return replace(spec, datasets=datasets), datasets[dataset.key]


def _round(dataset: "Dataset", todo: list[tuple[int, int]], got: Collected, exps: Sequence["Expectation"],
           spec: "AuditSpec", stub: "Dataset", session: AuditSession, size: Pool, ledger: Any,
           progress: Callable[..., None] | None) -> str | None:
    """One pipeline over the batches ``todo``, its rows into ``got``; the cause, if it failed."""
    import ray
    from ray.data import ActorPoolStrategy

    items = [{"start": a, "samples": pickle.dumps(list(dataset.samples[a:b]))} for a, b in todo]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 20000)))
    workers = min(size.max_size, len(items))  # no more actors than batches to give them
    # max_restarts / max_task_retries have no named parameter in Ray 2.60 yet (only the deprecated
    # **ray_remote_args, whose warning quiet_warnings() silences); Ray Data's defaults retry forever.
    out = ds.map_batches(
        MeasureBatches, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs={"spec": spec, "dataset": stub, "exp_ids": [e.id for e in exps],
                               "max_side": session.max_side, "batch_size": session.batch_size, "ledger": ledger},
        compute=ActorPoolStrategy(min_size=min(size.min_size, workers), max_size=workers),
        num_cpus=size.cpus, num_gpus=size.gpus or None,
        max_restarts=-1, max_task_retries=TASK_RETRIES,
    )
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            got.add(batch)
            if progress is not None:
                progress(got.done, len(dataset.samples), workers=len(got.workers))
    except Exception as exc:  # noqa: BLE001 - the pipeline failed: what arrived is kept
        return _one_line(exc)
    return None


def run_dataset_ray(evaluator: "Evaluator", dataset: "Dataset", expectations: Sequence["Expectation"], *,
                    options: RayOptions, batch_size: int | None = None,
                    progress: Callable[..., None] | None = None) -> DatasetRun:
    """The pass over ``dataset`` for ``expectations``, spread over a Ray cluster's actor pool.

    The same values as :func:`~.dataset_pass.run_dataset` (and the same problems, found by the
    driver's own plan); ``progress(done, total, workers=n)`` as rows arrive."""
    start = time.perf_counter()
    cluster = connect(options)  # first: it sets what Ray reads when it is imported

    import ray

    plan = Plan(evaluator, expectations)  # the driver's: problems, and the models of the report's pictures
    batch_size = batch_size_for(plan, batch_size)
    total = len(dataset.samples)
    if not plan.active:
        return DatasetRun(dataset, {}, [], plan.problems, time.perf_counter() - start, executor="ray",
                          address=cluster.address)
    size = pool(cluster, options)
    exps = plan.active
    got = Collected(dataset, exps)
    ranges = [(a, min(a + batch_size, total)) for a in range(0, total, batch_size)]
    spec, stub = slim_spec(evaluator.spec, dataset)
    ledger = _ledger()
    todo, cause = ranges, None
    for _ in range(ROUNDS):
        with quiet_warnings():
            cause = _round(dataset, todo, got, exps, spec, stub, evaluator.session, size, ledger, progress)
        todo = [(a, b) for a, b in todo if got.missing(a, b)]
        if not todo or cause is None:
            break
    if todo and cause is None:  # a finished pipeline left rows out: the driver measures those itself
        sample_ev = SampleEvaluator(evaluator, plan, dataset)
        for a, b in todo:
            samples = list(dataset.samples[a:b])
            _, images = next(decoded(samples, len(samples)))
            got.add_shard(samples, measure_shard(sample_ev, samples, images), set(got.missing(a, b)))
    elif todo:
        for a, b in todo:
            for i in got.missing(a, b):
                got.fail(i, f"not measured: the Ray pipeline failed {ROUNDS} times ({cause})")
    if progress is not None:
        progress(got.done, total, workers=len(got.workers))
    try:
        ray.kill(ledger)
    except Exception:  # noqa: BLE001 - the ledger is gone with its cluster
        pass
    values = {e.id: got.image_values(k) for k, e in enumerate(exps)}
    return DatasetRun(dataset, values, sorted(got.unreadable), plan.problems, time.perf_counter() - start,
                      executor="ray", address=cluster.address, workers=sorted(got.workers))


__all__ = ["Cluster", "MeasureBatches", "run_dataset_ray"]
