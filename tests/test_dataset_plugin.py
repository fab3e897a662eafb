"""Dataset audits end to end through pytester: verdicts that follow values computed here, per-class
items, unreadable images, images without the region, one pass per (file, dataset), xdist groups."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vitaudit
from vitaudit.images import load_image

def _warm_up_imports() -> None:
    """pytester's in-process runs drop modules first imported inside them, and torch registers
    operator libraries once per process: import what the audits use before any run."""
    import vitaudit.plugin.dataset_items  # noqa: F401
    import vitaudit.plugin.dataset_results  # noqa: F401
    import vitaudit.report  # noqa: F401

    m = vitaudit.load_model("fixture:resnet-scenes")
    vitaudit.explain(m, np.zeros((8, 8, 3), np.uint8), "gradcam")


_warm_up_imports()

SCENES = Path(__file__).resolve().parent.parent / "audits" / "datasets" / "scenes"
CLASSES = ("checkered", "confetti", "dotted", "rainbow", "striped")
LABEL_ORDER = ("striped", "checkered", "dotted", "confetti", "rainbow")  # fixtures/scenes.CLASSES
# Two scenes per class: scene i has class LABEL_ORDER[i % 5] in the committed set.
PICKED = {c: [f"{k * 5 + LABEL_ORDER.index(c):05d}" for k in (0, 1)] for c in CLASSES}
MODELS = """
models:
  vit: {name: "fixture:vit-scenes"}
  cnn: {name: "fixture:resnet-scenes"}
"""


@pytest.fixture(scope="module")
def reference() -> dict:
    """Per image, computed here with the single-image API and numpy: attention mass in the
    object, the Grad-CAM peak's hit, the ViT's top-1."""
    vit = vitaudit.load_model("fixture:vit-scenes")
    cnn = vitaudit.load_model("fixture:resnet-scenes")
    out = {}
    for c, stems in PICKED.items():
        for stem in stems:
            path = SCENES / "clean" / c / f"{stem}.png"
            mask = np.asarray(Image.open(SCENES / "masks" / f"{stem}.png")) > 0
            hm = vitaudit.explain(vit, load_image(path), "attention").heatmap.astype(np.float64)
            g = vitaudit.explain(cnn, load_image(path), "gradcam").heatmap
            peak = np.unravel_index(np.nanargmax(g), g.shape)
            probs = vitaudit.explain(vit, load_image(path), "attention").probs
            out[f"data/{c}/{stem}.png"] = {
                "label": c,
                "mass": float(np.nansum(hm * mask) / np.nansum(hm)),
                "hit": bool(mask[peak]),
                "correct": vit.labels[int(np.argmax(probs))] == c,
            }
    return out


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    for c, stems in PICKED.items():
        for stem in stems:
            (pytester.path / "data" / c).mkdir(parents=True, exist_ok=True)
            (pytester.path / "masks").mkdir(exist_ok=True)
            shutil.copy(SCENES / "clean" / c / f"{stem}.png", pytester.path / "data" / c / f"{stem}.png")
            shutil.copy(SCENES / "masks" / f"{stem}.png", pytester.path / "masks" / f"{stem}.png")
    return pytester


def write(pytester: pytest.Pytester, expect: str, datasets: str | None = None, name: str = "audit_d.yaml") -> None:
    datasets = datasets or """
        scenes:
          folder: data
          labels: folders
          regions:
            object: {mask: "masks/{stem}.png"}
    """
    body = (MODELS + "datasets:\n" + textwrap.indent(textwrap.dedent(datasets).strip("\n"), "  ") + "\n"
            + "expect:\n" + textwrap.indent(textwrap.dedent(expect).strip("\n"), "  ") + "\n")
    (pytester.path / name).write_text(body)


def rows(pytester: pytest.Pytester) -> list[dict]:
    doc = json.loads((pytester.path / "reports" / "audit.json").read_text())
    return doc["expectations"]


def results(pytester: pytest.Pytester) -> list[dict]:
    """Each expectation's row of ``audit.json`` with its full result (``aggregate_view``) beside it."""
    doc = json.loads((pytester.path / "reports" / "audit.json").read_text())
    return [{**full, **{k: v for k, v in row.items() if v is not None}}
            for full, row in zip(doc["run"]["results"], doc["expectations"])]


def test_verdicts_follow_values_computed_here(project: pytest.Pytester, reference: dict) -> None:
    masses = np.array([r["mass"] for r in reference.values()])
    mean, p25 = masses.mean(), np.percentile(masses, 25)
    t = float(np.median(masses))  # half the images above it, half at or below
    above = float((masses > t).mean())
    hits = float(np.mean([r["hit"] for r in reference.values()]))
    acc = float(np.mean([r["correct"] for r in reference.values()]))
    write(project, f"""
        - scenes: mean vit.attention mass in object > {mean - 0.01:.4f}
        - scenes: mean vit.attention mass in object > {mean + 0.01:.4f}
        - scenes: p25 vit.attention mass in object < {p25 + 0.01:.4f}
        - scenes: p25 vit.attention mass in object < {p25 - 0.01:.4f}
        - scenes: vit.attention mass in object > {t:.6f} for {above * 100 - 1:g}% of images
        - scenes: vit.attention mass in object > {t:.6f} for {above * 100 + 1:g}% of images
        - scenes: cnn.gradcam pointing game hits object for {hits * 100:g}% of images
        - scenes: cnn.gradcam pointing game hits object for {hits * 100 + 5:g}% of images
        - scenes: vit accuracy >= {acc:.4f}
        - scenes: vit accuracy > {acc:.4f}
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-q")
    outcomes = [r["outcome"] for r in rows(project)]
    assert outcomes == ["passed", "failed"] * 4 + ["passed", "failed"], result.stdout.str()
    by_text = {r["text"]: r for r in results(project)}
    first = by_text[next(iter(by_text))]
    assert first["dataset"] == "scenes" and first["aggregate"] == "mean" and first["n_images"] == 10
    assert first["value"] == pytest.approx(mean, abs=1e-5)
    per_image = {p["image"]: p["value"] for p in first["per_image"]}
    assert set(per_image) == set(reference)
    for image, ref in reference.items():
        assert per_image[image] == pytest.approx(ref["mass"], abs=1e-5), image
    share = [r for r in results(project) if r["aggregate"] == "share"][0]
    assert share["value"] == pytest.approx(above) and share["threshold"] == pytest.approx(above - 0.01)
    assert [p["passed"] for p in share["per_image"]] == [reference[p["image"]]["mass"] > t for p in share["per_image"]]
    # every aggregate card on a labelled dataset has its per-class table, with a verdict per class
    accuracy = next(r for r in results(project) if r["text"] == f"scenes: vit accuracy > {acc:.4f}")
    table = {c["group"]: c for c in accuracy["aggregate_view"]["per_class"]}
    assert sorted(table) == sorted(CLASSES)
    for c in CLASSES:
        correct = [r["correct"] for r in reference.values() if r["label"] == c]
        assert table[c]["value"] == pytest.approx(np.mean(correct))
        assert table[c]["passed"] == (np.mean(correct) > round(acc, 4))


def test_failure_sentence_names_aggregate_threshold_n_and_worst_images(project: pytest.Pytester,
                                                                       reference: dict) -> None:
    write(project, "- scenes: mean vit.attention mass in object > 0.99")
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report")
    result.assert_outcomes(failed=1)
    mean = np.mean([r["mass"] for r in reference.values()])
    # the interval as scipy makes it from the reference values (BCa, 1,999 resamples, seed 0)
    from scipy.stats import bootstrap

    ci = bootstrap((np.array([r["mass"] for r in reference.values()]),), np.mean, n_resamples=1999,
                   method="BCa", vectorized=True, rng=np.random.default_rng(0)).confidence_interval
    worst = sorted(reference, key=lambda k: reference[k]["mass"])[:5]
    line = next(x for x in result.stdout.lines if x.startswith("audit_d.yaml:"))
    at = (project.path / "audit_d.yaml").read_text().splitlines().index("  - scenes: mean vit.attention mass in object > 0.99") + 1
    assert line.startswith(f"audit_d.yaml:{at}: 'scenes: mean vit.attention mass in object > 0.99' failed: "
                           f"mean = {mean:.3g} [{ci.low:.3g}, {ci.high:.3g}] over 10 images (expected > 0.99); "
                           f"worst: {worst[0]} ")
    assert [w for w in worst if w in line] == worst
    assert "[dataset 'scenes', model vit = fixture:vit-scenes]" in line


def test_one_item_per_class_with_its_own_verdict(project: pytest.Pytester, reference: dict) -> None:
    write(project, "- scenes: vit.attention mass in object > 0.5 for 100% of images per class")
    result = project.runpytest("-p", "no:cacheprovider", "-v", "--audit-no-report")
    for c in CLASSES:
        ok = all(r["mass"] > 0.5 for r in reference.values() if r["label"] == c)
        result.stdout.fnmatch_lines([f"*vit.attention-mass_in?object,100%,class={c}? {'PASSED' if ok else 'FAILED'}*"])
    assert result.ret in (0, 1)
    assert len([x for x in result.stdout.lines if x.startswith("audit_d.yaml::") and "class=" in x]) == 5


def test_unreadable_images_fail_the_expectations_unless_skipped(project: pytest.Pytester) -> None:
    (project.path / "data" / "striped" / "broken.png").write_bytes(b"not a png")
    shutil.copy(project.path / "masks" / "00004.png", project.path / "masks" / "broken.png")
    write(project, "- scenes: mean vit.attention mass in object > 0.0")
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 image of dataset 'scenes' could not be read: data/striped/broken.png (*"
                                 "(or add on_error: skip to the dataset to count them out)*"])
    write(project, "- scenes: mean vit.attention mass in object > 0.0", datasets="""
        scenes:
          folder: data
          labels: folders
          on_error: skip
          regions:
            object: {mask: "masks/{stem}.png"}
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)
    (r,) = results(project)
    assert r["n_images"] == 10
    assert r["aggregate_view"]["n_not_counted"] == 1
    assert r["aggregate_view"]["not_counted"][0].startswith("data/striped/broken.png: ")
    skipped = "1 unreadable image skipped (on_error: skip): data/striped/broken.png"
    assert r["message"].endswith(skipped)  # the audit.json row says so
    write(project, "- scenes: mean vit.attention mass in object > 0.99", datasets="""
        scenes:
          folder: data
          labels: folders
          on_error: skip
          regions:
            object: {mask: "masks/{stem}.png"}
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*failed: mean = * over 10 images (expected > 0.99)*; {skipped} [dataset 'scenes'*"])


def test_a_region_counts_only_the_images_that_have_it(project: pytest.Pytester, reference: dict) -> None:
    lines = ["path,label,object"]
    with_box = sorted(reference)[:4]
    for image in sorted(reference):
        lines.append(f"{image},{reference[image]['label']},{'0 0 32 32' if image in with_box else ''}")
    (project.path / "list.csv").write_text("\n".join(lines) + "\n")
    write(project, "- listed: mean vit.attention mass in object > 0.99", datasets="listed: {csv: list.csv}")
    result = project.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*over 4 of 10 images (those with 'object')*"])
    (r,) = results(project)
    assert r["n_images"] == 4 and sorted(p["image"] for p in r["per_image"]) == with_box
    assert r["aggregate_view"]["n_without_region"] == 6


COUNTER = """
import json, os
import vitaudit.engine as engine

_forward = engine.forward
seen = []

def counting(model, x, needs):
    seen.append([model.name, int(x.shape[0])])
    return _forward(model, x, needs)

engine.forward = counting

def pytest_sessionfinish(session):
    name = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(f"forwards-{name}.json", "w") as f:
        json.dump(seen, f)
"""


def forwards(pytester: pytest.Pytester) -> dict[str, int]:
    total: dict[str, int] = {}
    for f in pytester.path.glob("forwards-*.json"):
        for name, n in json.loads(f.read_text()):
            total[name] = total.get(name, 0) + n
    return total


def test_one_pass_per_dataset_serves_every_expectation(project: pytest.Pytester) -> None:
    project.makeconftest(COUNTER)
    write(project, """
        - scenes: vit accuracy > 0.5
        - scenes: mean vit.attention mass in object > 0.1
        - scenes: vit.rollout mass in object > 0.1 for 50% of images
        - scenes: agreement(vit.rollout, cnn.gradcam) > -1 for 50% of images per class
        - scenes: cnn.gradcam pointing game hits object for 10% of images
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report")
    result.assert_outcomes(passed=9)
    assert forwards(project) == {"fixture:vit-scenes": 10, "fixture:resnet-scenes": 10}


def test_report_pictures_explain_each_image_once_and_predictions_need_no_forward(project: pytest.Pytester) -> None:
    """The report's worst/best pictures are recomputed after the pass (only per-image values are
    kept), through the session's cache: a prediction's pictures are the images themselves, and an
    image pictured by several items (one per class, or two expectations on the same map) is
    explained once."""
    project.makeconftest(COUNTER)
    write(project, """
        - scenes: vit accuracy > 0.5
        - scenes: mean vit.attention mass in object > 0.1
        - scenes: vit.attention mass in object > 0.1 for 50% of images per class
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=7)
    doc = json.loads((project.path / "reports" / "audit.json").read_text())
    shown = {r["text"]: [e["image"] for e in r["aggregate_view"]["examples"]] for r in doc["run"]["results"]}
    on_maps = {image for text, images in shown.items() if "attention" in text for image in images}
    by_item = sum(len(images) for text, images in shown.items() if "attention" in text)
    assert len(on_maps) >= 9 and by_item > len(on_maps)  # images pictured by several items
    assert any(shown[text] for text in shown if "accuracy" in text)
    # the pass (10 images), then each image pictured on a map once: not once per item that shows
    # it, and none for the accuracy item's pictures
    assert forwards(project) == {"fixture:vit-scenes": 10 + len(on_maps)}


def test_xdist_keeps_a_dataset_on_one_worker(project: pytest.Pytester) -> None:
    project.makeconftest(COUNTER)
    write(project, """
        - scenes: vit accuracy > 0.5
        - scenes: mean vit.attention mass in object > 0.1
        - scenes: vit.attention mass in object > 0.1 for 50% of images per class
    """)
    write(project, "- scenes: mean cnn.gradcam mass in object > 0.1", name="audit_e.yaml")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-n", "2", "--dist", "loadgroup",
                                          "--audit-no-report")
    result.assert_outcomes(passed=8)
    # each (file, dataset) pass ran once, on one worker: 10 images per model and file
    assert forwards(project) == {"fixture:vit-scenes": 10, "fixture:resnet-scenes": 10}
    result.stdout.fnmatch_lines(["*PASSED audit_d.yaml::scenes::vit-accuracy@audit_d.yaml:scenes*"])
    items = project.getitems(project.path / "audit_d.yaml")
    groups = {m.args[0] for item in items for m in item.iter_markers("xdist_group")}
    assert groups == {"audit_d.yaml:scenes"}


def test_every_kind_measures_each_dataset_image_as_its_single_image_twin(project: pytest.Pytester) -> None:
    """Prediction, localisation, comparison, baseline, faithfulness and sanity: the value a dataset
    expectation records for an image is the value the same expectation gives on that image declared
    alone (the image path of the audit format, with its own cache and prefetching)."""
    picked = ["data/striped/00000.png", "data/checkered/00001.png", "data/dotted/00002.png"]
    images = "".join(f"  i{k}: {{path: {p}, regions: {{object: {{mask: masks/{Path(p).stem}.png}}}}}}\n"
                     for k, p in enumerate(picked))
    sentences = [
        "vit prob(striped) > -1",
        "vit.attention mass in object > -1",
        "cnn.gradcam energy pointing game in object > -1",
        "vit.rollout iou(top 20%, object) > -1",
        "cnn.gradcam rank accuracy in object > -1",
        "agreement(vit.rollout, cnn.gradcam) > -2",
        "cnn.gradcam deletion auc < 2 steps 4",
        "vit.attention insertion auc < 2 steps 4",
        "cnn.gradcam sanity similarity < 2",
        "vit.attention baseline similarity > -2",
    ]
    expect = "".join(f'  - "*": {s}\n  - few: mean {s}\n' for s in sentences)
    text = (MODELS + "images:\n" + images + "datasets:\n  few:\n    csv: few.csv\n"
            + "    regions:\n      object: {mask: \"masks/{stem}.png\"}\n" + "expect:\n" + expect)
    (project.path / "few.csv").write_text("path\n" + "\n".join(picked) + "\n")
    (project.path / "audit_d.yaml").write_text(text)
    # in subprocesses: the sanity check's model copy imports torch modules that register operator
    # libraries, which pytester's in-process runs would import twice
    project.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--audit-update-baselines").assert_outcomes(passed=40)
    assert len(list((project.path / "baselines" / "audit_d").rglob("*.npy"))) == 6
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=40)
    rows = results(project)
    single = {(r["text"].split(": ", 1)[1], f"data/{Path(picked[int(r['image'][1])]).parent.name}/"
               f"{Path(picked[int(r['image'][1])]).name}"): r["value"] for r in rows if r.get("dataset") is None}
    checked = 0
    for r in rows:
        if r.get("dataset") != "few":
            continue
        sentence = r["text"].split(": mean ", 1)[1]
        assert [p["image"] for p in r["per_image"]] == picked
        for p in r["per_image"]:
            assert p["value"] == pytest.approx(single[(sentence, p["image"])], abs=1e-5), (sentence, p["image"])
            checked += 1
    assert checked == len(sentences) * 3


def test_deselected_expectations_cost_nothing(project: pytest.Pytester) -> None:
    project.makeconftest(COUNTER)
    write(project, """
        - scenes: vit accuracy > 0.5
        - scenes: mean cnn.gradcam mass in object > 0.1
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report", "-k", "accuracy")
    result.assert_outcomes(passed=1, deselected=1)
    assert forwards(project) == {"fixture:vit-scenes": 10}


def test_aggregates_against_recorded_values(project: pytest.Pytester, reference: dict) -> None:
    """`mean ... >= baseline - x` records the aggregate (and its per-image values) once, then holds
    later runs to it, per class too; the failure gives value, baseline and difference."""
    write(project, """
        - scenes: mean vit.attention mass in object >= baseline - 0.01
        - scenes: vit accuracy >= baseline
        - scenes: median vit.attention mass in object > baseline * 0.5 per class
    """)
    first = project.runpytest("-p", "no:cacheprovider", "-q")
    first.assert_outcomes(failed=7)
    # not recorded yet: the failure says where, and the row keeps the images that were measured
    line = next(i for i, x in enumerate((project.path / "audit_d.yaml").read_text().splitlines(), 1) if "mean vit" in x)
    assert (f"\naudit_d.yaml:{line}: no recorded value for 'scenes: mean vit.attention mass in object >= baseline - "
            "0.01' (scenes::vit.attention-mass_in[object,mean]) in ") in first.stdout.str()
    (missing,) = [r for r in results(project) if r["aggregate"] == "mean"]
    assert missing["outcome"] == "failed" and len(missing["per_image"]) == 10 and missing["value"] is not None
    project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report",
                      "--audit-update-baselines").assert_outcomes(passed=7)
    stored = json.loads((project.path / "baselines" / "audit_d" / "values.json").read_text())["values"]
    mean = float(np.mean([r["mass"] for r in reference.values()]))
    entry = stored["scenes::vit.attention-mass_in[object,mean]"]
    assert entry["value"] == pytest.approx(mean, abs=1e-5)
    assert entry["per_image"] == pytest.approx({k: r["mass"] for k, r in reference.items()}, abs=1e-5)
    assert sorted(k for k in stored if "per_class" in k) == [
        f"scenes::vit.attention-mass_in[object,median,per_class][{c}]" for c in CLASSES]
    project.runpytest("-p", "no:cacheprovider", "-q").assert_outcomes(passed=7)
    # per class, each class is held to its own recorded value: every row of the table has a verdict;
    # the dataset-wide relative ones have one recorded value, which says nothing of a class
    for r in results(project):
        verdicts = [c["passed"] for c in r["aggregate_view"]["per_class"]]
        assert len(verdicts) == 5 and (all(v is True for v in verdicts) if r["group"] else all(v is None for v in verdicts))
    (row,) = [r for r in results(project) if r["aggregate"] == "mean"]
    assert row["baseline"] == pytest.approx(mean, abs=1e-5) and row["threshold"] == pytest.approx(mean - 0.01, abs=1e-5)
    # a retrained model that looks elsewhere: the recorded mean is now well above what it gives
    entry["value"] = mean + 0.2
    (project.path / "baselines" / "audit_d" / "values.json").write_text(json.dumps({**json.loads(
        (project.path / "baselines" / "audit_d" / "values.json").read_text()), "values": stored}))
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines([f"*failed: mean = {mean:.3g} ?*? over 10 images (expected >= {mean + 0.19:.3g}, "
                                 f"baseline - 0.01 with baseline {mean + 0.2:.3g}); difference from the baseline: "
                                 f"{-0.2:+.3g}*"])


def test_a_problem_in_a_dataset_expectation_names_the_dataset(project: pytest.Pytester) -> None:
    """A spec error that costs a dataset expectation is about the dataset, not an image: its
    audit.json row and the report's "Needs attention" list say so."""
    write(project, "- scenes: mean vit.attention mass in obejct > 0.5")
    project.runpytest("-p", "no:cacheprovider", "-q").assert_outcomes(failed=1)
    (row,) = rows(project)
    assert row["kind"] == "error" and row["dataset"] == "scenes" and row["image"] is None
    html = (project.path / "reports" / "audit.html").read_text()
    attention = html[html.index("Needs attention"):]
    assert "dataset scenes" in attention and "image scenes" not in html
