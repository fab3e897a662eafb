"""The expectations ``vitaudit init`` considers, before anything is measured.

A :class:`Plan` holds, for the models and the dataset, two kinds of expectation sentences:

- *kept*: written into the audit as they are, thresholds against the recorded run
  (``>= baseline - 1.5 * ci``): accuracy, mean mass in each annotated region, agreement between two
  models, the sanity check's similarity. The probe run records their values (and intervals) in
  ``values.json``, so the drafted file passes on the run that wrote it.
- *probes*: measured only, with a threshold that does not matter (``< 1``), to choose the numbers
  of the final sentences (pointing-game shares) and to look for findings (mass on border regions).

Methods per model: ``attention`` and ``rollout`` for ViTs (a global class token), Grad-CAM for all.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .source import BORDERS

#: The margin of a drafted regression test, in recorded interval half-widths: ``>= baseline - 1.5 * ci``.
#: Another sample's mean differs from the recorded one by the noise of both: sqrt(2) times one
#: sample's, so ``baseline - ci`` alone would fail about 8% of independent same-size samples (measured:
#: 92% passing for the worst item in benchmarks/bench_stability.py); 1.5 * 1.96 / sqrt(2) = 2.1
#: standard deviations of the difference, about 2% for an independent sample, less for an overlapping one.
MARGIN = 1.5
#: The dataset's key in the drafted file, and the key of its small sample for the sanity check.
DATA = "data"
SANITY = "data_sanity"


@dataclass(frozen=True)
class ModelInfo:
    """A model of the audit: its key in the file, its spec, its family and class names."""

    key: str
    name: str
    family: str
    labels: tuple[str, ...]

    @property
    def methods(self) -> tuple[str, ...]:
        return ("attention", "rollout", "gradcam") if self.family == "vit" else ("gradcam",)

    @property
    def primary(self) -> str:
        """The map this model is compared and sanity-checked with: its first method."""
        return f"{self.key}.{self.methods[0]}"


@dataclass
class Plan:
    """Sentences to measure, by role (each without its ``<dataset>:`` key)."""

    models: list[ModelInfo]
    regions: list[str]  # annotated regions (not the border regions)
    per_class: bool  # the dataset has classes: one item per class
    accuracy: bool  # ... and they are classes of every model: accuracy applies
    kept: list[str] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)
    sanity: list[str] = field(default_factory=list)  # on the small sample (SANITY)

    @property
    def maps(self) -> list[tuple[ModelInfo, str]]:
        return [(m, f"{m.key}.{method}") for m in self.models for method in m.methods]


def make_plan(models: list[ModelInfo], regions: list[str], per_class: bool, accuracy: bool,
              sanity: bool = True) -> Plan:
    """Every sentence the probe run measures."""
    plan = Plan(models, regions, per_class, accuracy and per_class)
    groups = [""] + ([" per class"] if per_class else [])
    for m in models:
        if plan.accuracy:
            for pc in groups:
                plan.kept.append(f"{m.key} accuracy >= baseline - {MARGIN} * ci{pc}")
    for _, ref in plan.maps:
        for r in regions:
            for pc in groups:
                plan.kept.append(f"mean {ref} mass in {r} >= baseline - {MARGIN} * ci{pc}")
                plan.probes.append(f"{ref} pointing game hits {r} for 1% of images{pc}")
        for name, _ in BORDERS:
            plan.probes.append(f"mean {ref} mass in {name} < 1")
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            plan.kept.append(f"mean agreement({a.primary}, {b.primary}) >= baseline - {MARGIN} * ci")
    if sanity:
        for m in models:
            plan.sanity.append(f"mean {m.primary} sanity similarity <= baseline + {MARGIN} * ci")
    return plan
