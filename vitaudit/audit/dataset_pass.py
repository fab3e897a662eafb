"""One pass over a dataset for every expectation of an audit file on it.

Each image is decoded once (in a thread pool, one batch ahead of the models) and forwarded
once per model, in batches, with every map the file's expectations want of that model; then
each expectation measures the image exactly as it would measure a declared image (the same
:class:`~vitaudit.audit.evaluate.Evaluator` handlers), and only the per-image numbers are
kept. The commonest metrics are measured for the whole batch at once on the model's device
(:mod:`.dataset_quick`), the rest (and whatever the plain case does not cover) by the handlers.
Maps are dropped with their batch; the report's few example pictures are recomputed afterwards.

:func:`measure_shard` is the unit of work: a function from a shard of samples to per-image
values (:class:`~vitaudit.image_values.ImageValue`) that merge in any order, so a distributed
engine (Ray Data's ``map_batches`` over GPU workers, say) can spread one dataset across
machines by calling it on each shard and concatenating the results. The pass keeps them as
columns (:class:`~vitaudit.image_values.ImageValues`), not as a record per image.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator, Sequence

import numpy as np

from vitaudit.aggregate import OPS
from vitaudit.batching import ItemFailure
from vitaudit.image_values import ImageValue, ImageValues, ValuesBuilder
from vitaudit.threads import usable_cpus

from .dataset_quick import batch_values
from .evaluate import Evaluation, Evaluator
from .session import AuditFailure, AuditInputError, ModelSkipped

if TYPE_CHECKING:
    from vitaudit.datasets.base import Dataset, Sample
    from vitaudit.engine import Request
    from vitaudit.explanation import Explanation
    from vitaudit.images import LoadedImage
    from vitaudit.spec import Expectation, MapRef


@dataclass
class ShardValues:
    """What a shard measured: per expectation id, one value per counted image; and the
    images that could not be read, as ``(index, name, cause)``."""

    values: dict[str, list[ImageValue]] = field(default_factory=dict)
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)

    def extend(self, other: "ShardValues") -> None:
        for key, vals in other.values.items():
            self.values.setdefault(key, []).extend(vals)
        self.unreadable.extend(other.unreadable)


@dataclass
class DatasetRun:
    """The finished pass: merged per-image values (columns in dataset order), problems, and timing."""

    dataset: "Dataset"
    values: dict[str, ImageValues]
    unreadable: list[tuple[int, str, str]]
    problems: dict[str, BaseException]  # expectation id -> what stops it on every image (bad method, model load)
    seconds: float
    executor: str = "local"  # or "ray" (:mod:`.ray_pass`)
    address: str | None = None  # the Ray cluster's
    workers: list[str] = field(default_factory=list)  # who measured: "IP node NODE_ID pid PID DEVICE" (Ray workers)


class Plan:
    """What the expectations on one dataset want of each model: requests, per map reference."""

    def __init__(self, evaluator: Evaluator, expectations: Sequence["Expectation"]):
        from vitaudit.engine import Request, resolve_method

        self.expectations = list(expectations)
        self.requests: dict[str, list["Request"]] = {}  # model key -> distinct requests
        self.by_ref: dict[tuple[str, "MapRef"], "Request"] = {}
        self.problems: dict[str, BaseException] = {}
        self.models: dict[str, Any] = {}
        for exp in self.expectations:
            try:
                for key in exp.model_keys:
                    if key not in self.models:
                        self.models[key] = evaluator.model(key)
                        self.requests.setdefault(key, [])
                for ref in exp.maps:
                    model = self.models[ref.model]
                    try:
                        explainer, options = resolve_method(model, (ref.method, dict(ref.options)))
                    except Exception as exc:  # noqa: BLE001 - the method does not apply: said once per item
                        raise AuditInputError(f"{ref.label}: {exc}") from None
                    target = evaluator.single_class(model, ref.target) if ref.target is not None else None
                    req = Request(explainer, options, target)
                    self.by_ref[(ref.model, ref)] = req
                    if req not in self.requests[ref.model]:
                        self.requests[ref.model].append(req)
            except (AuditInputError, ModelSkipped) as exc:
                self.problems[exp.id] = exc
        self.active = [e for e in self.expectations if e.id not in self.problems]
        #: The regions the active expectations measure (their masks are read ahead with the images).
        self.region_names = sorted({e.region.region.name for e in self.active if e.region is not None})
        used = {k for e in self.active for k in e.model_keys}
        self.models = {k: m for k, m in self.models.items() if k in used}


class SampleEvaluator(Evaluator):
    """The file's evaluator, pointed at one dataset image at a time (see :meth:`at`)."""

    def __init__(self, base: Evaluator, plan: Plan, dataset: "Dataset"):
        super().__init__(base.spec, base.session)
        self.plan = plan
        self.dataset = dataset
        self.sample: "Sample | None" = None
        self.loaded: "LoadedImage | None" = None
        self.entries: dict[str, Any] = {}
        self._maps: dict[tuple, "Explanation"] = {}
        self._region_masks: dict[tuple, np.ndarray] = {}

    def evaluate(self, exp: "Expectation") -> Evaluation:
        # A relative threshold belongs to the aggregate (see dataset_items), never to one image.
        if exp.relative is not None:
            exp = replace(exp, relative=None, value=0.0 if exp.value is None else exp.value)
        return super().evaluate(exp)

    def at(self, sample: "Sample", loaded: "LoadedImage", entries: dict[str, Any]) -> None:
        self.sample, self.loaded, self.entries = sample, loaded, entries
        self._maps, self._region_masks = {}, {}

    # The resources of the image at hand, instead of a declared image's.
    def image(self, key: str):
        return self.loaded

    def probs(self, model_key: str, image_key: str) -> np.ndarray:
        return self.entries[model_key].probs

    def explanation(self, ref: "MapRef", image_key: str) -> "Explanation":
        from vitaudit.engine import explanation_of

        key = (ref.model, ref)
        e = self._maps.get(key)
        if e is None:
            e = self._maps[key] = explanation_of(self.plan.models[ref.model], self.entries[ref.model],
                                                 self.plan.by_ref[key])
            e.max_side = self.session.max_side  # metrics, masks and pictures use e.working
        return e

    def mask(self, exp: "Expectation", e: "Explanation") -> np.ndarray | None:
        """The image's own annotation of the region, at ``e``'s working resolution."""
        from vitaudit.regions import RegionError

        if exp.region is None:
            return None
        name = exp.region.region.name
        key = (name, tuple(e.working_size))
        mask = self._region_masks.get(key)  # the image's expectations share its masks
        if mask is None:
            try:
                mask = self.sample.regions[name].mask(e.geometry.image_hw)
            except RegionError as exc:
                raise AuditInputError(str(exc)) from None
            if mask.shape != tuple(e.working_size):  # a photo larger than --audit-max-side
                import cv2

                h, w = e.working_size
                mask = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
            self._region_masks[key] = mask
        if exp.region.negate:
            mask = ~mask
            if not mask.any():
                raise AuditInputError(f"region 'not {name}' is empty on {self.sample.name}")
        return mask

    def baseline_key(self, exp: "Expectation") -> str:
        return f"{exp.dataset}/{self.sample.name}"

    def _prediction(self, exp: "Expectation") -> Evaluation:
        if exp.metric != "accuracy":
            return super()._prediction(exp)
        model = self.plan.models[exp.model]
        probs = self.probs(exp.model, exp.image)
        wanted = self.classes(model, self.sample.label)
        top1 = int(np.argmax(probs))
        return Evaluation(top1 in wanted, float(probs[wanted].sum()),
                          f"top-1 is {model.labels[top1]!r}, label {self.sample.label!r}")


def measure_shard(evaluator: SampleEvaluator, samples: Sequence["Sample"],
                  images: Sequence["LoadedImage | BaseException"]) -> ShardValues:
    """Per-image values of every active expectation of ``evaluator.plan`` on one shard.

    ``images`` are the decoded samples (or the error that reading each raised). Each model
    runs once over the shard with all its requests; expectations about a region count only
    the images that have it.
    """
    from vitaudit.engine import run_batch

    plan = evaluator.plan
    out = ShardValues({exp.id: [] for exp in plan.active})
    ok = [(s, im) for s, im in zip(samples, images) if not isinstance(im, BaseException)]
    for s, im in zip(samples, images):
        if isinstance(im, BaseException):
            out.unreadable.append((s.index, s.name, str(im)))
    if not ok:
        return out
    prepared: dict = {}  # models with the same input transform share each image's tensor
    entries = {key: run_batch(model, [im for _, im in ok], [plan.requests[key]] * len(ok), prepared=prepared)
               for key, model in plan.models.items()}
    del prepared
    quick = batch_values(plan, [s for s, _ in ok], entries, evaluator.session.max_side)
    for j, (sample, loaded) in enumerate(ok):
        mine = {key: entries[key][j] for key in entries}
        evaluator.at(sample, loaded, mine)
        failed = [(k, e) for k, e in mine.items() if isinstance(e, ItemFailure)]
        for exp in plan.active:
            if exp.region is not None and exp.region.region.name not in sample.regions:
                continue
            lost = [f"model {k}: {e.message}" for k, e in failed if k in exp.model_keys] if failed else None
            if lost:  # did not fit on the device even alone: not met, and said why
                out.values[exp.id].append(ImageValue(sample.index, sample.name, None, False, sample.label,
                                                     "; ".join(lost)))
                continue
            value = quick[exp.id][j] if exp.id in quick else np.nan
            out.values[exp.id].append(_quick(exp, sample, float(value)) if np.isfinite(value)
                                      else _measure(evaluator, exp, sample))
    return out


def _quick(exp: "Expectation", sample: "Sample", value: float) -> ImageValue:
    """The record of a value :func:`~vitaudit.audit.dataset_quick.batch_values` measured."""
    if exp.metric == "pointing_game":
        hit = value == 1.0
        passed = (hit == (exp.op != "misses")) if exp.aggregate == "share" else None
    else:
        passed = OPS[exp.op](value, exp.value) if exp.aggregate == "share" else None
    return ImageValue(sample.index, sample.name, value, passed, sample.label)


def _measure(evaluator: SampleEvaluator, exp: "Expectation", sample: "Sample") -> ImageValue:
    try:
        ev = evaluator.evaluate(exp)
    except (AuditFailure, AuditInputError) as exc:  # e.g. no signal: not met, no value, said why
        return ImageValue(sample.index, sample.name, None, False, sample.label, str(exc))
    check = None if exp.aggregate not in ("share", "accuracy") else bool(ev.passed)
    return ImageValue(sample.index, sample.name, ev.value, check, sample.label)


def decode_workers() -> int:
    """Threads that decode while the models run: the cores torch's own threads leave free (up to 4).

    On a machine whose cores torch already uses (2 cores, 2 threads), extra threads make each of
    torch's parallel operations wait for a descheduled thread, which costs more than decoding."""
    import torch

    return max(0, min(4, usable_cpus() - torch.get_num_threads()))


#: Threads that fetch images (and their masks) from object storage, tables or shards when no core
#: is spare for decoding: fetching waits on I/O, so it overlaps the models without taking their
#: cores. Sixteen requests in flight: against a store 30 ms away, four would fetch about 130
#: objects (65 images and their masks) a second, under half what the pass over local files ran at
#: on a 2-core CPU (150 images a second); sixteen measured no more client CPU than four against a
#: local server (obstore's reads release the interpreter lock).
FETCH_THREADS = 16


def decoded(samples: Sequence["Sample"], batch_size: int, workers: int | None = None,
            regions: Collection[str] = ()) -> Iterator[tuple[list["Sample"], list["LoadedImage | BaseException"]]]:
    """Batches of samples with their decoded images; fetching and decoding run one batch ahead in
    threads (with no core to spare, only the fetching: decoding then happens between batches).
    Masks of ``regions`` are drawn where the images are decoded
    (:func:`~vitaudit.datasets.fetch.draw_masks`; small images only).
    The masks of ``regions`` (the regions the pass measures) that are fetched from storage, shards
    or tables are read ahead in the same threads (the yielded samples hold them, see
    :func:`~vitaudit.datasets.fetch.fetch_masks`), so the models' thread waits on no request.
    At most two batches of images (or of fetched bytes) are held at a time."""
    from vitaudit.datasets.fetch import (decode_sample, draw_masks, fetch_masks, fetch_sample, fetches_masks,
                                         read_sample)

    def read(sample: "Sample"):
        sample = fetch_masks(sample, regions)
        try:
            image = read_sample(sample)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported by name
            return sample, exc
        return draw_masks(sample, regions, image.size), image

    def fetch(sample: "Sample"):
        sample = fetch_masks(sample, regions)
        try:
            return sample, fetch_sample(sample)
        except Exception as exc:  # noqa: BLE001 - reported by name, like an unreadable file
            return sample, exc

    def finish(sample: "Sample", data):
        if isinstance(data, BaseException):
            return data
        try:
            return decode_sample(sample, data)
        except Exception as exc:  # noqa: BLE001
            return exc

    chunks = [list(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]
    remote = any(s.source is not None or fetches_masks(s, regions) for s in samples[:1])
    if workers is None:
        workers = decode_workers()
    if workers == 0 and not remote:  # no core to spare: decoding threads would only slow the models' own threads
        for chunk in chunks:
            got = [read(s) for s in chunk]
            yield [s for s, _ in got], [d for _, d in got]
        return
    job = read if workers else fetch
    with ThreadPoolExecutor(workers or FETCH_THREADS, thread_name_prefix="vitaudit-decode") as pool:
        pending = [pool.map(job, chunks[0])] if chunks else []
        for i, chunk in enumerate(chunks):
            if i + 1 < len(chunks):
                pending.append(pool.map(job, chunks[i + 1]))
            got = list(pending.pop(0))
            chunk = [s for s, _ in got]
            yield chunk, [d for _, d in got] if workers else [finish(s, d) for s, d in got]


def batch_size_for(plan: Plan, batch_size: int | None) -> int:
    """The pass's batch size: as given, else 4x the models' single-image default (32 on a CPU, 128 on
    CUDA). Every executor cuts the dataset into index ranges of this size (the same company)."""
    from vitaudit.engine import default_batch_size

    return batch_size or 4 * max([default_batch_size(m) for m in plan.models.values()] or [8])


def run_dataset(evaluator: Evaluator, dataset: "Dataset", expectations: Sequence["Expectation"], *,
                batch_size: int | None = None, progress: Callable[[int, int], None] | None = None) -> DatasetRun:
    """The pass over ``dataset`` for ``expectations`` (all of one audit file).

    ``batch_size`` None: 4x the models' single-image default (32 on a CPU, 128 on CUDA), since
    a pass keeps no maps beyond its batch.
    """
    from .session import finish_warm_imports

    start = time.perf_counter()
    plan = Plan(evaluator, expectations)
    batch_size = batch_size_for(plan, batch_size)
    finish_warm_imports()
    sample_ev = SampleEvaluator(evaluator, plan, dataset)
    builders = {exp.id: ValuesBuilder() for exp in plan.active}
    unreadable: list[tuple[int, str, str]] = []
    done = 0
    if plan.active:
        for samples, images in decoded(dataset.samples, batch_size, regions=plan.region_names):
            shard = measure_shard(sample_ev, samples, images)
            for key, vals in shard.values.items():
                builders[key].add_records(vals)
            unreadable.extend(shard.unreadable)
            done += len(samples)
            if progress is not None:
                progress(done, len(dataset.samples))
    values = {key: b.build(dataset.samples) for key, b in builders.items()}
    return DatasetRun(dataset, values, sorted(unreadable), plan.problems, time.perf_counter() - start)
