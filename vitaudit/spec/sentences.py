"""The sentence form: ``vit.attention mass in goat > 0.4`` -> :class:`~vitaudit.spec.draft.Draft`.

Pure text parsing: model, method and region names are checked later, against the file's
declarations, by :mod:`vitaudit.spec.build`. Keywords are case-insensitive; names are not.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .draft import (NAME, Draft, closing_paren, parse_label, parse_mapref, parse_mapref_head,
                    parse_number, split_top)
from .errors import SentenceError
from .model import METHODS, MapRef, Relative

#: Every sentence shape, for error messages and the docs.
PREDICTION_FORMS = (
    "<model> top1 is <class>",
    "<model> top1 is not <class>",
    "<model> top1 in [<class>, ...]",
    "<class> in <model> top<k>",
    "<model> prob(<class>) <op> <number>",
)
#: The right-hand side of any thresholded sentence.
THRESHOLD_FORMS = ("<number>", "baseline", "baseline - <number>", "baseline + <number>", "baseline * <number>",
                   "baseline - ci", "baseline + ci", "baseline - <number> * ci")
MAP_FORMS = (
    "mass in <region> <op> <number>",
    "pointing game hits|misses <region> [within <n>px]",
    "energy pointing game in <region> <op> <number>",
    "iou(top <n>%, <region>) <op> <number>",
    "rank accuracy in <region> <op> <number>",
    "baseline similarity <op> <number> [by <measure>]",
    "deletion auc|insertion auc <op> <number> [steps <n>] [baseline blur|zero|mean]",
    "sanity similarity <op> <number> [after randomizing <n> layers] [by <measure>]",
)
COMPARISON_FORMS = ("agreement(<map>, <map>) <op> <number> [by pearson|spearman|ssim]",)
_MAP_SHORT = ("mass in <region> <op> <n> | pointing game hits|misses <region> | energy pointing game in <region> "
              "<op> <n> | iou(top <n>%, <region>) <op> <n> | rank accuracy in <region> <op> <n> | baseline similarity "
              "<op> <n> | deletion auc <op> <n> | insertion auc <op> <n> | sanity similarity <op> <n>")

# Metric phrases that follow "<model>.<method> [for <class>]", longest first.
_PHRASES: tuple[tuple[str, str], ...] = (
    ("energy pointing game in", "energy_pointing_game"),
    ("pointing game hits", "pointing_game"),
    ("pointing game misses", "pointing_game"),
    ("mass in", "mass_in"),
    ("iou(", "iou_top"),
    ("rank accuracy in", "rank_accuracy"),
    ("baseline similarity", "baseline_similarity"),
    ("deletion auc", "deletion_auc"),
    ("insertion auc", "insertion_auc"),
    ("sanity similarity", "sanity"),
)
_ACCEPTED = ("accepted forms: " + "; ".join(PREDICTION_FORMS)
             + "; <model>.<method> [for <class>] <metric> (mass in <region> <op> <n>, pointing game hits <region>, ...)"
             + "; " + COMPARISON_FORMS[0])
_TARGET_RE = re.compile(
    r"^for\s+(?P<target>.+?)\s+(?=(energy pointing game|pointing game|mass in|iou\s*\(|rank accuracy"
    r"|baseline similarity|deletion auc|insertion auc|sanity similarity)\b)", re.IGNORECASE)
_THRESHOLD_RE = re.compile(r"^(?P<op>=>|=<|[<>=!]=?)\s*(?P<value>[^\s,]+)\s*(?P<rest>.*)$")
_RELATIVE_RE = re.compile(r"^baseline\b(?:\s*(?P<op>[-+*])\s*(?:(?P<times>[^\s,*]+)\s*\*\s*)?(?P<amount>[^\s,]+))?"
                          r"\s*(?P<rest>.*)$", re.IGNORECASE)
_REGION_RE = re.compile(r"^(?P<neg>not\s+)?(?P<name>[^\s<>=!,()]+)\s*(?P<rest>.*)$", re.IGNORECASE)
_TOPK_RE = re.compile(rf"^(?P<label>.+?)\s+in\s+(?P<model>{NAME})\s+top-?\s*(?P<k>\d+)$", re.IGNORECASE)
_TOP1 = r"top-?\s*1"
_CLAUSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE)) for name, pattern in (
        ("within", r"^within\s+(?P<v>[^\s,]+?)\s*px\b"),
        ("by", r"^by\s+(?P<v>[^\s,]+)"),
        ("layers", r"^after\s+randomi[sz]ing\s+(?:the\s+last\s+)?(?P<v>\S+)\s+layers?\b"),
        ("steps", r"^(?:with\s+|in\s+)?(?P<v>\d+)\s+steps\b"),
        ("steps", r"^steps\s*=?\s*(?P<v>[^\s,]+)"),
        ("baseline", r"^baseline\s*=?\s*(?P<v>[^\s,]+)"),
        ("baseline", r"^(?:with\s+)?(?:an?\s+)?(?P<v>[A-Za-z]+)\s+baseline\b"),
    ))


def parse_sentence(sentence: str) -> Draft:
    """Parse one sentence (without its ``<image>:``); raise :class:`SentenceError` if it fits no form."""
    text = " ".join(str(sentence).split())
    if not text:
        raise SentenceError("empty expectation sentence")
    if re.match(r"^agreement\s*\(", text, re.IGNORECASE):
        return _agreement(text)
    head = parse_mapref_head(text)
    if head is not None:
        return _map_sentence(text, *head)
    topk = _TOPK_RE.match(text)
    if topk is not None:
        return Draft("in_topk", model=topk["model"], labels=(parse_label(topk["label"]),), k=int(topk["k"]))
    m = re.match(rf"^(?P<model>{NAME})\s+(?P<tail>.+)$", text)
    if m is not None:
        return _prediction(text, m["model"], m["tail"])
    raise SentenceError(_unknown_form(text))


def _prediction(text: str, model: str, tail: str) -> Draft:
    if m := re.match(rf"^{_TOP1}\s+is\s+not\s+(?P<label>.+)$", tail, re.IGNORECASE):
        return Draft("top1_is_not", model=model, labels=(parse_label(m["label"]),))
    if m := re.match(rf"^{_TOP1}\s+is\s+(?P<label>.+)$", tail, re.IGNORECASE):
        return Draft("top1_is", model=model, labels=(parse_label(m["label"]),))
    if m := re.match(rf"^{_TOP1}\s+in\s+\[(?P<labels>.*)\]$", tail, re.IGNORECASE):
        if not m["labels"].strip():
            raise SentenceError("top1 in [...] needs at least one class")
        labels = tuple(parse_label(p) for p in split_top(m["labels"]))
        return Draft("top1_in", model=model, labels=labels)
    if m := re.match(rf"^{_TOP1}\s+in\s+(?P<group>.+)$", tail, re.IGNORECASE):
        return Draft("top1_in", model=model, labels=(parse_label(m["group"]),), group_only=True)
    if m := re.match(r"^prob\s*\(", tail, re.IGNORECASE):
        close = closing_paren(tail, m.end() - 1)
        label = parse_label(tail[m.end() : close])
        threshold = _threshold(tail[close + 1 :].strip(), "prob(<class>)")
        _no_rest(threshold.rest, "prob")
        return threshold.apply(Draft("prob", model=model, labels=(label,)))
    if m := re.match(r"^top-?\s*(\d+)\b", tail, re.IGNORECASE):
        raise SentenceError(f"cannot parse '{text}'; for the top-{m[1]} write '<class> in {model} top{m[1]}'")
    if _starts_with_phrase(tail) or tail.split()[0].lower() in METHODS:
        raise SentenceError(f"cannot parse '{text}': an explanation map is written <model>.<method>, "
                            f"e.g. '{model}.gradcam {tail}'")
    raise SentenceError(f"cannot parse '{text}'; {_ACCEPTED}")


def _map_sentence(text: str, ref: MapRef, tail: str) -> Draft:
    if not tail:
        raise SentenceError(f"'{text}' says nothing about {ref.label}; write one of: {_MAP_SHORT}")
    target = None
    if m := _TARGET_RE.match(tail):
        target = parse_label(m["target"])
        tail = tail[m.end() :]
    elif re.match(r"^for\s", tail, re.IGNORECASE):
        raise SentenceError(f"cannot parse '{text}': 'for <class>' must be followed by a metric: {_MAP_SHORT}")
    if target is not None:
        ref = MapRef(ref.model, ref.method, ref.options, target)
    low = tail.lower()
    for phrase, metric in _PHRASES:
        if low.startswith(phrase) and (phrase.endswith("(") or low == phrase or low[len(phrase)] == " "):
            draft = _metric(metric, phrase, tail[len(phrase) :].strip(), text)
            draft.model = ref.model
            draft.maps = (ref,)
            return draft
    if tail.lower().startswith("iou"):
        raise SentenceError(f"cannot parse '{text}': write iou(top <n>%, <region>) <op> <number>")
    raise SentenceError(f"unknown metric in '{text}'{_phrase_hint(tail)}; after {ref.label} write one of: {_MAP_SHORT}")


def _metric(metric: str, phrase: str, rest: str, text: str) -> Draft:
    if metric == "iou_top":
        close = closing_paren("(" + rest, 0) - 1
        parts = split_top(rest[:close])
        top = re.match(r"^top\s*(?P<v>[^\s%]+)\s*%$", parts[0], re.IGNORECASE) if len(parts) == 2 else None
        if top is None:
            raise SentenceError(f"cannot parse '{text}': write iou(top <n>%, <region>) <op> <number>")
        region, leftover = _region(parts[1], "iou(top <n>%, <region>)")
        if leftover:
            raise SentenceError(f"cannot parse '{text}': write iou(top <n>%, <region>) <op> <number>")
        threshold = _threshold(rest[close + 1 :].strip(), "iou(...)")
        draft, rest = threshold.apply(Draft(metric, region=region)), threshold.rest
        draft.options["top"] = parse_number(top["v"], "iou's top percentage")
    elif metric == "pointing_game":
        region, rest = _region(rest, phrase)
        if _THRESHOLD_RE.match(rest) and rest[0] in "<>=!":
            raise SentenceError(f"cannot parse '{text}': the pointing game has no threshold; "
                                "it passes when the map's maximum hits (or misses) the region")
        draft = Draft(metric, region=region, op=phrase.split()[-1].lower())
    elif metric in ("mass_in", "energy_pointing_game", "rank_accuracy"):
        region, rest = _region(rest, phrase)
        threshold = _threshold(rest, f"{phrase} <region>")
        draft, rest = threshold.apply(Draft(metric, region=region)), threshold.rest
    else:
        threshold = _threshold(rest, phrase)
        draft, rest = threshold.apply(Draft(metric)), threshold.rest
    draft.options.update(_clauses(rest, metric))
    return draft


def _agreement(text: str) -> Draft:
    open_at = text.index("(")
    close = closing_paren(text, open_at)
    args = split_top(text[open_at + 1 : close])
    if len(args) != 2 or not all(args):
        raise SentenceError(f"agreement compares two maps: agreement(<model>.<method>, <model>.<method>), got '{text}'")
    maps = tuple(parse_mapref(a) for a in args)
    threshold = _threshold(text[close + 1 :].strip(), "agreement(...)")
    draft = threshold.apply(Draft("agreement", maps=maps))
    draft.options.update(_clauses(threshold.rest, "agreement"))
    return draft


@dataclass
class Threshold:
    """The right-hand side of a comparison: ``> 0.4`` or ``>= baseline - 0.05`` (then ``value`` is
    ``None`` and ``relative`` says how to make it from the recorded value); ``rest`` is what follows."""

    op: str
    value: float | None
    relative: Relative | None
    rest: str

    def apply(self, draft: Draft) -> Draft:
        """Set ``draft``'s op, value and relative threshold; return it."""
        draft.op, draft.value, draft.relative = self.op, self.value, self.relative
        return draft


def _threshold(text: str, after: str) -> Threshold:
    """``<op> <number>`` or ``<op> baseline [-|+|* <number>]`` at the start of ``text``."""
    m = _THRESHOLD_RE.match(text)
    if m is None:
        shown = f" '{text}'" if text else " nothing"
        raise SentenceError(f"expected a comparison like '> 0.4' after '{after}', got{shown}")
    if m["op"] not in (">", ">=", "<", "<="):
        raise SentenceError(f"operator '{m['op']}' is not supported; use >, >=, < or <=")
    right = text[len(m["op"]):].strip()
    relative, rest = parse_relative(right)
    if relative is not None:
        return Threshold(m["op"], None, relative, rest)
    return Threshold(m["op"], parse_number(m["value"]), None, m["rest"])


def parse_relative(text: str) -> tuple[Relative | None, str]:
    """``baseline``, ``baseline - 0.05``, ``baseline + x``, ``baseline * 0.9`` at the start of ``text``
    -> the relative threshold and the rest; ``(None, text)`` when it does not start with ``baseline``."""
    m = _RELATIVE_RE.match(text)
    if m is None:
        return None, text
    if m["op"] is None:
        rest = m["rest"]
        if re.match(r"^[-+*/x]", rest):
            raise SentenceError(f"cannot read '{text}': write baseline, baseline - <n>, baseline + <n> "
                                "or baseline * <n>")
        return Relative("=", 0.0), rest
    if m["amount"].lower() == "ci":  # the recorded run's confidence-interval half-width
        if m["op"] not in "-+":
            raise SentenceError(f"cannot read '{text}': write baseline - ci or baseline + ci")
        times = parse_number(m["times"], "the factor in 'baseline - <n> * ci'") if m["times"] else 1.0
        return Relative(m["op"], times, uses_ci=True), m["rest"]
    if m["times"]:
        raise SentenceError(f"cannot read '{text}': write baseline - <n>, or baseline - <n> * ci")
    amount = parse_number(m["amount"], f"the amount in 'baseline {m['op']} ...'")
    return Relative(m["op"], amount), m["rest"]


def _region(text: str, after: str) -> tuple[tuple[str, bool], str]:
    m = _REGION_RE.match(text)
    if m is None or m["name"].lower() == "not":
        raise SentenceError(f"expected a region name after '{after}'")
    return (m["name"], bool(m["neg"])), m["rest"]


def _clauses(text: str, metric: str) -> dict[str, object]:
    """Trailing options: ``within 15px``, ``by ssim``, ``after randomizing 2 layers``, ``steps 50``..."""
    options: dict[str, object] = {}
    rest = text.strip()
    while rest:
        rest = re.sub(r"^(,|and\b|\s)+", "", rest, flags=re.IGNORECASE)
        if not rest:
            break
        for name, pattern in _CLAUSES:  # noqa: B007 (used after the break)
            m = pattern.match(rest)
            if m is not None:
                break
        else:
            raise SentenceError(f"unexpected '{rest}' at the end of the sentence ({metric})")
        if name in options:
            raise SentenceError(f"option '{name}' given twice")
        raw = m["v"]
        if name == "within":
            options[name] = parse_number(raw, "'within' distance")
        elif name in ("layers", "steps") and raw.isdigit():
            options[name] = int(raw)
        else:
            options[name] = raw
        rest = rest[m.end() :]
    return options


def _no_rest(rest: str, metric: str) -> None:
    if rest.strip():
        raise SentenceError(f"unexpected '{rest.strip()}' at the end of the sentence ({metric})")


def _starts_with_phrase(tail: str) -> bool:
    low = tail.lower()
    return any(low.startswith(p) for p, _ in _PHRASES)


def _phrase_hint(tail: str) -> str:
    """`` (did you mean 'mass in'?)`` for the metric phrase closest to the start of ``tail``."""
    words = tail.lower().split()
    best, best_ratio = "", 0.6
    for phrase, _ in _PHRASES:
        phrase = phrase.rstrip("(")
        guess = " ".join(words[: len(phrase.split())])
        ratio = difflib.SequenceMatcher(None, guess, phrase).ratio()
        if ratio > best_ratio:
            best, best_ratio = phrase, ratio
    return f" (did you mean '{best}'?)" if best else ""


def _unknown_form(text: str) -> str:
    return f"cannot parse '{text}'; {_ACCEPTED}"
