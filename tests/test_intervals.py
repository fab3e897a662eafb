"""Confidence intervals of dataset aggregates (vitaudit.intervals): coverage on synthetic values with
a known answer, the edge cases (one image, constant values, every image passing), reproducibility,
the verdict's use of them, and the cost at 10,000 images."""
from __future__ import annotations

import time

import numpy as np
import pytest

from vitaudit.aggregate import ImageValue, verdict
from vitaudit.intervals import BCA_MAX_N, interval_of, location_interval, proportion_interval


def _coverage(make_interval, truth: float, draw, reps: int) -> float:
    rng = np.random.default_rng(12345)
    hits = 0
    for i in range(reps):
        ci = make_interval(draw(rng), i)
        hits += ci.low <= truth <= ci.high
    return hits / reps


def test_mean_interval_covers_the_true_mean_about_95_percent_of_the_time():
    # Beta(2, 5): skewed like a mass-in-object distribution, mean 2/7. 300 samples of 60 values.
    cov = _coverage(lambda x, i: location_interval("mean", x, seed=i), 2 / 7,
                    lambda rng: rng.beta(2, 5, size=60), 300)
    # binomial sd of the coverage at 300 reps is 0.0126: [0.91, 0.985] is about -3 to +2.8 sd
    assert 0.91 <= cov <= 0.985, cov


def test_mean_interval_above_the_bca_limit_uses_t_and_covers():
    cov = _coverage(lambda x, i: location_interval("mean", x, seed=i), 2 / 7,
                    lambda rng: rng.beta(2, 5, size=BCA_MAX_N + 500), 300)
    assert 0.91 <= cov <= 0.985, cov
    assert location_interval("mean", np.linspace(0, 1, BCA_MAX_N + 1)).method == "t"


def test_median_and_percentile_intervals_cover_the_true_quantile():
    from scipy.stats import beta

    for p, kind in ((0.5, "median"), (0.25, "p25")):
        truth = float(beta(2, 5).ppf(p))
        cov = _coverage(lambda x, i: location_interval(kind, x, seed=i), truth,
                        lambda rng: rng.beta(2, 5, size=80), 300)
        assert 0.91 <= cov <= 0.995, (kind, cov)  # order-statistic intervals are conservative (>= 95%)


def test_share_interval_covers_the_true_proportion():
    cov = _coverage(lambda x, i: proportion_interval(int(x.sum()), x.size), 0.8,
                    lambda rng: rng.random(100) < 0.8, 400)
    assert 0.92 <= cov <= 0.98, cov


def test_edge_cases():
    assert location_interval("mean", [0.4]) is None  # one image: no interval
    assert location_interval("mean", []) is None
    c = location_interval("mean", [0.3] * 20)
    assert (c.low, c.high, c.method) == (0.3, 0.3, "constant")
    assert location_interval("min", [0.1, 0.5, 0.9]) is None
    assert location_interval("max", [0.1, 0.5, 0.9]) is None
    every = proportion_interval(150, 150)  # all pass: not degenerate, below 1 at its low end
    assert every.high == 1.0 and 0.95 < every.low < 1.0
    none = proportion_interval(0, 150)
    assert none.low == 0.0 and 0.0 < none.high < 0.05
    one = proportion_interval(1, 1)
    assert one.low < 0.3 and one.high == 1.0  # one image says little
    p99 = location_interval("p99", np.linspace(0, 1, 30))  # unbounded order statistic: bootstrap instead
    assert p99.method == "percentile" and p99.low <= p99.high
    two = location_interval("mean", [0.0, 1.0, 0.0, 1.0])
    assert two is not None and 0.0 <= two.low <= 0.5 <= two.high <= 1.0


def test_seeded_and_reproducible():
    x = np.random.default_rng(0).beta(2, 5, size=150)
    a, b = location_interval("mean", x), location_interval("mean", x)
    assert (a.low, a.high) == (b.low, b.high)
    assert a.method == "bca" and a.low < float(x.mean()) < a.high
    c = location_interval("mean", x, seed=1)
    assert (c.low, c.high) != (a.low, a.high)  # the seed is used
    assert abs(c.low - a.low) < 0.01  # ... and only moves the ends by Monte Carlo noise


def _values(xs, threshold=None):
    return [ImageValue(i, f"im{i}.png", float(x), None if threshold is None else bool(x > threshold))
            for i, x in enumerate(xs)]


def test_verdict_carries_the_interval_and_uses_it_with_confidence():
    rng = np.random.default_rng(3)
    vals = _values(0.52 + 0.1 * rng.standard_normal(150))
    plain = verdict("mean", vals, ">", 0.51)
    assert plain.interval is not None and plain.interval.low < plain.value < plain.interval.high
    assert plain.interval.level == 0.95
    # the threshold is inside the interval: the plain verdict passes, within noise
    assert plain.interval.low < 0.51 < plain.interval.high
    assert plain.passed and plain.within_noise
    sure = verdict("mean", vals, ">", 0.51, confidence=0.95)
    assert not sure.passed and not sure.within_noise
    low = plain.interval.low
    assert verdict("mean", vals, ">", low - 1e-6, confidence=0.95).passed
    assert not verdict("mean", vals, ">", low + 1e-6, confidence=0.95).passed
    # "<": the upper end must clear it
    high = plain.interval.high
    assert verdict("mean", vals, "<", high + 1e-6, confidence=0.95).passed
    assert not verdict("mean", vals, "<", high - 1e-6, confidence=0.95).passed
    far = verdict("mean", vals, ">", 0.3)
    assert far.passed and not far.within_noise


def test_share_and_accuracy_verdicts_with_confidence():
    vals = _values([0.9] * 95 + [0.1] * 5, threshold=0.5)  # 95% pass
    v = verdict("share", vals, ">", 0.5, share=0.9)
    assert v.passed and v.interval.method == "wilson" and v.interval.low < 0.95 < v.interval.high
    assert v.within_noise == (v.interval.low <= 0.9)
    sure = verdict("share", vals, ">", 0.5, share=0.9, confidence=0.95)
    assert sure.passed == (v.interval.low >= 0.9)
    assert verdict("share", vals, ">", 0.5, share=0.85, confidence=0.95).passed  # Wilson low ~0.888
    assert not verdict("share", vals, ">", 0.5, share=0.9, confidence=0.95).passed


def test_confidence_without_an_interval_fails():
    assert not verdict("mean", _values([0.9]), ">", 0.5, confidence=0.95).passed
    assert verdict("mean", _values([0.9]), ">", 0.5).passed


def test_cost_at_10000_images_is_milliseconds():
    """Every aggregate's interval at 10,000 images, and 5 classes of 2,000 each: well under 5% of a
    10,000-image pass (about 24 s of pass here, so the budget is about 1.2 s)."""
    rng = np.random.default_rng(0)
    x = rng.beta(2, 5, size=10_000)
    start = time.perf_counter()
    for kind in ("mean", "median", "p10", "p90"):
        assert interval_of(kind, x) is not None
        for c in range(5):
            assert interval_of(kind, x[c * 2000:(c + 1) * 2000]) is not None
    assert interval_of("share", x, int((x > 0.2).sum()), x.size) is not None
    elapsed = time.perf_counter() - start
    assert elapsed < 1.2, elapsed
