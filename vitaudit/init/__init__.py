"""``vitaudit init``: a first audit drafted from one pass of the models over an annotated dataset.

- :mod:`.source`: the command line's models and dataset, as an audit file declares them;
- :mod:`.plan`: the expectations to measure (kept ones and probes);
- :mod:`.measure`: the probe run (the plugin's own dataset pass, in a child pytest) and region areas;
- :mod:`.draft`: the expectations chosen from the measurements, findings, and the file's text;
- :mod:`.images_only`: ``--images DIR`` without annotations (predictions and map baselines).

The drafted file is parsed by the normal loader before it is written back, and its relative
thresholds' values are in ``baselines/<file>/values.json`` (written by the probe run), so it passes
under ``pytest`` on the run that wrote it.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from .common import InitResult, check_out, load_models, parse_text, say_line
from .source import BORDERS, InitError, InitOptions, dataset_decl

__all__ = ["InitError", "InitOptions", "InitResult", "run_init"]


def run_init(opts: InitOptions, say: Callable[[str], None] = say_line) -> InitResult:
    """Draft the audit ``opts.out`` (and its ``values.json``); see the module's docstring."""
    check_out(opts.out)
    if opts.kind is None:
        from .images_only import run_images_only

        return run_images_only(opts, say)
    from .draft import draft, render
    from .measure import Measured, region_areas, run_probe
    from .plan import DATA, SANITY, make_plan

    say(f"vitaudit init: loading {', '.join(opts.models)}")
    models, model_decls = load_models(opts)
    decl = dataset_decl(opts)
    declared = render(["probe: the dataset as declared"], model_decls, {DATA: decl}, [])
    spec = parse_text(opts.out, declared.replace("\nexpect:\n", "\nexpect: []\n"), declarations_only=True)
    dataset = spec.datasets[DATA]
    borders = [name for name, _ in BORDERS]
    regions = [r for r in dataset.region_names if r not in borders]
    classes = tuple(dataset.classes)
    accuracy = bool(classes) and all(set(classes) <= set(m.labels) for m in models)
    sanity_n = min(opts.sanity_images, dataset.size or len(dataset.samples))
    datasets = {DATA: decl}
    if sanity_n >= 1:
        datasets[SANITY] = {k: v for k, v in decl.items() if k not in ("regions", "sample", "seed")}
        datasets[SANITY].update(sample=sanity_n, seed=0)
    plan = make_plan(models, regions, per_class=bool(classes), accuracy=accuracy, sanity=sanity_n >= 1)
    area, area_by_class = region_areas(dataset, regions + borders)
    probe_lines = [f"  - {DATA}: {s}" for s in plan.kept + plan.probes] + [f"  - {SANITY}: {s}" for s in plan.sanity]
    probe = render(["probe run of vitaudit init: replaced by the drafted audit when it ends"], model_decls,
                   datasets, []) + "\n".join(probe_lines) + "\n"
    parse_text(opts.out, probe)
    say(f"vitaudit init: one pass over {len(dataset.samples)} images of {DATA} "
        f"({len(plan.kept) + len(plan.probes)} measurements) and {sanity_n} for the sanity check")
    rows = run_probe(opts.out, say)
    measured = Measured(rows=rows, area=area, area_by_class=area_by_class, n_images=len(dataset.samples),
                        classes=classes)
    sections = draft(plan, measured)
    findings = [n[len("FINDING: "):] for s in sections for n in s.notes if n.startswith("FINDING: ")]
    header = _header(opts, models, dataset, regions, accuracy, classes, findings)
    text = render(header, model_decls, datasets, sections)
    parse_text(opts.out, text)
    lines = [ln for s in sections for ln in s.lines]
    from vitaudit.audit.value_baselines import path_for

    values = path_for(opts.out)
    return InitResult(opts.out, len(lines), sum(1 for ln in lines if ln.xfail), findings,
                      values if values.is_file() else None)


def _header(opts: InitOptions, models, dataset, regions, accuracy, classes, findings) -> list[str]:
    from vitaudit.audit.value_baselines import path_for

    values = path_for(opts.out)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        f"Drafted by `vitaudit init` on {now} from one pass over {len(dataset.samples)} images",
        f"({dataset.kind}: {opts.source}) with {', '.join(f'{m.key} = {m.name}' for m in models)}.",
        "It is a draft: read every expectation, keep what you mean, delete the rest.",
        "",
        f"- `>= baseline - 1.5 * ci`: against the values recorded by that pass in {values.parent.name}/{values.name}",
        "  (beside this file, under baselines/); `ci` is the recorded 95% interval's half-width, and 1.5 of",
        "  them allow for the noise of both samples (a rerun on another sample of this size passes about",
        "  98% of the time), so the file passes on the run that wrote it and fails on a larger change.",
        "  Record again after a deliberate change:",
        f"  pytest {opts.out.name} --audit-update-baselines",
        "- `with 95% confidence`: against chance (a uniform map, a random point, a random guess); passes",
        "  only when the whole interval clears it.",
        "- xfail: findings, expectations that fail today (see the FINDING comments).",
    ]
    if not classes:
        head.append("The images have no classes: no accuracy and no per-class items.")
    elif not accuracy:
        head.append("The dataset's classes are not the models' class names: no accuracy expectations.")
    if not regions:
        head.append("No annotated regions: only the border regions are measured.")
    if findings:
        head += ["", f"Findings ({len(findings)}):"] + [f"- {f}" for f in findings]
    return head
