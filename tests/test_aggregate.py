"""vitaudit.aggregate: each aggregate against a hand computation, ordering, merging, histograms."""
from __future__ import annotations

import random

import numpy as np
import pytest

from vitaudit.aggregate import (ImageValue, aggregate_value, by_group, histogram, merge, ranked, verdict,
                                worst_and_best)

VALUES = [0.9, 0.1, 0.5, 0.35, 0.7, 0.2, 0.05, 0.8]


def vals(values, passed=None, labels=None) -> list[ImageValue]:
    return [ImageValue(i, f"img/{i}.png", v, None if passed is None else passed[i],
                       None if labels is None else labels[i]) for i, v in enumerate(values)]


@pytest.mark.parametrize("kind,expected", [
    ("mean", sum(VALUES) / 8),
    ("median", (0.35 + 0.5) / 2),  # sorted: .05 .1 .2 .35 .5 .7 .8 .9
    ("min", 0.05),
    ("max", 0.9),
    ("p0", 0.05),
    ("p100", 0.9),
    ("p50", (0.35 + 0.5) / 2),
    ("p25", 0.1 + 0.75 * (0.2 - 0.1)),  # linear: position 0.25 * (8 - 1) = 1.75, between .1 and .2
])
def test_aggregate_words(kind: str, expected: float) -> None:
    assert aggregate_value(kind, VALUES) == pytest.approx(expected, abs=1e-12)


def test_unknown_aggregate_and_bad_percentile() -> None:
    with pytest.raises(ValueError, match="unknown aggregate 'average'"):
        aggregate_value("average", VALUES)
    with pytest.raises(ValueError, match="percentile must be in"):
        aggregate_value("p101", VALUES)
    assert aggregate_value("mean", []) is None


@pytest.mark.parametrize("op,threshold,passed", [(">", 0.44, True), (">", 0.46, False), ("<", 0.46, True),
                                                 ("<=", 0.44, False), (">=", 0.44, True)])
def test_mean_verdict_on_both_sides(op: str, threshold: float, passed: bool) -> None:
    v = verdict("mean", vals(VALUES), op, threshold)
    assert v.value == pytest.approx(0.45)
    assert v.passed is passed
    assert (v.n_images, v.n_missing, v.share_passing) == (8, 0, None)


def test_share_counts_failing_and_unmeasured_images() -> None:
    checks = [v > 0.3 for v in VALUES]  # 5 of 8 pass
    values = vals(VALUES, checks)
    values[0] = ImageValue(0, "img/0.png", None, False, error="no signal")  # was passing: now 4 of 8
    v = verdict("share", values, ">", 0.3, share=0.5)
    assert v.value == pytest.approx(4 / 8)
    assert v.passed
    assert v.n_missing == 1
    assert not verdict("share", values, ">", 0.3, share=0.51).passed
    assert verdict("share", values, ">", 0.3, share=4 / 8).passed  # exactly the share passes (>=)


def test_accuracy_is_the_share_of_correct_images() -> None:
    correct = [True, True, False, True]
    v = verdict("accuracy", vals([0.9, 0.8, 0.1, 0.7], correct), ">", 0.7)
    assert v.value == pytest.approx(0.75) and v.passed
    assert not verdict("accuracy", vals([0.9, 0.8, 0.1, 0.7], correct), ">", 0.75).passed


def test_no_image_is_a_failed_verdict() -> None:
    v = verdict("mean", [], ">", 0.1)
    assert v.value is None and not v.passed and v.n_images == 0
    assert not verdict("share", [], ">", 0.1, share=0.5).passed


def test_merge_in_any_order_gives_dataset_order() -> None:
    values = vals(VALUES)
    shards = [values[:3], values[3:5], values[5:]]
    for seed in range(5):
        random.Random(seed).shuffle(shards)
        assert merge(*shards) == values
        assert verdict("p90", merge(*shards), ">", 0.5) == verdict("p90", values, ">", 0.5)


def test_worst_first_depends_on_the_direction() -> None:
    checks = [v > 0.3 for v in VALUES]
    up = ranked(vals(VALUES, checks), ">")
    assert [v.value for v in up[:3]] == [0.05, 0.1, 0.2]  # failing, lowest first
    down = ranked(vals(VALUES, [v < 0.3 for v in VALUES]), "<")
    assert [v.value for v in down[:3]] == [0.9, 0.8, 0.7]
    worst, best = worst_and_best(vals(VALUES, checks), ">", worst=6, best=3)
    assert [v.value for v in worst] == [0.05, 0.1, 0.2, 0.35, 0.5, 0.7]
    assert [v.value for v in best] == [0.9, 0.8]  # never an image already among the worst


def test_yes_no_values_show_bad_images_as_worst_and_good_ones_as_best() -> None:
    """The pointing game: 1 = the peak hits. Two misses of ten: no hit among the worst; two hits of
    ten: no miss among the best (with or without a per-image check)."""
    hits = [1.0] * 8 + [0.0] * 2
    for checks in (None, [h == 1.0 for h in hits]):
        worst, best = worst_and_best(vals(hits, checks), "hits", worst=6, best=3, yes_no=True)
        assert [v.value for v in worst] == [0.0, 0.0] and [v.value for v in best] == [1.0] * 3
    misses_mostly = [0.0] * 8 + [1.0] * 2
    for checks in (None, [h == 1.0 for h in misses_mostly]):
        worst, best = worst_and_best(vals(misses_mostly, checks), "hits", worst=6, best=3, yes_no=True)
        assert [v.value for v in worst] == [0.0] * 6 and [v.value for v in best] == [1.0, 1.0]
    # "misses" turns it round: 0 (a miss) is the good value
    worst, best = worst_and_best(vals(hits), "misses", worst=6, best=3, yes_no=True)
    assert [v.value for v in worst] == [1.0] * 6 and [v.value for v in best] == [0.0, 0.0]


def test_unmeasured_images_rank_among_the_worst() -> None:
    values = vals([0.2, 0.9]) + [ImageValue(2, "img/2.png", None, False, error="no signal")]
    values[0] = ImageValue(0, "img/0.png", 0.2, False)
    values[1] = ImageValue(1, "img/1.png", 0.9, True)
    assert [v.index for v in ranked(values, ">")] == [2, 0, 1]


def test_histogram_counts_every_value_and_covers_the_threshold() -> None:
    edges, counts = histogram(vals(VALUES), marks=[0.3])
    assert len(edges) == len(counts) + 1 == 21
    assert (edges[0], edges[-1]) == (0.0, 1.0)
    assert sum(counts) == 8
    expected, _ = np.histogram(VALUES, bins=20, range=(0, 1))
    assert counts == expected.tolist()
    edges, counts = histogram(vals([2.0, 3.0]), marks=[5.0])
    assert edges[0] == 2.0 and edges[-1] == 5.0 and sum(counts) == 2
    assert histogram([], marks=[0.3]) == ([], [])
    edges, _ = histogram(vals([-0.5, -0.5]))
    assert edges[0] < -0.5 < edges[-1]


def test_by_group_splits_by_label() -> None:
    values = vals([0.1, 0.2, 0.3], labels=["b", "a", "b"])
    groups = by_group(values)
    assert list(groups) == ["a", "b"]
    assert [v.value for v in groups["b"]] == [0.1, 0.3]
