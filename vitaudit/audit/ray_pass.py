"""The dataset passes on a Ray cluster: one Ray Data pipeline per audit file, for all its datasets.

The driver sends sample descriptors (path, label, annotations; never pixels), one row per batch:
the batches are the index ranges of each dataset in the configured batch size, as in the local
pass, so every image is measured in the same company under every executor and the values are
identical. ``map_batches`` runs :class:`MeasureBatches` in an actor pool: its constructor loads
the file's models once per actor (weights read where the actor runs) for every dataset of the
file, so a file with seven datasets starts its actors and loads its models once, not seven
times; its call decodes and measures a batch with the local pass's own code
(:func:`~.dataset_pass.measure_shard`) and returns per-image rows (:mod:`.ray_rows`,
Arrow-friendly). The driver keeps only the per-image values.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .dataset_pass import DatasetRun, Plan, SampleEvaluator, ShardValues, batch_size_for, decoded, measure_shard
from .ray_cluster import Cluster, Pool, RayOptions, connect, pool, quiet_warnings
from .ray_rows import COLUMNS, Collected, Rows, _counted
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


class _Part:
    """One dataset's share of an actor's work: its expectations, plan and evaluator."""

    def __init__(self, evaluator: Any, dataset: "Dataset", exp_ids: Sequence[str], where: str) -> None:
        by_id = {e.id: e for e in evaluator.spec.expectations}
        self.exps = [by_id[i] for i in exp_ids]
        self.plan = Plan(evaluator, self.exps)
        # What stops an expectation on this worker alone (the driver's own problems were left out)
        self.problems = {e.id: f"{self.plan.problems[e.id]} ({where})" for e in self.exps if e.id in self.plan.problems}
        self.sample_ev = SampleEvaluator(evaluator, self.plan, dataset)


class MeasureBatches:
    """Ray Data's callable class: models loaded once per actor, each call measures whole batches.

    ``spec`` is the audit file's (without its datasets' sample lists); ``parts`` the passes the
    driver asks for, in order (the ``ds`` column indexes them): each a dataset key and the ids of
    its expectations, in order (the ``exp`` column indexes them); ``max_side`` and ``batch_size``
    the driver session's."""

    def __init__(self, spec: "AuditSpec", parts: Sequence[tuple[str, Sequence[str]]], max_side: int | None,
                 ledger: Any, batch_size: int | None = None) -> None:
        import ray

        from .evaluate import Evaluator

        self.ledger = ledger
        node = ray.util.get_node_ip_address()
        node_id = ray.get_runtime_context().get_node_id()[:8]
        # The driver's session options that measuring reads (--audit-batch-size also sizes the
        # batches of a faithfulness curve's forwards): the same values as on the driver.
        session = AuditSession(device="auto", pictures=False, max_side=max_side, batch_size=batch_size)
        evaluator = Evaluator(spec, session)  # one per actor: the parts share its models
        where = f"on worker {node}, pid {os.getpid()}"
        self.parts = [_Part(evaluator, spec.datasets[key], ids, where) for key, ids in parts]
        devices = sorted({str(m.device) for p in self.parts for m in p.plan.models.values()}) or ["cpu"]
        self.worker = f"{node} node {node_id} pid {os.getpid()} {'+'.join(devices)}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import ray

        out = []
        for ds, key, blob in zip(batch["ds"], batch["batch"], batch["samples"]):
            part, key = self.parts[int(ds)], int(key)
            rows = Rows()
            samples: list["Sample"] = pickle.loads(blob)
            attempt, killers = ray.get(self.ledger.begin.remote(key))
            if attempt <= 2:
                self._whole(part, samples, rows)
            else:
                self._alone(part, key, samples, set(killers), attempt, rows)
            arrays = rows.arrays()
            arrays["ds"] = np.full(len(arrays["index"]), int(ds), dtype=np.int32)
            out.append(arrays)
        return {c: np.concatenate([a[c] for a in out]) for c in out[0]} if out else {
            **Rows().arrays(), "ds": np.zeros(0, dtype=np.int32)}

    def _whole(self, part: _Part, samples: list["Sample"], rows: Rows) -> None:
        # the masks of the measured regions are fetched with the images, as in the local pass
        samples, images = next(decoded(samples, len(samples), workers=0, regions=part.plan.region_names))
        try:
            shard = measure_shard(part.sample_ev, samples, images)
        except Exception:  # noqa: BLE001 - one image's error must not cost the others: measure them alone
            for s, im in zip(samples, images):
                self._one(part, s, im, rows)
            return
        self._emit(part, samples, shard, rows)

    def _alone(self, part: _Part, key: int, samples: list["Sample"], killers: set[int], attempt: int,
               rows: Rows) -> None:
        import ray

        for s in samples:
            if s.index in killers:
                cause = (f"its worker process died each time it was measured ({attempt - 1} attempts, the last "
                         "with this image alone: a crash in native code or out of memory); not measured")
                self._fail(part, s, cause, rows)
                continue
            # awaited: the ledger must know this image before measuring it can kill the worker
            ray.get(self.ledger.alone.remote(key, s.index))
            (s,), images = next(decoded([s], 1, workers=0, regions=part.plan.region_names))
            self._one(part, s, images[0], rows)
        ray.get(self.ledger.alone.remote(key, None))

    def _one(self, part: _Part, sample: "Sample", image: Any, rows: Rows) -> None:
        try:
            shard = measure_shard(part.sample_ev, [sample], [image])
        except Exception as exc:  # noqa: BLE001 - that image fails with the cause
            self._fail(part, sample, f"{type(exc).__name__}: {' '.join(str(exc).split())}", rows)
            return
        self._emit(part, [sample], shard, rows)

    def _fail(self, part: _Part, sample: "Sample", cause: str, rows: Rows) -> None:
        rows.add(sample.index, -1, None, None, None, self.worker)
        for k, exp in enumerate(part.exps):
            if _counted(exp, sample):
                rows.add(sample.index, k, None, False, cause)

    def _emit(self, part: _Part, samples: list["Sample"], shard: ShardValues, rows: Rows) -> None:
        unreadable = {i: cause for i, _, cause in shard.unreadable}
        for s in samples:
            rows.add(s.index, -1, None, None, unreadable.get(s.index), self.worker)
        for k, exp in enumerate(part.exps):
            problem = part.problems.get(exp.id)
            if problem is not None:
                for s in samples:
                    if s.index not in unreadable and _counted(exp, s):
                        rows.add(s.index, k, None, False, problem)
                continue
            for v in shard.values.get(exp.id, []):
                rows.add(v.index, k, v.value, v.passed, v.error)


def _one_line(exc: BaseException) -> str:
    """A Ray error's first meaningful line (Ray's own messages run to pages of traceback)."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "\t", "Traceback"))]
    first = lines[0] if lines else type(exc).__name__
    return f"{type(exc).__name__}: {first[:300]}"


def slim_spec(spec: "AuditSpec") -> "AuditSpec":
    """The spec the actors need: without any dataset's sample list (the rows carry those)."""
    return replace(spec, datasets={k: replace(d, samples=()) for k, d in spec.datasets.items()})


def _round(passes: Sequence[tuple["Dataset", Sequence["Expectation"]]], todo: list[tuple[int, int, int]],
           gots: dict[int, Collected], spec: "AuditSpec", session: AuditSession, size: Pool, ledger: Any,
           progress: Callable[..., None] | None) -> str | None:
    """One pipeline over the batches ``todo`` (pass, start, end), its rows into ``gots``; the
    cause, if it failed."""
    import ray
    from ray.data import ActorPoolStrategy

    # the ledger counts attempts per batch: a batch's number is the same in every round
    items = [{"ds": i, "batch": _batch_key(i, a), "samples": pickle.dumps(list(passes[i][0].samples[a:b]))}
             for i, a, b in todo]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 20000)))
    workers = min(size.max_size, len(items))  # no more actors than batches to give them
    # max_restarts / max_task_retries have no named parameter in Ray 2.60 yet (only the deprecated
    # **ray_remote_args, whose warning quiet_warnings() silences); Ray Data's defaults retry forever.
    parts = [(passes[i][0].key, [e.id for e in gots[i].exps]) if i in gots else (passes[i][0].key, [])
             for i in range(len(passes))]
    out = ds.map_batches(
        MeasureBatches, batch_size=1, batch_format="numpy",
        fn_constructor_kwargs={"spec": spec, "parts": parts, "max_side": session.max_side,
                               "batch_size": session.batch_size, "ledger": ledger},
        compute=ActorPoolStrategy(min_size=min(size.min_size, workers), max_size=workers),
        num_cpus=size.cpus, num_gpus=size.gpus or None,
        max_restarts=-1, max_task_retries=TASK_RETRIES,
    )
    total = sum(len(passes[i][0].samples) for i in gots)
    try:
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            which = np.asarray(batch["ds"], dtype=np.int64)
            for i in np.unique(which):
                got = gots.get(int(i))
                sel = which == i
                if got is None:
                    continue  # rows of a pass this run does not have: left out
                got.add({c: np.asarray(batch[c])[sel] for c in COLUMNS})
            if progress is not None:
                _progress(progress, gots, total)
    except Exception as exc:  # noqa: BLE001 - the pipeline failed: what arrived is kept
        return _one_line(exc)
    return None


def _progress(progress: Callable[..., None], gots: dict[int, Collected], total: int) -> None:
    """Report images done over all the passes, and the workers seen so far."""
    progress(sum(g.done for g in gots.values()), total, workers=len(set().union(*(g.workers for g in gots.values()))))


def _batch_key(i: int, start: int) -> int:
    """A batch's number for the ledger: its pass and first index (unique within a file's pipeline)."""
    return i * (1 << 40) + start


def run_datasets_ray(evaluator: "Evaluator", passes: Sequence[tuple["Dataset", Sequence["Expectation"]]], *,
                     options: RayOptions, batch_size: int | None = None,
                     progress: Callable[..., None] | None = None) -> list[DatasetRun]:
    """The passes over each ``(dataset, expectations)`` of one audit file, in one pipeline on a Ray
    cluster's actor pool (so its actors start and load the file's models once).

    The same values as :func:`~.dataset_pass.run_dataset` per dataset (and the same problems,
    found by the driver's own plans); ``progress(done, total, workers=n)`` over all the passes as
    rows arrive. Each run's ``seconds`` is the whole pipeline's."""
    start = time.perf_counter()
    # The driver's plans (its own models: the problems, and the report's pictures) load while Ray
    # starts or joins the cluster, which mostly waits on processes starting. Ray stays in this
    # thread, the main one, where it sets its signal handlers; the plans import no Ray.
    with ThreadPoolExecutor(1, thread_name_prefix="vitaudit-plans") as planner:
        planning = planner.submit(lambda: [Plan(evaluator, exps) for _, exps in passes])
        cluster = connect(options)
        plans = planning.result()

    import ray

    gots = {i: Collected(d, plan.active) for i, ((d, _), plan) in enumerate(zip(passes, plans)) if plan.active}
    todo: list[tuple[int, int, int]] = []
    for i in gots:
        size_i, total_i = batch_size_for(plans[i], batch_size), len(passes[i][0].samples)
        todo += [(i, a, min(a + size_i, total_i)) for a in range(0, total_i, size_i)]
    cause, ledger = None, None
    if todo:
        size = pool(cluster, options)
        spec = slim_spec(evaluator.spec)
        ledger = _ledger()
        for _ in range(ROUNDS):
            with quiet_warnings():
                cause = _round(passes, todo, gots, spec, evaluator.session, size, ledger, progress)
            todo = [(i, a, b) for i, a, b in todo if gots[i].missing(a, b)]
            if not todo or cause is None:
                break
    if todo and cause is None:  # a finished pipeline left rows out: the driver measures those itself
        for i, a, b in todo:
            dataset, got = passes[i][0], gots[i]
            samples, images = next(decoded(list(dataset.samples[a:b]), b - a, regions=plans[i].region_names))
            sample_ev = SampleEvaluator(evaluator, plans[i], dataset)
            got.add_shard(samples, measure_shard(sample_ev, samples, images), set(got.missing(a, b)))
    elif todo:
        for i, a, b in todo:
            for j in gots[i].missing(a, b):
                gots[i].fail(j, f"not measured: the Ray pipeline failed {ROUNDS} times ({cause})")
    if progress is not None and gots:
        _progress(progress, gots, sum(len(passes[i][0].samples) for i in gots))
    if ledger is not None:
        try:
            ray.kill(ledger)
        except Exception:  # noqa: BLE001 - the ledger is gone with its cluster
            pass
    seconds = time.perf_counter() - start
    runs = []
    for i, ((dataset, _), plan) in enumerate(zip(passes, plans)):
        got = gots.get(i)
        values = {e.id: got.image_values(k) for k, e in enumerate(got.exps)} if got is not None else {}
        runs.append(DatasetRun(dataset, values, sorted(got.unreadable) if got is not None else [], plan.problems,
                               seconds, executor="ray", address=cluster.address,
                               workers=sorted(got.workers) if got is not None else []))
    return runs


def run_dataset_ray(evaluator: "Evaluator", dataset: "Dataset", expectations: Sequence["Expectation"], *,
                    options: RayOptions, batch_size: int | None = None,
                    progress: Callable[..., None] | None = None) -> DatasetRun:
    """The pass over one ``dataset`` for ``expectations`` (:func:`run_datasets_ray` of one pass)."""
    return run_datasets_ray(evaluator, [(dataset, expectations)], options=options, batch_size=batch_size,
                            progress=progress)[0]


__all__ = ["Cluster", "MeasureBatches", "run_dataset_ray", "run_datasets_ray"]
