"""Item ids: each expectation's readable, stable name within its image.

``<subject>-<metric>[<args>]`` where the subject is the model (predictions) or the map
(``vit.rollout(head_fusion=max)``, ``vit.gradcam@tabby``), the args are the classes or the region,
then every option whose value differs from its default as ``name=value``, then for dataset
expectations the aggregate (``mean``, ``p90``, ``90%``) and ``per_class``. ``agreement`` has no
subject: ``agreement[vit.rollout,resnet.gradcam]``. Duplicates within one image get ``-2``, ``-3``... before
the bracket (``vit.gradcam-mass_in-2[face]``).
"""
from __future__ import annotations

import re
from dataclasses import replace

from .model import METRIC_OPTIONS, Expectation, Label, MapRef, format_value


def base_id(exp: Expectation) -> str:
    """The id of ``exp`` before de-duplication."""
    metric = exp.metric
    args: list[str] = []
    if exp.kind == "prediction":
        subject = exp.model or ""
        args = [_label(lb) for lb in exp.labels]
        if metric == "in_topk":
            metric = f"in_top{exp.k}"
    elif metric == "agreement":
        subject = ""
        args = [_map(m) for m in exp.maps]
    else:
        subject = _map(exp.maps[0]) if exp.maps else ""
        if metric == "pointing_game" and exp.op == "misses":
            metric = "pointing_game_misses"
    if exp.region is not None:
        args.append(exp.region.label)
    defaults = METRIC_OPTIONS.get(exp.metric, {})
    for name, value in exp.options:
        if name in defaults and value != defaults[name]:
            unit = {"within": "px", "top": "%"}.get(name, "")
            args.append(f"{name}={format_value(value)}{unit}")
    if exp.dataset is not None and exp.aggregate not in (None, "accuracy"):
        args.append(f"{exp.share * 100:g}%" if exp.aggregate == "share" else exp.aggregate)
    if exp.group is not None:
        args.append(f"per_{exp.group}")
    head = f"{subject}-{metric}" if subject else metric
    return head + (f"[{','.join(args)}]" if args else "")


def assign_ids(expectations: list[Expectation]) -> list[Expectation]:
    """Give each expectation its id (keeping ids set by the user), unique within each image."""
    used: dict[str, set[str]] = {}
    out = []
    for exp in expectations:
        base = exp.id or base_id(exp)
        taken = used.setdefault(exp.image, set())
        new, n = base, 1
        while new in taken:
            n += 1
            new = numbered(base, n)
        taken.add(new)
        out.append(replace(exp, id=new))
    return out


def numbered(base: str, n: int) -> str:
    """``vit.gradcam-mass_in[face]`` -> ``vit.gradcam-mass_in-2[face]``: the ordinal goes before the
    bracket, which must end the id (pytest reads ``name[params]``; ``...[face]-2`` came back as
    ``...[face]-2]`` in its summaries and JUnit names, an id pytest then could not find)."""
    head, bracket, rest = base.partition("[")
    return f"{head}-{n}{bracket}{rest}"


def _label(label: Label) -> str:
    text = str(label).strip()
    text = re.sub(r"\s*,\s*", "/", text)  # "tabby, tabby cat" -> "tabby/tabby_cat"
    return re.sub(r"\s+", "_", text)


def _map(ref: MapRef) -> str:
    opts = ",".join(f"{k}={format_value(v)}" for k, v in ref.options)
    text = f"{ref.model}.{ref.method}" + (f"({opts})" if opts else "")
    return text + (f"@{_label(ref.target)}" if ref.target is not None else "")
