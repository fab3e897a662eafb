"""What one audit process (a pytest process, an xdist worker, a Ray actor) shares across expectations.

Models load lazily, once per session (per worker under xdist), keyed by their declaration, so
every audit file that declares the same model shares one load; a failed load is kept and
reported by every item that uses the model, without retrying. Images, region masks and
re-initialised model copies are kept too, and explanations go through the engine's cache.

No pytest here: the plugin (:mod:`vitaudit.plugin.options`) builds a session from its options,
and turns :class:`ModelSkipped` into a skip.
"""
from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from vitaudit.images import LoadedImage
    from vitaudit.models import AuditModel
    from vitaudit.spec import ImageDecl, ModelDecl


class AuditInputError(Exception):
    """Bad input found while running an expectation: reported as an error with file:line."""


class AuditFailure(AssertionError):
    """An expectation that is not met; the message is a sentence."""


class ModelSkipped(Exception):
    """A model whose pretrained weights cannot be had here (offline, uncached): its expectations
    are skipped, not failed (the plugin reports it as a skip at the expectation's own line)."""


@dataclass
class Outbox:
    """Things a worker must tell the controller once: models it loaded, per-image model views,
    values recorded as baselines (:mod:`.value_baselines`; the controller writes them), and where
    its dataset passes ran (the report's Run section)."""

    models: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    values: list[dict[str, Any]] = field(default_factory=list)
    stale: list[dict[str, Any]] = field(default_factory=list)  # recorded values no expectation records any more
    executors: list[dict[str, Any]] = field(default_factory=list)  # who ran each dataset pass
    _sent_views: set[tuple] = field(default_factory=set)

    def sent(self, key: tuple) -> bool:
        return key in self._sent_views

    def add_view(self, key: tuple, view: dict[str, Any]) -> None:
        if key not in self._sent_views:
            self._sent_views.add(key)
            self.views.append(view)

    def drain(self) -> dict[str, Any]:
        out = {"models": self.models, "views": self.views, "values": self.values, "stale": self.stale,
               "executors": self.executors}
        self.models, self.views, self.values, self.stale, self.executors = [], [], [], [], []
        return out


class AuditSession:
    """Per-process resources for audits; created once per process, filled lazily.

    ``device``: where models load (``auto``, ``cpu``, ``cuda:N``); ``batch_size``: images per
    forward (None: the engine's default); ``in_worker``: one of several processes that share
    the work item by item (pytest-xdist), which run single images; ``pictures``: make the
    report's pictures; ``rootpath``: checkpoints below it are shown relative to it; ``workers``:
    the processes sharing this machine's cores (pytest-xdist's), whose torch threads are capped
    at their share of the cores when the first model loads (:func:`vitaudit.threads.worker_share`).
    """

    def __init__(self, *, device: str = "auto", batch_size: int | None = None, update_baselines: bool = False,
                 pictures: bool = True, max_side: int | None = 1024, rootpath: str | Path | None = None,
                 in_worker: bool = False, workers: int = 1):
        self.in_worker = in_worker
        self.workers = workers
        self.device = device
        self.batch_size = batch_size or None
        self.update_baselines = update_baselines
        self.pictures = pictures
        self.max_side = max_side
        self.rootpath = str(rootpath) if rootpath is not None else None
        self.outbox = Outbox()
        self.lock = threading.RLock()
        self._models: dict[tuple, Any] = {}
        self._images: dict[tuple, Any] = {}
        self._masks: dict[tuple, Any] = {}
        self._randomized: dict[tuple, Any] = {}
        self._encoded: dict[tuple, str] = {}
        self.small_images: dict[tuple, Any] = {}  # images at report size (see plugin.cards)
        self.grids_shown: set[tuple] = set()  # (file, image, model) with a layer x head grid sent
        self.prefetched: set[tuple] = set()
        self.value_stores: dict[str, Any] = {}  # audit file -> value_baselines.Store
        self._cache = None

    @property
    def cache(self):
        if self._cache is None:
            from vitaudit.cache import ExplanationCache

            self._cache = ExplanationCache()
        return self._cache

    # ------------------------------------------------------------------ models
    def model(self, decl: "ModelDecl") -> "AuditModel":
        """The loaded model of a declaration; raises ModelSkipped (weights unavailable) or AuditInputError."""
        key = (decl.name, decl.pretrained, decl.checkpoint, decl.num_classes, decl.labels, decl.labels_path,
               decl.seed, decl.target_layer, decl.crop, decl.model_kwargs)
        with self.lock:
            if key not in self._models:
                if not self._models and self.workers > 1:
                    from vitaudit.threads import worker_share

                    worker_share(self.workers)
                self._models[key] = self._load(decl)
                # The model, its modules and everything imported so far live for the session:
                # out of the cyclic collector's sight, each full collection (the automatic ones
                # of a long pass, pytest's at exit) no longer walks them. A 1,000-image audit
                # spent 1.2 s in 9 full collections of about 0.13 s each; 0.5 s after this.
                gc.freeze()
        loaded = self._models[key]
        if isinstance(loaded, BaseException):
            from vitaudit.registry import WeightsUnavailable

            if isinstance(loaded, WeightsUnavailable):
                # Reported at the expectation's own file:line rather than at this line.
                raise ModelSkipped(f"model '{decl.key}': {loaded}")
            raise AuditInputError(f"model '{decl.key}' ({decl.name}, declared at {decl.file}:{decl.line}) failed to load: {loaded}")
        return loaded

    def _load(self, decl: "ModelDecl") -> Any:
        from vitaudit.models import load_model
        from vitaudit.registry import WeightsUnavailable

        info = {"key": decl.key, "spec": decl.name, "family": "?", "checkpoint": decl.checkpoint,
                "checkpoint_sha256": None, "device": self.device, "error": None}
        try:
            model = load_model(
                decl.name,
                pretrained=decl.pretrained,
                checkpoint=decl.checkpoint,
                num_classes=decl.num_classes,
                labels=list(decl.labels) if decl.labels is not None else decl.labels_path,
                seed=decl.seed or 0,
                device=self.device,
                target_layer=decl.target_layer,
                crop=decl.crop,
                model_kwargs=dict(decl.model_kwargs),
            )
        except WeightsUnavailable as exc:
            from vitaudit.models import family_of

            info["family"] = family_of(decl.name, dict(decl.model_kwargs))  # known from the name
            info["error"] = f"skipped: {exc}"
            self.outbox.models.append(info)
            return exc
        except Exception as exc:  # any load failure is reported by each item using the model
            info["error"] = f"{type(exc).__name__}: {exc}"
            self.outbox.models.append(info)
            return exc
        checkpoint = model.checkpoint
        if checkpoint and self.rootpath and os.path.abspath(checkpoint).startswith(self.rootpath + os.sep):
            checkpoint = relative_to(self.rootpath, checkpoint)
        info.update(family=model.family, checkpoint=checkpoint, checkpoint_sha256=model.checkpoint_sha256,
                    device=str(model.device), spec=f"{decl.name} [{model.weights}]")
        self.outbox.models.append(info)
        return model

    # ------------------------------------------------------------------ images
    def image(self, decl: "ImageDecl") -> "LoadedImage":
        from vitaudit.images import ImageError, load_image, skimage_image

        def read() -> Any:
            try:
                return skimage_image(decl.skimage) if decl.skimage else load_image(decl.path, decl.store)
            except ImageError as exc:
                return exc

        loaded = self._recent(self._images, (decl.path, decl.skimage), read, self.KEEP_IMAGES)
        if isinstance(loaded, BaseException):
            raise AuditInputError(f"{decl.file}:{decl.line}: image '{decl.key}': {loaded}")
        return loaded

    def mask(self, ref, size: tuple[int, int], image_size: tuple[int, int] | None = None) -> "np.ndarray":
        """``ref`` drawn at ``size``; ``image_size``: the original's, when ``size`` is a working resolution."""
        from vitaudit.regions import RegionError, rasterize_ref

        def draw() -> Any:
            try:
                return rasterize_ref(ref, size, image_size=image_size)
            except RegionError as exc:
                return exc

        mask = self._recent(self._masks, (ref, size, image_size), draw, self.KEEP_MASKS)
        if isinstance(mask, BaseException):
            raise AuditInputError(str(mask))
        return mask

    def randomized(self, model: "AuditModel", layers: Any) -> tuple["AuditModel", list[str]]:
        from vitaudit.sanity import randomize_top_layers

        key = (model.key, layers)
        with self.lock:
            if key not in self._randomized:
                self._randomized[key] = randomize_top_layers(model, layers)
        return self._randomized[key]

    #: Full-size images and region masks kept at hand: the items of one image run together, so a
    #: few dozen are enough, and a 10,000-image audit does not hold 10,000 decoded photos.
    KEEP_IMAGES = 32
    KEEP_MASKS = 128

    def _recent(self, cache: dict, key: Any, make, limit: int) -> Any:
        """A least-recently-used lookup in ``cache`` (a dict kept in use order)."""
        with self.lock:
            if key in cache:
                value = cache.pop(key)
            else:
                value = make()
            cache[key] = value
            while len(cache) > limit:
                cache.pop(next(iter(cache)))
            return value

    #: Pictures kept for reuse: cards of one image share overlays, and items of an image run
    #: together, so a few thousand recent ones are enough and memory stays bounded.
    KEEP_PICTURES = 2048

    def encoded(self, key: tuple, make) -> str:
        """Encode a picture once per process (many cards share one overlay)."""
        uri = self._encoded.get(key)
        if uri is None:
            uri = make()
            self._encoded[key] = uri
            while len(self._encoded) > self.KEEP_PICTURES:
                self._encoded.pop(next(iter(self._encoded)))
        return uri


_warmed: set[str] = set()


def warm_imports(modules: list[str]) -> None:
    """Import heavy modules in a background thread while the models load and run.

    grad-cam takes seconds even without scikit-learn and matplotlib; the first forward passes
    release the GIL, so the import overlaps with them instead of adding to the run.
    """
    todo = [m for m in modules if m not in _warmed]
    if not todo:
        return
    _warmed.update(todo)

    def run() -> None:
        import importlib

        for name in todo:
            try:
                importlib.import_module(name)
            except Exception:  # the real import, later, reports any problem
                pass

    thread = threading.Thread(target=run, name="vitaudit-warm-imports", daemon=True)
    _warming.append(thread)
    thread.start()


_warming: list[threading.Thread] = []


def finish_warm_imports() -> None:
    """Wait for the background imports. A dataset pass runs many small forwards: each torch call
    needs the GIL, which an import holds for long stretches, so overlapping them costs more than
    it saves (a 300-image pass of the fixture models ran 3x slower beside the imports)."""
    while _warming:
        _warming.pop().join()


def relative_to(root: str | Path, path: str) -> str:
    """``path`` relative to ``root`` (as given when that cannot be: another drive)."""
    try:
        return os.path.relpath(path, str(root))
    except ValueError:
        return path
