"""The audit ``vitaudit init`` writes: expectations chosen from what the probe run measured, commented.

Three kinds of line, each decided here from measured values so that the file passes on the run that
wrote it:

- regression tests: ``>= baseline - 1.5 * ci`` (accuracy, mass in each region, agreement, sanity); the
  values and intervals are in ``values.json``; pointing-game shares as a number just below the
  measured share, by 1.5 interval half-widths (``for 83% of images``);
- statements against chance, ``with 95% confidence``: mass in the object above the object's share of
  the image (what a uniform map would give), the pointing game hitting more often than a random
  point would, accuracy above a random guess;
- findings, as comments and ``xfail``-marked expectations: maps no better than uniform (overall,
  or for some classes), border regions drawing more than twice their area with 95% confidence
  (likely shortcuts: watermarks, frames), a map that barely changes when the model's last layer is
  re-initialised (Adebayo et al. 2018).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from vitaudit.verdict_text import fmt

from .measure import Measured
from .plan import DATA, MARGIN, SANITY, Plan
from .source import BORDERS

#: A border region is a finding when its mass is above this many times its area, with 95% confidence.
SHORTCUT_FACTOR = 2.0
#: The Adebayo check: after re-initialising the last layer, the map's similarity must be below this.
SANITY_MAX = 0.5


@dataclass
class Line:
    """One expectation of the drafted file, with the comment above it and its xfail mark."""

    subject: str
    sentence: str
    comment: list[str] = field(default_factory=list)
    xfail: tuple[str, bool] | None = None  # (reason, strict)


@dataclass
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _up(x: float) -> float:
    """Round up to 2 decimals (a chance level written as a threshold)."""
    return math.ceil(x * 100 - 1e-9) / 100


def _half(row: dict[str, Any] | None) -> float:
    if not row or row.get("ci_low") is None or row.get("ci_high") is None:
        return 0.0
    return (float(row["ci_high"]) - float(row["ci_low"])) / 2


def _ci(row: dict[str, Any] | None) -> str:
    if not row or row.get("value") is None:
        return "no value"
    text = fmt(float(row["value"]))
    if row.get("ci_low") is not None:
        text += f" [{fmt(float(row['ci_low']))}, {fmt(float(row['ci_high']))}]"
    return text + f" over {row.get('n_images')} images"


def _low(row: dict[str, Any] | None) -> float | None:
    return None if not row or row.get("ci_low") is None else float(row["ci_low"])


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%" if x >= 0.1 else f"{x * 100:.1f}%"


def draft(plan: Plan, m: Measured) -> list[Section]:
    """The drafted expectations, by section."""
    sections = [_prediction(plan, m)] if plan.accuracy else []
    for model, ref in plan.maps:
        sections.append(_localisation(plan, m, ref))
    if len(plan.models) > 1:
        sec = Section("agreement between the models' maps")
        for s in plan.kept:
            if s.startswith("mean agreement("):
                sec.lines.append(Line(DATA, s, [f"measured {_ci(m.row(f'{DATA}: {s}'))} (Pearson)"]))
        sections.append(sec)
    if plan.sanity:
        sections.append(_sanity(plan, m))
    sections.append(_shortcuts(plan, m))
    return [s for s in sections if s.lines or s.notes]


def _prediction(plan: Plan, m: Measured) -> Section:
    sec = Section("prediction")
    k = len(m.classes)
    chance = _up(1.0 / k) if k else 0.0
    for model in plan.models:
        text = f"{model.key} accuracy >= baseline - {MARGIN} * ci"
        row = m.row(f"{DATA}: {text}")
        sec.lines.append(Line(DATA, text, [f"{model.key} ({model.name}): accuracy {_ci(row)}"]))
        per = m.classes_of(f"{DATA}: {text} per class")
        if per:
            worst = min(per.items(), key=lambda kv: float(kv[1].get("value") or 0))
            sec.lines.append(Line(DATA, f"{text} per class",
                                  [f"per class: lowest {worst[0]} {_ci(worst[1])}"]))
        conf = f"{model.key} accuracy > {chance:g} with 95% confidence"
        line = Line(DATA, conf, [f"better than a random guess among {k} classes ({chance:g})"])
        if _low(row) is None or not _low(row) > chance:  # type: ignore[operator]
            line.xfail = (f"accuracy {_ci(row)} is not above chance ({chance:g}) with 95% confidence", True)
        sec.lines.append(line)
    return sec


def _localisation(plan: Plan, m: Measured, ref: str) -> Section:
    sec = Section(f"localisation: {ref}")
    for r in plan.regions:
        area = m.area.get(r)
        if area is None:
            continue
        t = _up(area)
        text = f"mean {ref} mass in {r} >= baseline - {MARGIN} * ci"
        row = m.row(f"{DATA}: {text}")
        sec.lines.append(Line(DATA, text, [f"mean mass in {r} {_ci(row)}; {r} covers {_pct(area)} of an image "
                                           "on average (a uniform map's mass)"]))
        per = m.classes_of(f"{DATA}: {text} per class")
        if per:
            sec.lines.append(Line(DATA, f"{text} per class"))
        conf = Line(DATA, f"mean {ref} mass in {r} > {t:g} with 95% confidence",
                    ["better than a uniform map, with 95% confidence"])
        if not (_low(row) is not None and _low(row) > t):  # type: ignore[operator]
            conf.xfail = (f"mean mass in {r} {_ci(row)} is no better than a uniform map ({t:g})", True)
            sec.notes.append(f"FINDING: {ref} puts no more of its mass in {r} than a uniform map would "
                             f"({_ci(row)} against {_pct(area)} of the image)")
        sec.lines.append(conf)
        if per:
            weak = {c: x for c, x in per.items() if not (_low(x) is not None and _low(x) > t)}  # type: ignore[operator]
            line = Line(DATA, f"mean {ref} mass in {r} > {t:g} with 95% confidence per class")
            for c, x in weak.items():
                own = m.area_by_class.get(r, {}).get(c, area)
                sec.notes.append(f"FINDING: class {c}: {ref} mass in {r} {_ci(x)}, not above a uniform map's "
                                 f"{t:g} with 95% confidence ({r} covers {_pct(own)} of its images)")
            if weak:
                line.xfail = (f"no better than a uniform map for {', '.join(weak)}", False)
            sec.lines.append(line)
        _pointing(sec, m, ref, r, area)
    return sec


def _pointing(sec: Section, m: Measured, ref: str, r: str, area: float) -> None:
    probe = f"{ref} pointing game hits {r} for 1% of images"
    row = m.row(f"{DATA}: {probe}")
    if not row or row.get("value") is None:
        return
    share = math.floor((float(row["value"]) - MARGIN * _half(row)) * 100 - 1e-6)
    if share > 0:
        sec.lines.append(Line(DATA, f"{ref} pointing game hits {r} for {share}% of images",
                              [f"the map's peak is in {r} on {_pct(float(row['value']))} of the images "
                               f"(interval {_pct(float(row['ci_low']))} to {_pct(float(row['ci_high']))})"]))
    per = m.classes_of(f"{DATA}: {probe} per class")
    if per:
        low = min(math.floor((float(x["value"]) - MARGIN * _half(x)) * 100 - 1e-6)
                  for x in per.values() if x.get("value") is not None)
        if low > 0:
            sec.lines.append(Line(DATA, f"{ref} pointing game hits {r} for {low}% of images per class"))
    t = _up(area)
    line = Line(DATA, f"{ref} pointing game hits {r} for {t * 100:g}% of images with 95% confidence",
                ["more often than a random point would"])
    if not (_low(row) is not None and _low(row) >= t):  # type: ignore[operator]
        line.xfail = (f"the peak hits {r} on {_pct(float(row['value']))} of the images: not more than chance "
                      f"({_pct(t)}) with 95% confidence", True)
    sec.lines.append(line)


def _sanity(plan: Plan, m: Measured) -> Section:
    sec = Section(f"sanity (Adebayo et al. 2018), on a small sample ({SANITY})")
    for s in plan.sanity:
        row = m.row(f"{SANITY}: {s}")
        ref = s.split()[1]
        sec.lines.append(Line(SANITY, s, [f"similarity of {ref} to itself after re-initialising the last layer: "
                                          f"{_ci(row)}"]))
        if not row or row.get("value") is None:
            continue
        v, half = float(row["value"]), _half(row)
        check = Line(SANITY, f"mean {ref} sanity similarity < {SANITY_MAX:g}")
        if v + half < SANITY_MAX:
            sec.lines.append(check)
        elif v - half > SANITY_MAX:
            check.xfail = (f"the map barely changes when the model's last layer is re-initialised ({fmt(v)})", True)
            sec.notes.append(f"FINDING: {ref} stays at similarity {fmt(v)} after re-initialising the last layer: "
                             "it may not depend on what the classifier learnt")
            sec.lines.append(check)
        else:
            sec.notes.append(f"{ref}: similarity {_ci(row)} is too close to {SANITY_MAX:g} to state either way")
    return sec


def _shortcuts(plan: Plan, m: Measured) -> Section:
    sec = Section("shortcuts: border regions that draw more than their area")
    for _, ref in plan.maps:
        flagged: dict[str, float] = {}
        for name, _box in BORDERS:
            row = m.row(f"{DATA}: mean {ref} mass in {name} < 1")
            area = m.area.get(name)
            if row is None or area is None or row.get("value") is None:
                continue
            t = _up(SHORTCUT_FACTOR * area)
            low = _low(row)
            if low is None or low <= t:
                continue
            if name.startswith("band_"):  # a band flagged only through a flagged corner in it is no news
                corners = [c for c in flagged if _in_band(c, name)]
                rest = float(row["value"]) - sum(flagged[c] for c in corners)
                rest_area = area - sum(m.area.get(c, 0.0) for c in corners)
                if corners and rest <= SHORTCUT_FACTOR * rest_area:
                    continue
            flagged[name] = float(row["value"])
            sec.notes.append(f"FINDING: {ref} puts {_ci(row)} of its mass in {name}, which covers {_pct(area)} "
                             "of the image: a likely shortcut (a watermark, a frame, a border artefact)")
            sec.lines.append(Line(DATA, f"mean {ref} mass in {name} < {t:g} with 95% confidence",
                                  [f"at most {SHORTCUT_FACTOR:g}x its area"],
                                  (f"{ref} draws {fmt(float(row['value']))} of its mass to {name} "
                                   f"({_pct(area)} of the image): a likely shortcut", True)))
    if not sec.lines:
        sec.notes.append(f"no corner or border band draws more than {SHORTCUT_FACTOR:g}x its area with 95% "
                         "confidence for any map")
    return sec


def _in_band(corner: str, band: str) -> bool:
    side = band.split("_", 1)[1]
    return side in corner.split("_")[1:]


# ---------------------------------------------------------------- the text

def render(header: list[str], models: dict[str, dict[str, Any]], datasets: dict[str, dict[str, Any]],
           sections: list[Section]) -> str:
    """The audit file's text: header comment, models, datasets, then each section's findings and lines."""
    out = [f"# {h}" if h else "#" for h in header]
    out.append("models:")
    for key, decl in models.items():
        out.append(f"  {key}: {_flow(decl)}")
    out.append("datasets:")
    for key, decl in datasets.items():
        out.append(f"  {key}:")
        for k, v in decl.items():
            if k == "regions":
                out.append("    regions:")
                for name, region in v.items():
                    out.append(f"      {name}: {_flow(region)}")
            else:
                out.append(f"    {k}: {_flow(v)}")
    out.append("expect:")
    for sec in sections:
        out.append(f"  # ---- {sec.title}")
        for note in sec.notes:
            out.append(f"  # {note}")
        for line in sec.lines:
            for c in line.comment:
                out.append(f"  # {c}")
            out.append(f"  - {line.subject}: {line.sentence}")
            if line.xfail is not None:
                reason, strict = line.xfail
                out.append(f"    xfail: {{reason: {json.dumps(reason)}, strict: {'true' if strict else 'false'}}}")
    return "\n".join(out) + "\n"


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[: -len("...")].strip() if text.endswith("\n...") else text  # a lone scalar's document end
