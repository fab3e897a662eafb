"""'with 95% confidence', 'baseline - ci' and the within-noise note: in the audit format (sentences and
structured form, errors at their line) and end to end through pytester against intervals computed
here with scipy from values measured with the single-image API."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_dataset_plugin import project, reference, results, write  # noqa: F401 (fixtures)
from tests.test_dataset_spec import FIRST_LINE, one, parse


# ---------------------------------------------------------------- the format
@pytest.mark.parametrize("sentence, structured, expected", [
    ("scenes: mean vit.attention mass in object > 0.5 with 95% confidence",
     "{dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.5, "
     "aggregate: mean, confidence: 0.95}",
     dict(aggregate="mean", confidence=0.95, group=None)),
    ("scenes: vit.attention mass in object > 0.3 for 90% of images with 90% confidence per class",
     "{dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.3, "
     "share: 0.9, confidence: 0.9, group: class}",
     dict(aggregate="share", share=0.9, confidence=0.9, group="class")),
    ("scenes: vit accuracy > 0.9 per class with 99% confidence",
     "{dataset: scenes, metric: accuracy, model: vit, op: '>', value: 0.9, confidence: 0.99, group: class}",
     dict(aggregate="accuracy", confidence=0.99, group="class")),
    ("scenes: mean vit.attention mass in object >= baseline - ci",
     "{dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>=', "
     "value: 'baseline - ci', aggregate: mean}",
     dict(aggregate="mean", confidence=None)),
])
def test_sentence_and_structured_forms_agree(tmp_path, sentence, structured, expected):
    a, b = one(tmp_path, f"- {sentence}"), one(tmp_path, f"- {structured}")
    for key, value in expected.items():
        assert getattr(a, key) == value and getattr(b, key) == value, key
    assert a.relative == b.relative


def test_relative_ci_forms(tmp_path):
    exp = one(tmp_path, "- scenes: mean vit.attention mass in object >= baseline - 2 * ci")
    assert exp.relative.uses_ci and exp.relative.op == "-" and exp.relative.amount == 2
    assert exp.relative.text == "baseline - 2 * ci"
    from dataclasses import replace

    assert replace(exp.relative, ci=0.03).threshold(0.7) == pytest.approx(0.64)
    up = one(tmp_path, "- scenes: mean vit.rollout mass in not object <= baseline + ci").relative
    assert replace(up, ci=0.02).threshold(0.3) == pytest.approx(0.32) and up.text == "baseline + ci"
    plain = one(tmp_path, "- scenes: mean vit.attention mass in object >= baseline - 0.05").relative
    assert not plain.uses_ci and plain.threshold(0.7) == pytest.approx(0.65)


@pytest.mark.parametrize("item, message", [
    ("- scenes: min vit.attention mass in object > 0.1 with 95% confidence",
     "'min' has no confidence interval (an extreme of a sample says little about another); use a percentile, "
     "e.g. 'p5 ... with 95% confidence'"),
    ("- scenes: mean vit.attention mass in object > 0.1 with 100% confidence",
     "the confidence level must be a percentage strictly between 0 and 100, got 100%"),
    ("- scenes: mean vit.attention mass in object > 0.1 with high% confidence",
     "the confidence level must be a number, got 'high'"),
    ("- one: vit.attention mass in obj > 0.3 with 95% confidence",
     "'one' is an image; aggregates ('mean ...', '... for 90% of images', 'per class', accuracy) apply to "
     "datasets declared under datasets:"),
    ("- one: vit.attention mass in obj >= baseline - ci",
     "'baseline - ci': ci is the confidence interval recorded for a dataset aggregate, and 'one' is an image; "
     "write baseline - <number>"),
    ("- scenes: vit accuracy >= baseline * ci",
     "cannot read 'baseline * ci': write baseline - ci or baseline + ci"),
    ("- {dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.5, "
     "aggregate: mean, confidence: 95}",
     "'confidence' is a level in (0, 1), e.g. 0.95, got 95"),
])
def test_errors_at_their_line(tmp_path, item, message):
    spec = parse(tmp_path, item)
    (err,) = spec.errors
    assert err.message == message
    assert err.line == FIRST_LINE


# ---------------------------------------------------------------- end to end
def _bca(values) -> tuple[float, float]:
    from scipy.stats import bootstrap

    ci = bootstrap((np.asarray(values, dtype=np.float64),), np.mean, n_resamples=1999, method="BCa",
                   vectorized=True, rng=np.random.default_rng(0)).confidence_interval
    return float(ci.low), float(ci.high)


def test_confidence_verdicts_follow_the_interval(project, reference):  # noqa: F811
    masses = [r["mass"] for r in reference.values()]
    low, high = _bca(masses)
    mean = float(np.mean(masses))
    inside = (low + mean) / 2  # in the interval, below the mean
    write(project, f"""
        - scenes: mean vit.attention mass in object > {low - 0.002:.6f} with 95% confidence
        - scenes: mean vit.attention mass in object > {low + 0.002:.6f} with 95% confidence
        - scenes: mean vit.attention mass in object < {high + 0.002:.6f} with 95% confidence
        - scenes: mean vit.attention mass in object < {high - 0.002:.6f} with 95% confidence
        - scenes: mean vit.attention mass in object > {inside:.6f}
        - scenes: mean vit.attention mass in object > {low - 0.05:.6f}
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-q")
    rows = results(project)
    assert [r["outcome"] for r in rows] == ["passed", "failed", "passed", "failed", "passed", "passed"], \
        result.stdout.str()
    for r in rows:
        assert r["ci_low"] == pytest.approx(low, abs=1e-6) and r["ci_high"] == pytest.approx(high, abs=1e-6)
        assert r["ci_level"] == 0.95 and r["ci_method"] == "bca"
    assert [r.get("within_noise") for r in rows] == [False] * 4 + [True, False]
    assert [r.get("confidence") for r in rows] == [0.95] * 4 + [None, None]
    result.stdout.fnmatch_lines([f"*the interval's lower end {low:.3g} is not above {low + 0.002:.3g}*",
                                 f"*the interval's upper end {high:.3g} is not below {high - 0.002:.3g}*",
                                 "*1 dataset verdict within noise*",
                                 f"*[[]passed] 'scenes: mean vit.attention mass in object > {inside:.6f}'*"
                                 f"within noise (could flip on another sample)"])
    html = (project.path / "reports" / "audit.html").read_text()
    assert html.count('class="ci-band"') == 6 and "within noise (could flip on another sample)" in html


def test_relative_threshold_from_the_recorded_interval(project, reference):  # noqa: F811
    masses = [r["mass"] for r in reference.values()]
    low, high = _bca(masses)
    mean = float(np.mean(masses))
    write(project, "- scenes: mean vit.attention mass in object >= baseline - ci")
    project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report",
                      "--audit-update-baselines").assert_outcomes(passed=1)
    path = project.path / "baselines" / "audit_d" / "values.json"
    doc = json.loads(path.read_text())
    entry = doc["values"]["scenes::vit.attention-mass_in[object,mean]"]
    assert entry["value"] == pytest.approx(mean, abs=1e-6)
    assert entry["ci"] == pytest.approx((high - low) / 2, abs=1e-6)
    project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report").assert_outcomes(passed=1)
    # a recorded run whose mean was higher by more than its half-width: this one fails
    entry["value"] = mean + entry["ci"] + 0.01
    path.write_text(json.dumps(doc))
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*(expected >= {mean + 0.01:.3g}, baseline - ci with baseline "
                                 f"{entry['value']:.3g} and ci {entry['ci']:.3g})*"])
    del entry["ci"]
    path.write_text(json.dumps(doc))
    result = project.runpytest("-p", "no:cacheprovider", "-q", "--audit-no-report")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no recorded confidence interval for*('baseline - ci' needs one)*"])
