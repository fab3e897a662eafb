"""The parsed audit file: frozen dataclasses handed to the pytest plugin, and the vocabulary.

Everything here is plain data. Paths are absolute; ``file`` fields are the audit file's path as
given to :func:`vitaudit.spec.parse_audit_file`; ``line`` fields are 1-based.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from vitaudit.datasets.base import Dataset
from vitaudit.regions import Region, RegionRef

from .errors import SpecError

#: A class as written in an audit file: a name (any synonym of a model's label, or a group name
#: from ``labels:``) or a class index.
Label = Union[str, int]

#: Explanation methods, as written after ``<model>.``.
METHODS: tuple[str, ...] = (
    "attention", "rollout", "gradcam", "gradcam++", "hirescam", "scorecam", "eigencam", "layercam",
)

#: Canonical metric id -> expectation kind. The runner dispatches on the metric id.
METRICS: dict[str, str] = {
    "top1_is": "prediction",
    "top1_is_not": "prediction",
    "top1_in": "prediction",
    "in_topk": "prediction",
    "prob": "prediction",
    "mass_in": "localisation",
    "pointing_game": "localisation",
    "energy_pointing_game": "localisation",
    "iou_top": "localisation",
    "rank_accuracy": "localisation",
    "agreement": "comparison",
    "baseline_similarity": "baseline",
    "deletion_auc": "faithfulness",
    "insertion_auc": "faithfulness",
    "sanity": "sanity",
    "accuracy": "prediction",  # datasets only: top-1 against each image's label
}

#: Aggregate words of dataset expectations (``p<N>`` is the N-th percentile, 0 <= N <= 100),
#: besides ``share`` (``... for 90% of images``) and ``accuracy``.
AGGREGATE_WORDS: tuple[str, ...] = ("mean", "median", "min", "max")
#: Metrics whose per-image value is a number, so an aggregate word applies to them.
NUMERIC_METRICS: tuple[str, ...] = (
    "prob", "mass_in", "energy_pointing_game", "iou_top", "rank_accuracy", "agreement", "baseline_similarity",
    "deletion_auc", "insertion_auc", "sanity",
)
#: Ways to group a dataset expectation into one item per group.
GROUPS: tuple[str, ...] = ("class",)

#: Comparison operators of thresholded metrics.
OPS: tuple[str, ...] = (">", ">=", "<", "<=")
#: The two "operators" of ``pointing_game`` (which has no threshold).
POINTING_OPS: tuple[str, ...] = ("hits", "misses")

#: Options each metric accepts, with their defaults (``None``: required, no default).
#: ``Expectation.options`` always holds every option of its metric, defaults filled in.
METRIC_OPTIONS: dict[str, dict[str, object]] = {
    "pointing_game": {"within": 0.0},  # tolerance in pixels of the original image
    "iou_top": {"top": None},  # percent of the map's highest pixels, in (0, 100]
    "agreement": {"by": "pearson"},
    "baseline_similarity": {"by": "pearson"},
    "deletion_auc": {"steps": 16, "baseline": "blur"},  # as vitaudit.faithfulness
    "insertion_auc": {"steps": 16, "baseline": "blur"},
    "sanity": {"layers": 1, "by": "spearman"},  # layers: int >= 1 or "all"
}

#: Allowed values of the word-valued options.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "by": ("pearson", "spearman", "ssim"),
    "baseline": ("blur", "zero", "mean"),
}

#: Values of a model's ``crop:``.
CROPS: tuple[str, ...] = ("resize", "center")

Options = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Mark:
    """A pytest mark: apply with ``getattr(pytest.mark, m.name)(*m.args, **m.kwargs)``."""

    name: str
    args: tuple[object, ...] = ()
    kwargs: dict[str, object] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ModelDecl:
    """A model declared under ``models:``. ``name`` is not checked against any registry."""

    key: str
    name: str
    pretrained: bool | None = None  # None: not given (each source's default; fixtures are trained)
    checkpoint: str | None = None  # absolute path, checked to exist; never together with pretrained: true
    num_classes: int | None = None
    labels: tuple[str, ...] | None = None  # the class names, index order
    labels_path: str | None = None  # absolute path when ``labels:`` named a text file
    target_layer: str | None = None  # module path, e.g. "layer4" or "blocks.11.norm1"
    crop: Literal["resize", "center"] = "resize"
    seed: int | None = None
    model_kwargs: Options = ()  # constructor arguments, e.g. (("img_size", 64),); lists become tuples
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class ImageDecl:
    """An image declared under ``images:``: exactly one of ``path`` / ``skimage`` is set."""

    key: str
    path: str | None  # absolute path, checked to exist
    skimage: str | None  # name of a scikit-image sample: skimage.data.<name>() or a data_dir file
    regions: dict[str, Region] = field(default_factory=dict, hash=False)  # valid regions only
    file: str = ""
    line: int = 0
    store: object = field(default=None, hash=False, compare=False, repr=False)  # a vitaudit.storage.Store for a URI path


@dataclass(frozen=True)
class MapRef:
    """One explanation map: ``<model>.<method>(<options>)``, for a target class.

    ``options`` are sorted by name; ``target`` ``None`` means the model's top-1 class.
    """

    model: str
    method: str
    options: Options = ()
    target: Label | None = None

    @property
    def label(self) -> str:
        """Readable form, e.g. ``vit.rollout(discard_ratio=0.9,head_fusion=max)`` or ``vit.gradcam@tabby``."""
        opts = ",".join(f"{k}={format_value(v)}" for k, v in self.options)
        text = f"{self.model}.{self.method}" + (f"({opts})" if opts else "")
        return text + (f"@{self.target}" if self.target is not None else "")


#: How a relative threshold is made from a recorded baseline value ``b``.
RELATIVE_OPS: tuple[str, ...] = ("=", "-", "+", "*")


@dataclass(frozen=True)
class Relative:
    """A threshold written relative to a recorded value: ``baseline``, ``baseline - 0.05``, ``baseline * 0.9``.

    ``op`` is ``=`` (the baseline itself), ``-``, ``+`` or ``*`` with ``amount``. ``baseline`` is
    ``None`` as parsed; :mod:`vitaudit.audit.value_baselines` fills it in when it resolves the
    threshold for a run (and sets the expectation's ``value``).
    """

    op: str = "="
    amount: float = 0.0
    baseline: float | None = None
    #: ``baseline - ci``: ``amount`` is then taken in units of the recorded run's confidence-interval
    #: half-width (``ci``, filled in with ``baseline`` when the threshold is resolved).
    uses_ci: bool = False
    ci: float | None = None

    def threshold(self, baseline: float) -> float:
        """The threshold this makes of a recorded ``baseline`` (and, for ``baseline - ci``, of ``self.ci``)."""
        if self.uses_ci:
            width = self.amount * float(self.ci if self.ci is not None else 0.0)
            return baseline - width if self.op == "-" else baseline + width
        if self.op == "-":
            return baseline - self.amount
        if self.op == "+":
            return baseline + self.amount
        if self.op == "*":
            return baseline * self.amount
        return baseline

    @property
    def text(self) -> str:
        """As written: ``baseline - 0.05``, ``baseline - ci``."""
        if self.uses_ci:
            return f"baseline {self.op} " + ("ci" if self.amount == 1 else f"{self.amount:g} * ci")
        return "baseline" if self.op == "=" else f"baseline {self.op} {self.amount:g}"


@dataclass(frozen=True)
class Expectation:
    """One expectation on one image: one pytest item.

    - ``kind``: prediction | localisation | comparison | baseline | faithfulness | sanity.
    - ``metric``: a key of :data:`METRICS`.
    - ``model``: the model key for prediction and single-map kinds; ``None`` for ``agreement``.
    - ``maps``: no map for predictions, two for ``agreement``, one otherwise.
    - ``labels``: classes as written (``top1_*``, ``in_topk``, ``prob``); ``label_groups``
      holds the ``labels:`` groups that any of them (or a map's target) names.
    - ``k``: for ``in_topk``.
    - ``op``/``value``: ``op`` in :data:`OPS` with a float ``value``; for ``pointing_game``
      ``op`` is ``"hits"``/``"misses"`` and ``value`` is ``None``; ``None`` for ``top1_*``/``in_topk``.
    - ``relative``: set when the threshold is written against a recorded value (``>= baseline - 0.05``);
      ``value`` is then ``None`` until the run resolves it (:mod:`vitaudit.audit.value_baselines`).
    - ``options``: the metric's options (:data:`METRIC_OPTIONS`, defaults filled in), sorted.
    - ``text``: the expectation as written, on one line; ``file``/``line`` where.
    - ``marks``: file-level marks first, then the expectation's own.
    - Dataset expectations (``dataset`` set, ``image`` is then the dataset key too):
      ``aggregate`` is ``mean``/``median``/``min``/``max``/``p<N>``/``accuracy`` (``op``/``value``
      apply to the aggregate) or ``share`` (``op``/``value`` are the per-image check and
      ``share`` the fraction of images that must meet it); ``group`` is ``"class"`` for one
      item per class; ``confidence`` the level of ``with 95% confidence`` (see
      :mod:`vitaudit.intervals`).
    """

    id: str
    image: str
    kind: str
    metric: str
    model: str | None = None
    maps: tuple[MapRef, ...] = ()
    labels: tuple[Label, ...] = ()
    label_groups: tuple[tuple[str, tuple[Label, ...]], ...] = ()
    k: int | None = None
    region: RegionRef | None = None
    op: str | None = None
    value: float | None = None
    relative: Relative | None = None
    options: Options = ()
    text: str = ""
    file: str = ""
    line: int = 0
    marks: tuple[Mark, ...] = ()
    dataset: str | None = None
    aggregate: str | None = None
    share: float | None = None
    group: str | None = None
    #: ``... with 95% confidence`` (dataset aggregates): the verdict needs the whole confidence
    #: interval at this level to meet the threshold, not just the point value.
    confidence: float | None = None

    @property
    def model_keys(self) -> tuple[str, ...]:
        """The model keys the expectation uses (its model, then its maps'), each once."""
        return tuple(k for k in dict.fromkeys((self.model, *(m.model for m in self.maps))) if k)

    def option(self, name: str, default: object = None) -> object:
        """The value of option ``name``."""
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class AuditSpec:
    """A parsed audit file: what is valid, plus every problem found (``errors``)."""

    path: str
    models: dict[str, ModelDecl] = field(default_factory=dict, hash=False)  # valid models only
    label_groups: dict[str, tuple[Label, ...]] = field(default_factory=dict, hash=False)
    images: dict[str, ImageDecl] = field(default_factory=dict, hash=False)  # valid images only
    datasets: dict[str, Dataset] = field(default_factory=dict, hash=False)  # valid datasets only
    expectations: tuple[Expectation, ...] = ()
    errors: tuple[SpecError, ...] = ()


def format_value(value: object) -> str:
    """Write an option value the way a user would: ``true``, ``0.9``, ``max``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)
