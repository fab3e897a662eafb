"""Plain data that crosses from the audit run to the report.

Everything here is JSON-serialisable (``to_dict`` / ``from_dict``) because results travel
between pytest-xdist workers and the controller, and end up in ``reports/audit.json``; the one
exception is a dataset aggregate's ``per_image``, a :class:`~vitaudit.per_image.PerImage` (columns
read as dicts) that ``to_dict`` shares as it is and the plugin makes plain lists for xdist.
Pictures are already encoded (``data:image/...;base64,...`` URIs) by the time they get
here, so the reporter only lays them out.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

from .per_image import PerImage, is_plain_per_image

#: Outcomes an expectation can end with (pytest's words, so CI dashboards read them as such).
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


@dataclass
class Prediction:
    """One entry of a top-k list."""

    label: str
    index: int
    prob: float


@dataclass
class Panel:
    """One picture on a card: a heat-map overlay, a baseline, a difference, ..."""

    title: str
    uri: str  # data: URI of a JPEG/PNG/WebP, never a link to the network
    caption: str = ""
    # A transparent PNG drawn over ``uri`` (the region's outline): overlays are then shared by
    # every card of a map, whatever its region, and each outline is encoded once.
    outline: str | None = None


@dataclass
class ModelView:
    """What one model said about one image, for the side-by-side strip of the report."""

    model: str  # model key in the audit file
    method: str
    top1: Prediction | None
    overlay: str  # data: URI
    layer_grid: str | None = None  # data: URI of the per-layer x per-head CLS attention mosaic (ViT)
    layer_grid_shape: tuple[int, int] | None = None  # (layers, heads) of that mosaic


@dataclass
class Example:
    """One image of a dataset shown on an aggregate card (among the worst or the best)."""

    image: str  # path relative to the audit file
    value: float | None
    passed: bool | None
    role: str  # "worst" | "best"
    panels: list[Panel] = field(default_factory=list)  # overlay(s) with the region outlined
    label: str | None = None  # the image's class, when the dataset is labelled


@dataclass
class ClassRow:
    """One class of a dataset in an aggregate card's per-class table."""

    group: str  # the class
    n_images: int
    value: float | None  # the aggregate over that class's images
    share_passing: float | None  # share of its images meeting the per-image check (None: no such check)
    passed: bool | None  # the class's verdict against the expectation's threshold


@dataclass
class AggregateView:
    """What an aggregate card draws besides its verdict: the distribution and examples.

    ``per_image_op``/``per_image_threshold`` are the per-image check of the ``for N% of images``
    form (``op`` may be ``hits``/``misses`` for the pointing game, ``is``/``in`` for predictions);
    the expectation's own ``op``/``threshold`` then apply to the share. ``edges``/``counts``
    are a histogram of the per-image values (``len(edges) == len(counts) + 1``).
    """

    per_image_op: str | None = None
    per_image_threshold: float | None = None
    share_passing: float | None = None
    edges: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    per_class: list[ClassRow] = field(default_factory=list)
    not_counted: list[str] = field(default_factory=list)  # "path: cause" of unreadable images skipped (on_error: skip), first few
    n_not_counted: int = 0
    n_without_region: int = 0  # dataset images that do not have the expectation's region

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AggregateView":
        data = dict(data)
        data["examples"] = [Example(**{**e, "panels": [Panel(**p) for p in e.get("panels", [])]})
                            for e in data.get("examples", [])]
        data["per_class"] = [ClassRow(**c) for c in data.get("per_class", [])]
        return cls(**data)


@dataclass
class ExpectationResult:
    """The outcome of one expectation (one pytest item)."""

    nodeid: str
    file: str  # audit file, relative to the rootdir
    line: int  # 1-based line of the expectation in that file
    text: str  # the expectation as the user wrote it
    kind: str  # prediction | localisation | comparison | baseline | faithfulness | sanity | python | error
    outcome: str  # one of OUTCOMES
    message: str = ""  # the failure sentence, the skip reason, or the error
    image: str | None = None  # image key in the audit file
    models: list[str] = field(default_factory=list)  # model keys used
    methods: list[str] = field(default_factory=list)  # explanation methods used
    metric: str | None = None
    region: str | None = None
    op: str | None = None
    threshold: float | list[float] | None = None
    value: float | None = None
    # A threshold written against a recorded value (``>= baseline - 0.05``): that value; ``threshold``
    # is then the one resolved from it for this run.
    baseline: float | None = None
    duration: float = 0.0
    topk: list[Prediction] | None = None  # prediction expectations: the model's top-5
    map_stats: dict[str, Any] | None = None  # min, max, mean, no_signal, nan_fraction, ...
    panels: list[Panel] = field(default_factory=list)  # overlay (with region outline), baseline, diff, ...
    image_uri: str | None = None  # the original image, downscaled
    # Dataset expectations (``image`` is then None): one result per aggregate (per class with
    # ``per class``). ``aggregate``: mean | median | min | max | p<N> | share | accuracy;
    # ``value``/``op``/``threshold`` are the aggregate's; ``per_image`` lists every image counted
    # as ``{"image": path relative to the audit file, "value": float | None, "passed": bool | None}``:
    # a list of such dicts, or (from a pass) a PerImage, the same read from columns (vitaudit.per_image).
    dataset: str | None = None
    aggregate: str | None = None
    group: str | None = None  # the class, for per-class items
    n_images: int | None = None
    per_image: Sequence[dict[str, Any]] | None = None
    aggregate_view: AggregateView | None = None
    # The aggregate's confidence interval (vitaudit.intervals): ends, level (0.95) and how it was made
    # (bca, t, order-statistic, percentile, wilson, constant); None where there is none (min, max, one image).
    ci_low: float | None = None
    ci_high: float | None = None
    ci_level: float | None = None
    ci_method: str | None = None
    confidence: float | None = None  # ``with 95% confidence``: the interval decided the verdict
    within_noise: bool = False  # a plain threshold inside the interval: the verdict could flip on another sample

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExpectationResult":
        data = dict(data)
        if data.get("topk") is not None:
            data["topk"] = [Prediction(**p) for p in data["topk"]]
        data["panels"] = [Panel(**p) for p in data.get("panels", [])]
        if is_plain_per_image(data.get("per_image")):  # columns, as pytest-xdist carried them
            data["per_image"] = PerImage.from_plain(data["per_image"])
        if data.get("aggregate_view") is not None:
            data["aggregate_view"] = AggregateView.from_dict(data["aggregate_view"])
        return cls(**data)


@dataclass
class ImageView:
    """Per image of an audit file: the original picture and every model's view of it."""

    file: str
    image: str
    uri: str  # data: URI of the downscaled original
    views: list[ModelView] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageView":
        data = dict(data)
        views = []
        for v in data.get("views", []):
            v = dict(v)
            if v.get("top1") is not None:
                v["top1"] = Prediction(**v["top1"])
            if v.get("layer_grid_shape") is not None:
                v["layer_grid_shape"] = tuple(v["layer_grid_shape"])
            views.append(ModelView(**v))
        data["views"] = views
        return cls(**data)


@dataclass
class ModelInfo:
    """A model as loaded for the run (for the environment table)."""

    key: str  # "<audit file>::<model key>" or the spec for Python audits
    spec: str
    family: str
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    device: str = "cpu"
    error: str | None = None


@dataclass
class RunResults:
    """Everything the reporter needs: run metadata and every expectation's result."""

    started_at: str  # ISO 8601
    duration: float
    command: str
    environment: dict[str, str]  # package versions, python, platform, device
    models: list[ModelInfo] = field(default_factory=list)
    results: list[ExpectationResult] = field(default_factory=list)
    images: list[ImageView] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C or a crash: the report shows what ran

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResults":
        data = dict(data)
        data["models"] = [ModelInfo(**m) for m in data.get("models", [])]
        data["results"] = [ExpectationResult.from_dict(r) for r in data.get("results", [])]
        data["images"] = [ImageView.from_dict(i) for i in data.get("images", [])]
        return cls(**data)
