"""Significance-aware comparison of two runs (vitaudit.significance, ``vitaudit compare --significance``,
``--fail-on significant-worse``): paired tests on the images two runs share, noise told apart from real
shifts, on synthetic audit.json documents written by the real writer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_compare import row, write_run
from vitaudit import cli
from vitaudit.compare import compare_files
from vitaudit.significance import shift


def per_image(values, cut=0.3):
    return [{"image": f"s/{i:03d}.png", "value": float(v), "passed": bool(v > cut)} for i, v in enumerate(values)]


def dataset_row(values, outcome="passed", text="scenes: mean vit.attention mass in object > 0.3", **extra):
    values = list(values)
    return row("scenes::vit.attention-mass_in[object,mean]", outcome, float(np.mean(values)), 20, image=None,
               dataset="scenes", aggregate=extra.pop("aggregate", "mean"), n_images=len(values),
               per_image=per_image(values), threshold=0.3, ci_low=float(np.mean(values)) - 0.02,
               ci_high=float(np.mean(values)) + 0.02, ci_level=0.95, ci_method="bca", **extra)


def test_paired_test_finds_a_small_consistent_drop_and_ignores_noise():
    rng = np.random.default_rng(0)
    base = rng.beta(5, 2, size=150)
    old = per_image(base)
    noisy = per_image(base + 0.01 * rng.standard_normal(150))
    s = shift(old, noisy, aggregate="mean", op=">")
    assert s is not None and not s.significant and s.test == "paired permutation" and s.n == 150
    dropped = per_image(base - 0.02 + 0.01 * rng.standard_normal(150))  # 0.02: inside the CI of either mean
    s = shift(old, dropped, aggregate="mean", op=">")
    assert s.significant and s.worse is True and s.p_value < 0.001
    assert s.difference == pytest.approx(float(np.mean([r["value"] for r in dropped]) - base.mean()))
    assert shift(old, old, aggregate="mean", op=">").p_value == 1.0
    up = shift(old, dropped, aggregate="mean", op="<")
    assert up.worse is False  # lower is better for '<'


def test_share_is_tested_on_pass_or_fail():
    a = [{"image": f"{i}", "value": 0.5, "passed": True} for i in range(100)]
    b = [{"image": f"{i}", "value": 0.5, "passed": i >= 30} for i in range(100)]  # 30 images now fail
    s = shift(a, b, aggregate="share", op=">=")
    assert s.quantity == "pass rate" and s.difference == pytest.approx(-0.3) and s.significant and s.worse


def test_without_shared_images_the_runs_are_compared_as_independent_samples():
    rng = np.random.default_rng(1)
    a = [{"image": f"a{i}", "value": float(v)} for i, v in enumerate(rng.beta(5, 2, size=80))]
    b = [{"image": f"b{i}", "value": float(v)} for i, v in enumerate(rng.beta(5, 2, size=80))]
    s = shift(a, b, aggregate="mean", op=">")
    assert s.test == "independent permutation" and not s.significant
    c = [{"image": f"c{i}", "value": float(v)} for i, v in enumerate(rng.beta(2, 5, size=80))]
    assert shift(a, c, aggregate="mean", op=">").significant


def test_large_pairs_use_the_paired_t_test():
    rng = np.random.default_rng(2)
    base = rng.random(3000)
    s = shift(per_image(base), per_image(base + 0.002 * rng.standard_normal(3000) - 0.001), aggregate="mean", op=">")
    assert s.test == "paired t" and s.significant  # 3,000 pairs see a 0.001 shift


def test_cli_separates_significant_changes_from_noise_and_fails_on_request(tmp_path, capsys):
    rng = np.random.default_rng(3)
    base = rng.beta(5, 2, size=120)
    old = write_run(tmp_path / "old.json", [dataset_row(base)])
    # still passes (> 0.3 by far), but every image lost about 0.03
    worse = write_run(tmp_path / "worse.json", [dataset_row(base - 0.03 + 0.005 * rng.standard_normal(120))])
    same = write_run(tmp_path / "same.json", [dataset_row(base + 0.005 * rng.standard_normal(120))])
    assert cli.main(["compare", old, worse]) == 0  # no expectation newly fails
    out = capsys.readouterr().out
    assert "1 dataset aggregates changed significantly at 0.05 (1 for the worse), 0 within noise" in out
    assert "significant changes (paired test, p < 0.05) (1):" in out
    assert "(-0.0294, worse), p = 0.0002 (paired permutation, 120 shared images)" in out
    assert f"{np.mean(base):.3g} [{np.mean(base) - 0.02:.3g}, {np.mean(base) + 0.02:.3g}] ->" in out  # intervals shown
    assert cli.main(["compare", old, worse, "--fail-on", "significant-worse"]) == 1
    capsys.readouterr()
    assert cli.main(["compare", old, same, "--fail-on", "significant-worse"]) == 0
    out = capsys.readouterr().out
    assert "0 dataset aggregates changed significantly at 0.05 (0 for the worse), 1 within noise" in out
    assert "within noise (not significant) (1):" in out
    assert cli.main(["compare", old, worse, "--format", "markdown"]) == 0
    assert "#### Significant changes (paired test, p &lt; 0.05) (1)" in capsys.readouterr().out
    assert cli.main(["compare", old, worse, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["significantly_worse"] == 1 and doc["shifts"][0]["test"] == "paired permutation"
    assert doc["significance"] == 0.05
    cmp = compare_files(old, same, significance=0.5)  # a lax level: noise can come out "significant"
    assert len(cmp.shifts) + len(cmp.noise) == 1


def test_bad_significance_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", "a.json", "b.json", "--significance", "5"])
    assert exc.value.code == 2
    assert "must be in (0, 1)" in capsys.readouterr().err
