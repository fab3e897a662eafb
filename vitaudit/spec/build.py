"""Turn a :class:`~vitaudit.spec.draft.Draft` into an :class:`~vitaudit.spec.model.Expectation`
for one image: check every name against the declarations, validate and default the options.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vitaudit.datasets.base import Dataset
from vitaudit.regions import Region, RegionRef

from .aggregates import build_dataset, dataset_region, not_on_images
from .draft import Draft
from .errors import SentenceError, did_you_mean, one_of
from .model import (METHODS, METRIC_OPTIONS, METRICS, OPS, OPTION_CHOICES, POINTING_OPS, RELATIVE_OPS, Expectation,
                    ImageDecl, Label, ModelDecl)


@dataclass
class Declarations:
    """What the file declares. ``bad_*`` map a broken declaration's key to ``"line N: problem"``."""

    models: dict[str, ModelDecl] = field(default_factory=dict)
    bad_models: dict[str, str] = field(default_factory=dict)
    images: dict[str, ImageDecl] = field(default_factory=dict)
    bad_images: dict[str, str] = field(default_factory=dict)
    image_order: list[str] = field(default_factory=list)  # every declared image key, in file order
    regions: dict[str, dict[str, Region]] = field(default_factory=dict)  # image -> valid regions
    bad_regions: dict[str, dict[str, str]] = field(default_factory=dict)  # image -> region -> why
    label_groups: dict[str, tuple[Label, ...]] = field(default_factory=dict)
    datasets: dict[str, Dataset] = field(default_factory=dict)  # valid datasets only
    bad_datasets: dict[str, str] = field(default_factory=dict)
    dataset_order: list[str] = field(default_factory=list)  # every declared dataset key, in file order


def build(draft: Draft, image: str, decls: Declarations) -> Expectation:
    """The expectation ``draft`` describes, on ``image``; raise :class:`SentenceError` if it cannot be."""
    lines = draft.lines
    on_dataset = image in decls.datasets
    if on_dataset:
        if draft.metric == "accuracy":
            _check_model(draft.model, decls, lines.get("model"))
            _check_op(draft, lines)
            return build_dataset(Expectation(id="", image=image, kind="prediction", metric="accuracy",
                                             model=draft.model, op=draft.op, value=draft.value,
                                             relative=draft.relative), draft, decls)
    else:
        _check_image(image, decls, lines.get("image"))
        not_on_images(draft, image, lines.get("image"))
    metric = draft.metric
    if metric not in METRICS:  # pragma: no cover - the readers only produce known metrics
        raise SentenceError(f"unknown metric '{metric}'")
    if draft.model is not None:
        _check_model(draft.model, decls, lines.get("model"))
    for i, ref in enumerate(draft.maps):
        map_line = lines.get(f"map{i}")
        if ref.model != draft.model:
            _check_model(ref.model, decls, map_line)
        if ref.method not in METHODS:
            raise SentenceError(f"unknown method '{ref.method}'{did_you_mean(ref.method, METHODS)}; "
                                f"methods: {', '.join(METHODS)}", lines.get("method", map_line))
    region = None
    if draft.region:
        region = (dataset_region if on_dataset else _region)(draft.region, image, decls, lines.get("region"))
    labels = draft.labels
    for label in labels:
        _check_label(label, lines.get("labels"))
    if draft.group_only and labels[0] not in decls.label_groups:
        known = f"; groups: {', '.join(decls.label_groups)}" if decls.label_groups else ""
        raise SentenceError(f"'{labels[0]}' is not a group from labels:{did_you_mean(labels[0], decls.label_groups)}"
                            f"{known}; for one class write 'top1 is {labels[0]}' or 'top1 in [{labels[0]}]'",
                            lines.get("labels"))
    named = list(labels) + [m.target for m in draft.maps if m.target is not None]
    groups = tuple((g, decls.label_groups[g]) for g in dict.fromkeys(n for n in named if isinstance(n, str))
                   if g in decls.label_groups)
    if draft.k is not None and (isinstance(draft.k, bool) or not isinstance(draft.k, int) or draft.k < 1):
        raise SentenceError(f"k must be a whole number >= 1, got {draft.k!r}", lines.get("k"))
    _check_op(draft, lines)
    options = _options(draft)
    single = len(draft.maps) == 1
    exp = Expectation(
        id="", image=image, kind=METRICS[metric], metric=metric,
        model=draft.model if draft.model is not None else (draft.maps[0].model if single else None),
        maps=draft.maps, labels=labels, label_groups=groups, k=draft.k, region=region,
        op=draft.op, value=draft.value, relative=draft.relative, options=options,
    )
    return build_dataset(exp, draft, decls) if on_dataset else exp


def _check_image(image: str, decls: Declarations, line: int | None) -> None:
    if image in decls.bad_datasets and image not in decls.images:
        raise SentenceError(f"dataset '{image}' is invalid ({decls.bad_datasets[image]})", line)
    if image in decls.bad_images:
        raise SentenceError(f"image '{image}' is invalid ({decls.bad_images[image]})", line)
    if image not in decls.images:
        known = list(decls.image_order) + [k for k in decls.datasets if k not in decls.image_order]
        if not known:
            raise SentenceError(f"unknown image '{image}': the file declares no images or datasets", line)
        what = "images" if not decls.datasets else "images and datasets"
        raise SentenceError(f"unknown image '{image}'{did_you_mean(image, known)}; {what}: {', '.join(known)}", line)


def _check_model(key: str, decls: Declarations, line: int | None) -> None:
    if key in decls.bad_models:
        raise SentenceError(f"model '{key}' is invalid ({decls.bad_models[key]})", line)
    if key not in decls.models:
        if not decls.models:
            raise SentenceError(f"unknown model '{key}': the file declares no models", line)
        raise SentenceError(f"unknown model '{key}'{did_you_mean(key, decls.models)}; "
                            f"models: {', '.join(decls.models)}", line)


def _region(ref: tuple[str, bool], image: str, decls: Declarations, line: int | None) -> RegionRef:
    name, negate = ref
    bad = decls.bad_regions.get(image, {})
    if name in bad:
        raise SentenceError(f"region '{name}' of image '{image}' is invalid ({bad[name]})", line)
    regions = decls.regions.get(image, {})
    if name not in regions:
        if not regions:
            raise SentenceError(f"unknown region '{name}': image '{image}' declares no regions", line)
        raise SentenceError(f"unknown region '{name}' of image '{image}'{did_you_mean(name, regions)}; "
                            f"regions: {', '.join(regions)}", line)
    return RegionRef(regions[name], negate)


def _check_label(label: Label, line: int | None) -> None:
    if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
        raise SentenceError(f"a class is a name or an index, got {label!r}", line)
    if isinstance(label, int) and label < 0:
        raise SentenceError(f"a class index cannot be negative, got {label}", line)


def _check_op(draft: Draft, lines: dict[str, int]) -> None:
    line = lines.get("op")
    if draft.metric == "pointing_game":
        if draft.op not in POINTING_OPS:
            raise SentenceError(f"op of pointing_game must be hits or misses, got {draft.op!r}", line)
        return
    thresholded = draft.metric not in ("top1_is", "top1_is_not", "top1_in", "in_topk")
    if not thresholded:
        return
    if draft.op not in OPS:
        raise SentenceError(f"op must be one of {one_of(OPS)}, got {draft.op!r}", line)
    if draft.relative is not None:
        if draft.relative.op not in RELATIVE_OPS:  # pragma: no cover - the readers only produce these
            raise SentenceError(f"unknown relative threshold {draft.relative.op!r}", lines.get("value"))
        return
    if isinstance(draft.value, bool) or not isinstance(draft.value, (int, float)):
        raise SentenceError(f"threshold must be a number, got {draft.value!r}", lines.get("value"))


def _options(draft: Draft) -> tuple[tuple[str, object], ...]:
    allowed = METRIC_OPTIONS.get(draft.metric, {})
    out: dict[str, object] = {}
    for name, value in draft.options.items():
        line = draft.lines.get(name)
        if name not in allowed:
            its = f"its options: {', '.join(allowed)}" if allowed else "it takes none"
            raise SentenceError(f"option '{name}' does not apply to {draft.metric} ({its})", line)
        out[name] = _option_value(name, value, line)
    for name, default in allowed.items():
        if name not in out:
            if default is None:
                raise SentenceError(f"{draft.metric} needs option '{name}'", draft.lines.get("metric"))
            out[name] = default
    return tuple(sorted(out.items()))


def _option_value(name: str, value: object, line: int | None) -> object:
    if name in OPTION_CHOICES:
        choices = OPTION_CHOICES[name]
        word = str(value).lower() if isinstance(value, str) else value
        if word not in choices:
            raise SentenceError(f"'{name}' must be {one_of(choices)}, got '{value}'{did_you_mean(str(value), choices)}",
                                line)
        return word
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "within":
        if not number or value < 0:
            raise SentenceError(f"'within' must be a distance in pixels >= 0, got {value!r}", line)
        return float(value)
    if name == "top":
        if not number or not 0 < value <= 100:
            raise SentenceError(f"'top' must be a percentage in (0, 100], got {value!r}", line)
        return float(value)
    if name == "steps":
        if not number or int(value) != value or value < 1:
            raise SentenceError(f"'steps' must be a whole number >= 1, got {value!r}", line)
        return int(value)
    if name == "layers":
        if isinstance(value, str) and value.lower() == "all":
            return "all"
        if not number or int(value) != value or value < 1:
            raise SentenceError(f"'layers' must be a whole number >= 1 or 'all', got {value!r}", line)
        return int(value)
    return value  # pragma: no cover - every option is handled above
