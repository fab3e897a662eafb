"""The structured form: ``{image: goat, model: vit, method: attention, metric: mass_in, ...}``
-> :class:`~vitaudit.spec.draft.Draft` (the same drafts the sentence form produces)."""
from __future__ import annotations

import re

from .context import label_of, scalar_int, scalar_number, scalar_str
from .draft import Draft, option_mapping, parse_mapref
from .errors import SentenceError, did_you_mean, one_of
from .marks import MARK_KEYS
from .model import METRICS, OPS, POINTING_OPS, Label, MapRef, Relative
from .yamlload import YNode

_MAP = ("method_options", "target")
_THRESH = ("op", "value")
#: metric -> (required keys, optional keys), besides image, metric, id, xfail, skip and marks.
METRIC_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "top1_is": (("model", "label"), ()),
    "top1_is_not": (("model", "label"), ()),
    "top1_in": (("model", "labels"), ()),
    "in_topk": (("model", "label", "k"), ()),
    "prob": (("model", "label") + _THRESH, ()),
    "mass_in": (("model", "method", "region") + _THRESH, _MAP),
    "pointing_game": (("model", "method", "region"), _MAP + ("op", "within")),
    "energy_pointing_game": (("model", "method", "region") + _THRESH, _MAP),
    "iou_top": (("model", "method", "region", "top") + _THRESH, _MAP),
    "rank_accuracy": (("model", "method", "region") + _THRESH, _MAP),
    "agreement": (("maps",) + _THRESH, ("by",)),
    "baseline_similarity": (("model", "method") + _THRESH, _MAP + ("by",)),
    "deletion_auc": (("model", "method") + _THRESH, _MAP + ("steps", "baseline")),
    "insertion_auc": (("model", "method") + _THRESH, _MAP + ("steps", "baseline")),
    "sanity": (("model", "method") + _THRESH, _MAP + ("layers", "by")),
    "accuracy": (("model",) + _THRESH, ()),
}
#: Keys of dataset expectations (``dataset:`` instead of ``image:``).
DATASET_KEYS = ("dataset", "aggregate", "share", "group", "confidence")
OPTION_KEYS = ("within", "top", "by", "layers", "steps", "baseline")
COMMON_KEYS = ("image", "metric", "id") + DATASET_KEYS + MARK_KEYS
STRUCTURED_KEYS = COMMON_KEYS + tuple(dict.fromkeys(
    k for req, opt in METRIC_KEYS.values() for k in req + opt))
MAP_KEYS = ("model", "method", "method_options", "target")


def parse_structured(node: YNode) -> tuple[str, Draft]:
    """Image key (maybe ``"*"``) and draft of a structured expectation mapping."""
    values = node.value
    for key, key_node in node.keys.items():
        if key not in STRUCTURED_KEYS:
            raise SentenceError(f"unknown key '{key}' in expectation{did_you_mean(key, STRUCTURED_KEYS)}",
                                key_node.line)
    if "metric" not in values:
        raise SentenceError(f"a structured expectation needs 'metric' (one of {', '.join(METRICS)})", node.line)
    metric = scalar_str(values["metric"], "'metric'")
    if metric not in METRICS:
        raise SentenceError(f"unknown metric '{metric}'{did_you_mean(metric, METRICS)}; "
                            f"metrics: {', '.join(METRICS)}", values["metric"].line)
    if "image" in values and "dataset" in values:
        raise SentenceError("a structured expectation has 'image' or 'dataset', not both", node.key_line("dataset"))
    if "image" not in values and "dataset" not in values:
        raise SentenceError("a structured expectation needs 'image' (an image key, or \"*\" for every image) "
                            "or 'dataset'", node.line)
    subject = "dataset" if "dataset" in values else "image"
    image = scalar_str(values[subject], f"'{subject}'")
    required, optional = METRIC_KEYS[metric]
    for key, key_node in node.keys.items():
        if key not in COMMON_KEYS + required + optional:
            keys = ", ".join(required + optional)
            raise SentenceError(f"key '{key}' does not apply to metric {metric} (its keys: {keys})", key_node.line)
    for key in required:
        if key not in values:
            raise SentenceError(f"metric {metric} needs '{key}'", node.line)
    draft = Draft(metric)
    draft.lines = {key: key_node.line for key, key_node in node.keys.items()}
    draft.lines["image"] = values[subject].line
    _dataset_keys(values, subject, draft)
    if "maps" in values:
        draft.maps = _maps(values["maps"], draft.lines)
    if "model" in values:
        draft.model = scalar_str(values["model"], "'model'")
    if "method" in values:
        options = _method_options(values.get("method_options"))
        target = label_of(values["target"], "'target'") if "target" in values else None
        method = scalar_str(values["method"], "'method'")
        draft.maps = (MapRef(draft.model or "", method, options, target),)
    if "label" in values:
        draft.labels = (label_of(values["label"], "'label'"),)
    if "labels" in values:
        draft.labels, draft.group_only = _labels(values["labels"])
    if "k" in values:
        draft.k = scalar_int(values["k"], "'k'", 1)
    if "region" in values:
        draft.region = _region(values["region"])
    if "op" in values:
        draft.op = _op(values["op"], metric)
    elif metric == "pointing_game":
        draft.op = "hits"
    if "value" in values:
        draft.value, draft.relative = _value(values["value"])
    for key in OPTION_KEYS:
        if key in values:
            draft.options[key] = _option(key, values[key])
    return image, draft


def _value(node: YNode) -> tuple[float | None, Relative | None]:
    """A threshold: a number, ``baseline - 0.05`` (as in sentences), or ``{baseline: -0.05}``
    (the recorded value plus an offset; ``{baseline: 0}`` is the baseline itself)."""
    from .sentences import parse_relative

    if node.is_map:
        if list(node.value) != ["baseline"]:
            raise SentenceError("a relative 'value' is {baseline: <offset>}, e.g. {baseline: -0.05}", node.line)
        offset = scalar_number(node.value["baseline"], "the offset in {baseline: <offset>}")
        if offset == 0:
            return None, Relative("=", 0.0)
        return None, Relative("-" if offset < 0 else "+", abs(offset))
    if node.is_scalar and isinstance(node.value, str) and node.value.strip().lower().startswith("baseline"):
        try:
            relative, rest = parse_relative(" ".join(node.value.split()))
        except SentenceError as exc:
            raise SentenceError(exc.message, node.line) from None
        if relative is None or rest:
            raise SentenceError(f"cannot read threshold '{node.value}': write baseline, baseline - <n>, "
                                "baseline + <n> or baseline * <n>", node.line)
        return None, relative
    return scalar_number(node, "threshold 'value'"), None


def _maps(node: YNode, lines: dict[str, int]) -> tuple[MapRef, ...]:
    if not node.is_seq or len(node.value) != 2:
        raise SentenceError(f"'maps' must list two maps, e.g. [vit.rollout, resnet.gradcam], got {node.describe()}"
                            + (f" of {len(node.value)}" if node.is_seq else ""), node.line)
    refs = []
    for i, item in enumerate(node.value):
        lines[f"map{i}"] = item.line
        if item.is_scalar:
            try:
                refs.append(parse_mapref(scalar_str(item, "a map")))
            except SentenceError as exc:
                raise SentenceError(exc.message, item.line) from None
            continue
        if not item.is_map:
            raise SentenceError(f"a map is 'model.method' or {{model: ..., method: ...}}, got {item.describe()}",
                                item.line)
        for key, key_node in item.keys.items():
            if key not in MAP_KEYS:
                raise SentenceError(f"unknown key '{key}' in a map{did_you_mean(key, MAP_KEYS)}; "
                                    f"keys: {', '.join(MAP_KEYS)}", key_node.line)
        for key in ("model", "method"):
            if key not in item.value:
                raise SentenceError(f"a map needs '{key}'", item.line)
        target = label_of(item.value["target"], "'target'") if "target" in item.value else None
        refs.append(MapRef(scalar_str(item.value["model"], "'model'"), scalar_str(item.value["method"], "'method'"),
                           _method_options(item.value.get("method_options")), target))
    return tuple(refs)


def _method_options(node: YNode | None) -> tuple[tuple[str, object], ...]:
    return () if node is None else option_mapping(node, "method_options", "{head_fusion: max}", "method option")


def _labels(node: YNode) -> tuple[tuple[Label, ...], bool]:
    if node.is_scalar:
        return (label_of(node, "'labels'"),), True
    if not node.is_seq or not node.value:
        raise SentenceError(f"'labels' must be a non-empty list of classes or a group name, got {node.describe()}",
                            node.line)
    return tuple(label_of(item, "a class") for item in node.value), False


def _region(node: YNode) -> tuple[str, bool]:
    text = " ".join(scalar_str(node, "'region'").split())
    m = re.match(r"^(not\s+)?(\S+)$", text, re.IGNORECASE)
    if m is None or m[2].lower() == "not":
        raise SentenceError(f"'region' must be a region name or 'not <name>', got '{text}'", node.line)
    return m[2], bool(m[1])


def _op(node: YNode, metric: str) -> str:
    allowed = POINTING_OPS if metric == "pointing_game" else OPS
    op = node.raw.strip() if node.is_scalar else ""
    if op not in allowed:
        hint = ' (quote it: op: ">")' if metric != "pointing_game" and op in ("", "|") else ""
        raise SentenceError(f"'op' of {metric} must be {one_of(allowed)}, got {node.describe()}{hint}", node.line)
    return op


def _option(key: str, node: YNode) -> object:
    value = node.value if node.is_scalar else None
    if isinstance(value, str):
        text = value.strip()
        unit = {"within": "px", "top": "%"}.get(key)
        if unit and text.endswith(unit):
            return scalar_number(YNode("scalar", node.line, _number_or_text(text[: -len(unit)]),
                                       raw=text[: -len(unit)]), f"'{key}'")
        return text
    if not node.is_scalar or value is None:
        raise SentenceError(f"'{key}' must be a single value, got {node.describe()}", node.line)
    return value


def _number_or_text(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def _dataset_keys(values: dict[str, YNode], subject: str, draft: Draft) -> None:
    """``aggregate:``, ``share:`` and ``group:`` (datasets only)."""
    from .aggregates import _AGGREGATE
    from .model import AGGREGATE_WORDS, GROUPS

    given = [k for k in DATASET_KEYS[1:] if k in values]
    if given and subject != "dataset":
        raise SentenceError(f"'{given[0]}' applies to dataset expectations (dataset: <key>)", values[given[0]].line)
    if "aggregate" in values and "share" in values:
        raise SentenceError("give 'aggregate' or 'share', not both", values["share"].line)
    if draft.metric == "accuracy":
        draft.aggregate = "accuracy"
        if "aggregate" in values or "share" in values:
            key = "aggregate" if "aggregate" in values else "share"
            raise SentenceError("accuracy is already an aggregate; drop 'aggregate'/'share'", values[key].line)
    elif "aggregate" in values:
        word = scalar_str(values["aggregate"], "'aggregate'").lower()
        m = _AGGREGATE.match(f"{word} x")
        if m is None or m["rest"] != "x":
            raise SentenceError(f"'aggregate' must be {', '.join(AGGREGATE_WORDS)} or p<N>, got '{word}'"
                                f"{did_you_mean(word, AGGREGATE_WORDS)}", values["aggregate"].line)
        if m["pct"] is not None:
            pct = scalar_number_text(m["pct"], values["aggregate"].line)
            word = f"p{pct:g}"
        draft.aggregate = word
    elif subject == "dataset":
        draft.aggregate = "share"
        draft.share = scalar_number(values["share"], "'share'") if "share" in values else 1.0
        if not 0 < draft.share <= 1:
            raise SentenceError(f"'share' is a fraction of the images in (0, 1], got {draft.share:g}",
                                values["share"].line)
    if "group" in values:
        group = scalar_str(values["group"], "'group'")
        if group not in GROUPS:
            raise SentenceError(f"'group' must be {one_of(GROUPS)}, got '{group}'", values["group"].line)
        draft.group = group
    if "confidence" in values:
        level = scalar_number(values["confidence"], "'confidence'")
        if not 0 < level < 1:
            raise SentenceError(f"'confidence' is a level in (0, 1), e.g. 0.95, got {level:g}", values["confidence"].line)
        draft.confidence = level


def scalar_number_text(text: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SentenceError(f"percentile must be a number, got '{text}'", line) from None
    if not 0 <= value <= 100:
        raise SentenceError(f"percentile must be in [0, 100], got {text}", line)
    return value
