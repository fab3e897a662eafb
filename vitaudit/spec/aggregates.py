"""Dataset expectations: the aggregate words around a per-image sentence, and their checks.

A sentence about a dataset is a per-image sentence (:mod:`.sentences`) with, around it:

- an aggregate word in front: ``mean | median | min | max | p<N>`` (``op``/``value`` then
  apply to the aggregate of the per-image values), or
- ``for N% of images`` at the end (Great Expectations' ``mostly``): the per-image check must
  hold on at least that share of the images; with neither, it must hold on every image;
- ``per class`` at the very end: one item per class of a labelled dataset;
- or the dataset-only form ``<model> accuracy <op> <number>`` (top-1 against the labels);
- ``with 95% confidence`` at the end (before or after ``per class``): the aggregate's confidence
  interval, not only its value, must meet the threshold (:mod:`vitaudit.intervals`).
"""
from __future__ import annotations

import re
from dataclasses import replace

from vitaudit.regions import Region, RegionRef

from .draft import NAME, Draft, parse_number
from .errors import SentenceError, did_you_mean
from .model import NUMERIC_METRICS, Expectation
from .sentences import _threshold as threshold
from .sentences import parse_sentence

_PER_CLASS = re.compile(r"^(?P<rest>.+?)\s+per\s+class$", re.IGNORECASE)
_SHARE = re.compile(r"^(?P<rest>.+?)\s+for\s+(?:(?P<pct>\S+?)\s*%|(?P<all>all|every))\s+(?:of\s+)?(?:the\s+)?"
                    r"images?$", re.IGNORECASE)
_CONFIDENCE = re.compile(r"^(?P<rest>.+?)\s+with\s+(?P<pct>\S+?)\s*%\s+confidence$", re.IGNORECASE)
_AGGREGATE = re.compile(r"^(?P<agg>mean|median|min|max|p(?P<pct>[0-9.]+))\s+(?P<rest>.+)$", re.IGNORECASE)
_ACCURACY = re.compile(rf"^(?P<model>{NAME})\s+accuracy\b\s*(?P<rest>.*)$", re.IGNORECASE)
_YES_NO = ("top1_is", "top1_is_not", "top1_in", "in_topk", "pointing_game")
DATASET_FORMS = (
    "<model> accuracy <op> <number>",
    "mean|median|min|max|p<N> <per-image sentence with a number>",
    "<per-image sentence> for <N>% of images",
    "... per class",
    "... with <N>% confidence",
)


def parse_dataset_sentence(sentence: str) -> Draft:
    """Parse a sentence about a dataset; raise :class:`SentenceError` if it fits no form."""
    text = " ".join(str(sentence).split())
    group = confidence = None
    if m := _CONFIDENCE.match(text):
        text, confidence = m["rest"], _level(m["pct"])
    if m := _PER_CLASS.match(text):
        text, group = m["rest"], "class"
    if confidence is None and (m := _CONFIDENCE.match(text)):
        text, confidence = m["rest"], _level(m["pct"])
    share: float | None = None
    if m := _SHARE.match(text):
        text = m["rest"]
        share = 1.0 if m["all"] else _percent(m["pct"], "the share of images")
        if share <= 0:
            raise SentenceError(f"'for {m['pct']}% of images' is always true; use a share above 0")
    if m := _ACCURACY.match(text):
        if share is not None:
            raise SentenceError("accuracy is already a share of images; write '<model> accuracy > 0.9' alone")
        thr = threshold(m["rest"].strip(), f"{m['model']} accuracy")
        if thr.rest.strip():
            raise SentenceError(f"unexpected '{thr.rest.strip()}' at the end of the sentence (accuracy)")
        draft = thr.apply(Draft("accuracy", model=m["model"], aggregate="accuracy"))
    else:
        aggregate = None
        m = _AGGREGATE.match(text)
        if m is not None and share is None:
            try:
                draft = parse_sentence(m["rest"])
            except SentenceError:
                draft = parse_sentence(text)  # a model named like an aggregate word, or a real error
            else:
                aggregate = m["agg"].lower()
                if m["pct"] is not None:
                    aggregate = f"p{_percent(m['pct'], 'the percentile') * 100:g}"
        else:
            draft = parse_sentence(text)
        draft.aggregate = aggregate or "share"
        if aggregate is None:
            draft.share = 1.0 if share is None else share
    draft.group = group
    draft.confidence = confidence
    return draft


def _level(text: str) -> float:
    """``95`` (of ``with 95% confidence``) -> 0.95, strictly between 0 and 100."""
    value = parse_number(text, "the confidence level")
    if not 0 < value < 100:
        raise SentenceError(f"the confidence level must be a percentage strictly between 0 and 100, got {text}%")
    return value / 100.0


def _percent(text: str, what: str) -> float:
    value = parse_number(text, what)
    if not 0 <= value <= 100:
        raise SentenceError(f"{what} must be a percentage in [0, 100], got {text}%")
    return value / 100.0


def build_dataset(exp: Expectation, draft: Draft, decls) -> Expectation:
    """Check ``exp`` (built for the dataset key) against its dataset; set the dataset fields."""
    key = exp.image
    dataset = decls.datasets[key]
    line = draft.lines.get("image")
    aggregate = draft.aggregate or "share"
    if aggregate not in ("share", "accuracy") and exp.metric not in NUMERIC_METRICS:
        why = "a yes/no result per image" if exp.metric in _YES_NO else "no number per image"
        raise SentenceError(f"{exp.metric} has {why}, so '{aggregate}' does not apply; write "
                            f"'... for 90% of images' for the share of images that pass", line)
    if exp.metric == "accuracy" and aggregate != "accuracy":
        raise SentenceError("accuracy is a dataset aggregate: write '<model> accuracy > 0.9'", line)
    if (exp.metric == "accuracy" or draft.group == "class") and not dataset.labelled:
        what = "accuracy" if exp.metric == "accuracy" else "'per class'"
        raise SentenceError(f"{what} needs the images' classes, but dataset '{key}' has no labels "
                            "(add labels: folders, a label column, or a labelled annotation file)", line)
    if aggregate == "share" and exp.relative is not None:
        raise SentenceError("a per-image threshold cannot be 'baseline ...' (each image would need its own); "
                            "write an aggregate against the baseline, e.g. 'mean <map> mass in <region> >= "
                            "baseline - 0.05'", draft.lines.get("value", line))
    share = draft.share if aggregate == "share" else None
    if share is not None and not 0 < share <= 1:
        raise SentenceError(f"share must be in (0, 1] (a fraction of the images), got {share:g}", line)
    if draft.confidence is not None and aggregate in ("min", "max"):
        raise SentenceError(f"'{aggregate}' has no confidence interval (an extreme of a sample says little about "
                            "another); use a percentile, e.g. 'p5 ... with 95% confidence'",
                            draft.lines.get("confidence", line))
    return replace(exp, dataset=key, aggregate=aggregate, share=share, group=draft.group,
                   confidence=draft.confidence)


def dataset_region(ref: tuple[str, bool], key: str, decls, line: int | None) -> RegionRef:
    """A region of a dataset's annotations (rasterised per image by the dataset's loader)."""
    name, negate = ref
    dataset = decls.datasets[key]
    if name not in dataset.region_names:
        if not dataset.region_names:
            raise SentenceError(f"unknown region '{name}': dataset '{key}' has no regions", line)
        raise SentenceError(f"unknown region '{name}' of dataset '{key}'{did_you_mean(name, dataset.region_names)}; "
                            f"regions: {', '.join(dataset.region_names)}", line)
    return RegionRef(Region(name, "annotation", file=dataset.file, line=dataset.line), negate)  # type: ignore[arg-type]


def image_sentence_error(sentence: str, image: str, error: SentenceError) -> SentenceError:
    """The error for a sentence about an image: if it reads as a dataset sentence, say so."""
    try:
        draft = parse_dataset_sentence(sentence)
    except SentenceError:
        return error
    if draft.group or draft.metric == "accuracy" or draft.aggregate != "share" or draft.share != 1.0 \
            or draft.confidence is not None:
        return SentenceError(_ON_IMAGE.format(image=image), error.line)
    return error


_ON_IMAGE = ("'{image}' is an image; aggregates ('mean ...', '... for 90% of images', 'per class', accuracy) "
             "apply to datasets declared under datasets:")


def not_on_images(draft: Draft, image: str, line: int | None) -> None:
    """Aggregate words on a single image are a mistake worth a clear sentence."""
    if draft.group or draft.aggregate not in (None,) or draft.share is not None or draft.metric == "accuracy" \
            or draft.confidence is not None:
        raise SentenceError(_ON_IMAGE.format(image=image), line)
    if draft.relative is not None and draft.relative.uses_ci:
        raise SentenceError(f"'{draft.relative.text}': ci is the confidence interval recorded for a dataset "
                            f"aggregate, and '{image}' is an image; write baseline - <number>",
                            draft.lines.get("value", line))
