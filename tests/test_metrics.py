"""Every metric against values worked out by hand on tiny maps (binary fractions, so exact)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vitaudit.metrics import (
    MetricError,
    NoSignalError,
    energy_pointing_game,
    iou_top,
    map_stats,
    mass_in,
    pearson,
    pointing_game,
    rank_accuracy,
    resize_map,
    similarity,
    spearman,
    ssim,
)

nan = float("nan")

# Seen sum 3.5 over 14 seen pixels; two NaN pixels bottom-left (outside a "crop").
H = np.array([
    [0.00, 0.25, 0.00, 0.00],
    [0.25, 1.00, 0.50, 0.00],
    [0.00, 0.50, 0.75, 0.00],
    [nan,  nan,  0.25, 0.00],
], dtype=np.float32)


def pix(*cells, shape=(4, 4)) -> np.ndarray:
    """Mask with the given (row, col) cells set."""
    m = np.zeros(shape, dtype=bool)
    for r, c in cells:
        m[r, c] = True
    return m


CENTRE = pix((1, 1), (1, 2), (2, 1), (2, 2))  # values 1, .5, .5, .75 = 2.75
COL0 = pix((0, 0), (1, 0), (2, 0), (3, 0))  # values 0, .25, 0, NaN
ZERO = np.where(np.isnan(H), nan, 0).astype(np.float32)

LOCALISATION = [
    lambda h, m: mass_in(h, m),
    lambda h, m: pointing_game(h, m),
    lambda h, m: energy_pointing_game(h, m),
    lambda h, m: iou_top(h, m, 25),
    lambda h, m: rank_accuracy(h, m),
]


# ---------------------------------------------------------------- shared behaviour

@pytest.mark.parametrize("metric", LOCALISATION)
def test_no_signal_raises(metric):
    with pytest.raises(NoSignalError, match="no signal: all 14 seen pixels are 0"):
        metric(ZERO, CENTRE)


@pytest.mark.parametrize("metric", LOCALISATION)
def test_region_only_on_unseen_pixels(metric):
    with pytest.raises(MetricError, match=r"region has no pixel the model saw \(2 pixels"):
        metric(H, pix((3, 0), (3, 1)))


@pytest.mark.parametrize("metric", LOCALISATION)
def test_bad_inputs(metric):
    with pytest.raises(MetricError, match="shape"):
        metric(H, CENTRE[:3])
    with pytest.raises(MetricError, match="negative values"):
        metric(H - 0.5, CENTRE)
    with pytest.raises(MetricError, match="infinite"):
        metric(np.where(CENTRE, np.inf, H), CENTRE)
    with pytest.raises(MetricError, match="all 16 are NaN"):
        metric(np.full((4, 4), nan), CENTRE)


def test_errors_are_value_errors():
    assert issubclass(NoSignalError, MetricError) and issubclass(MetricError, ValueError)


# ---------------------------------------------------------------- mass_in

def test_mass_in():
    assert mass_in(H, CENTRE) == 11 / 14  # 2.75 / 3.5
    assert mass_in(H, ~CENTRE) == 3 / 14


def test_mass_in_ignores_nan_pixels_of_region():
    assert mass_in(H, COL0) == 1 / 14  # 0.25 / 3.5; the NaN pixel counts for nothing


def test_mass_in_accepts_int_mask():
    assert mass_in(H, CENTRE.astype(np.uint8)) == 11 / 14


# ---------------------------------------------------------------- pointing game

def test_pointing_game_hit_and_miss():
    assert pointing_game(H, CENTRE) is True
    assert pointing_game(H, pix((2, 2))) is False  # 0.75 is not the max


def test_pointing_game_tolerance_euclidean():
    right2 = pix((1, 3))  # 2 px right of the peak at (1, 1)
    assert pointing_game(H, right2, tolerance=1) is False
    assert pointing_game(H, right2, tolerance=2) is True
    diag = pix((3, 3))  # sqrt(8) = 2.83 px from the peak
    assert pointing_game(H, diag, tolerance=2) is False
    assert pointing_game(H, diag, tolerance=3) is True
    assert pointing_game(H, diag, tolerance=2.8) is False
    assert pointing_game(H, diag, tolerance=2.9) is True
    assert pointing_game(H, CENTRE, tolerance=0.0) is True  # audit files give floats


def test_pointing_game_ties_any_maximum_hits():
    h = np.array([[1, 0, 0], [0, 0.5, 0], [0, 0, 1]], dtype=np.float32)
    assert pointing_game(h, pix((2, 2), shape=(3, 3))) is True  # second of two maxima
    assert pointing_game(h, pix((0, 0), shape=(3, 3))) is True
    assert pointing_game(h, pix((1, 1), shape=(3, 3))) is False


def test_pointing_game_nan_is_never_the_max():
    h = np.array([[nan, 0.5], [0.25, 0]], dtype=np.float32)
    assert pointing_game(h, pix((0, 1), shape=(2, 2))) is True
    assert pointing_game(h, pix((0, 0), (1, 0), shape=(2, 2))) is False


@pytest.mark.parametrize("tol", [-1, -0.5, nan, float("inf"), True, "2"])
def test_pointing_game_bad_tolerance(tol):
    with pytest.raises(MetricError, match="tolerance"):
        pointing_game(H, CENTRE, tolerance=tol)


# ---------------------------------------------------------------- energy pointing game

def test_energy_pointing_game_subtracts_min():
    h = np.array([[0.5, 1.0, 0.5], [0.5, 0.5, 0.75]], dtype=np.float32)
    m = pix((0, 1), shape=(2, 3))
    # normalised: [[0, 1, 0], [0, 0, .5]] -> 1 / 1.5; raw mass: 1 / 3.75
    assert energy_pointing_game(h, m) == 2 / 3
    assert mass_in(h, m) == 4 / 15


def test_energy_pointing_game_equals_mass_when_min_is_zero():
    assert energy_pointing_game(H, CENTRE) == 11 / 14


def test_energy_pointing_game_constant_map_has_no_signal():
    h = np.full((2, 2), 0.5, dtype=np.float32)
    with pytest.raises(NoSignalError, match=r"constant \(0.5\)"):
        energy_pointing_game(h, pix((0, 0), shape=(2, 2)))
    assert mass_in(h, pix((0, 0), shape=(2, 2))) == 0.25  # mass_in still defined


# ---------------------------------------------------------------- iou_top

def test_iou_top_exact_set():
    # 25% of 14 seen = 3.5 -> 4 pixels: 1, .75, .5, .5 = the centre block
    assert iou_top(H, CENTRE, 25) == 1.0


def test_iou_top_ties_in_raster_order():
    # 20% of 14 = 2.8 -> 3: 1 at (1,1), .75 at (2,2), then the .5 tie goes to (1,2) before (2,1)
    assert iou_top(H, pix((1, 2)), 20) == 1 / 3
    assert iou_top(H, pix((2, 1)), 20) == 0.0


def test_iou_top_ties_on_a_larger_map():
    h = np.full((5, 6), 0.5, dtype=np.float32)
    h[4, 5] = 1.0
    # 10% of 30 = 3 pixels: the 1.0, then the first two 0.5 in raster order
    assert iou_top(h, pix((4, 5), (0, 0), (0, 1), shape=(5, 6)), 10) == 1.0
    assert iou_top(h, pix((4, 5), (4, 4), (4, 3), shape=(5, 6)), 10) == 0.2  # 1 / 5


def test_iou_top_all_seen_pixels_and_nan_region():
    assert iou_top(H, CENTRE, 100) == 4 / 14
    assert iou_top(H, COL0, 100) == 3 / 14  # the region's NaN pixel is dropped


def test_iou_top_rounds_halves_up():
    h = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.4, 0.3, 0.2, 0.1, 0.0]], dtype=np.float32)
    top3 = pix((0, 0), (0, 1), (0, 2), shape=(2, 5))
    assert iou_top(h, top3, 25) == 1.0  # 2.5 -> 3 pixels (round() would give 2 -> 2/3)


@pytest.mark.parametrize("percent", [0, -5, 100.5, nan])
def test_iou_top_bad_percent(percent):
    with pytest.raises(MetricError, match=r"percent must be in \(0, 100\]"):
        iou_top(H, CENTRE, percent)


def test_iou_top_rounds_to_zero_pixels():
    with pytest.raises(MetricError, match="top 1% of 14 seen pixels rounds to 0 pixels"):
        iou_top(H, CENTRE, 1)


# ---------------------------------------------------------------- rank accuracy

def test_rank_accuracy_simple():
    assert rank_accuracy(H, CENTRE) == 1.0  # K=4: 1, .75, .5, .5 all inside
    assert rank_accuracy(H, pix((1, 1), (0, 1))) == 0.5  # K=2: 1 in, .75 out
    assert rank_accuracy(H, pix((0, 3), (1, 3), (2, 3), (3, 3))) == 0.0


def test_rank_accuracy_tie_at_cutoff_is_shared():
    # K=3: 1 and .75 in; one place left for the .5 tie of (1,2) in and (2,1) out -> 1/2
    assert rank_accuracy(H, pix((1, 1), (2, 2), (1, 2))) == 2.5 / 3
    # same answer whichever tied pixel is the region's, unlike raster-order tie breaking
    assert rank_accuracy(H, pix((1, 1), (2, 2), (2, 1))) == 2.5 / 3


def test_rank_accuracy_with_nan_region_pixels():
    # rows 0 and 3: 6 seen pixels (K=6), values 0,.25,0,0,.25,0. Top 4 (1,.75,.5,.5) all out;
    # 2 places left for the three .25 pixels, 2 of which are in -> 4/3; 4/3 / 6 = 2/9
    rows03 = pix(*[(r, c) for r in (0, 3) for c in range(4)])
    assert rank_accuracy(H, rows03) == 2 / 9


# ---------------------------------------------------------------- similarities

A = np.array([[0.0, 0.25, nan], [0.75, 0.5, 1.0]], dtype=np.float32)
B = np.array([[1.0, 0.5, 0.25], [nan, 0.0, 0.25]], dtype=np.float32)
# seen in both: a = [0, .25, .5, 1], b = [1, .5, 0, .25]


def test_pearson_hand_values():
    a = np.array([[0, 0.25], [0.5, 0.75]])
    assert pearson(a, a[::-1, ::-1]) == pytest.approx(-1.0, abs=1e-12)
    assert pearson(a, np.array([[0, 0.5], [0.25, 0.75]])) == pytest.approx(0.8, abs=1e-12)  # .25 / .3125


def test_pearson_on_pixels_seen_in_both():
    assert pearson(A, B) == pytest.approx(-5 / 7, abs=1e-12)  # -.390625 / .546875


def test_spearman_hand_values():
    assert spearman(A, B) == pytest.approx(-0.8, abs=1e-12)  # 1 - 6*18 / (4*15)
    a = np.array([[0, 0.5], [0.5, 1]])  # tied ranks 2.5, 2.5
    b = np.array([[0, 0.25], [0.75, 1]])
    assert spearman(a, b) == pytest.approx(3 / math.sqrt(10), abs=1e-12)


@pytest.mark.parametrize("fn", [pearson, spearman])
def test_correlation_constant_and_no_signal(fn):
    a = np.array([[0, 0.25], [0.5, 0.75]])
    with pytest.raises(MetricError, match=r"the second map is constant \(0.5\) over the 4 pixels"):
        fn(a, np.full((2, 2), 0.5))
    # constant only on the pixels seen in both
    with pytest.raises(MetricError, match=r"the first map is constant \(0.5\) over the 3 pixels"):
        fn(np.array([[0.5, 0.5], [0.5, 1.0]]), np.array([[0.0, 0.25], [0.5, nan]]))
    with pytest.raises(NoSignalError, match="the first map has no signal"):
        fn(np.zeros((2, 2)), a)
    with pytest.raises(NoSignalError, match="the second map has no signal"):
        fn(a, np.array([[0, nan], [0, 0]]))
    with pytest.raises(MetricError, match="same shape"):
        fn(a, np.ones((2, 3)))
    with pytest.raises(MetricError, match="at least 2 pixels seen in both maps, got 1"):
        fn(np.array([[0.5, nan], [nan, 1]]), np.array([[nan, 0.5], [nan, 1]]))


def _global_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM formula on whole-image statistics (sample covariance), C1=(.01)^2, C2=(.03)^2."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(ddof=1), y.var(ddof=1)
    cxy = ((x - mx) * (y - my)).sum() / (x.size - 1)
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))


def test_ssim_equals_formula_on_a_single_window():
    # a 7x7 map holds exactly one 7x7 window, so the mean SSIM is the global formula
    x = (np.indices((7, 7)).sum(axis=0) % 2).astype(np.float64)  # checkerboard
    y = np.linspace(0, 1, 49).reshape(7, 7)
    assert ssim(x, y) == pytest.approx(_global_ssim(x, y), abs=1e-12)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, 0.5 * x) == pytest.approx(_global_ssim(x, 0.5 * x), abs=1e-12)


def test_ssim_refuses_nan_and_small_maps():
    x = np.linspace(0, 1, 64).reshape(8, 8)
    y = x.copy()
    y[0, 0] = nan
    with pytest.raises(MetricError, match="second map has 1 NaN pixels; use pearson or spearman"):
        ssim(x, y)
    with pytest.raises(MetricError, match="at least 7x7, got 5x6"):
        ssim(x[:5, :6], x[:5, :6])
    with pytest.raises(NoSignalError, match="first map has no signal"):
        ssim(np.zeros((8, 8)), x)


def test_similarity_dispatch():
    assert similarity(A, B, "pearson") == pearson(A, B)
    assert similarity(A, B, " Spearman ") == spearman(A, B)
    x = np.linspace(0, 1, 64).reshape(8, 8)
    assert similarity(x, x, "ssim") == ssim(x, x)


def test_similarity_unknown_name():
    with pytest.raises(MetricError, match=r"unknown similarity 'pearsen'; did you mean 'pearson'\? "
                                          r"\(known: pearson, spearman, ssim\)"):
        similarity(A, B, "pearsen")
    with pytest.raises(MetricError) as e:
        similarity(A, B, "xyz")
    assert "did you mean" not in str(e.value)


# ---------------------------------------------------------------- map_stats

def test_map_stats_values():
    s = map_stats(H)
    assert (s["min"], s["max"], s["mean"]) == (0.0, 1.0, 0.25)
    assert s["std"] == pytest.approx(math.sqrt(11 / 112), abs=1e-12)  # 2.25/14 - 1/16
    # p = v / 3.5: three 1/14, two 1/7, one 3/14, one 2/7, seven 0
    expected = (3 * (1 / 14) * math.log2(14) + 2 * (1 / 7) * math.log2(7)
                + (3 / 14) * math.log2(14 / 3) + (2 / 7) * math.log2(7 / 2))
    assert s["entropy"] == pytest.approx(expected, abs=1e-12)
    assert s["peak"] == [1, 1]
    assert s["no_signal"] is False
    assert s["nan_fraction"] == 2 / 16
    assert json.loads(json.dumps(s)) == s
    assert all(type(v) in (float, bool, list) for v in s.values())


def test_map_stats_peak_is_x_y_of_first_max():
    s = map_stats(np.array([[0, 0.5, 1], [1, 0, nan]], dtype=np.float32))
    assert s["peak"] == [2, 0]
    assert s["nan_fraction"] == 1 / 6


def test_map_stats_entropy_extremes():
    assert map_stats(np.array([[0, 0], [1, 0]]))["entropy"] == 0.0
    assert map_stats(np.full((2, 2), 0.5))["entropy"] == pytest.approx(2.0, abs=1e-12)


def test_map_stats_no_signal_and_all_nan():
    s = map_stats(ZERO)
    assert s["no_signal"] is True and s["peak"] is None and s["entropy"] is None
    assert (s["min"], s["max"]) == (0.0, 0.0)
    s = map_stats(np.full((2, 3), nan))
    assert s == {"min": None, "max": None, "mean": None, "std": None, "entropy": None,
                 "peak": None, "no_signal": True, "nan_fraction": 1.0}


# ---------------------------------------------------------------- resize_map

def test_resize_down_area_means_blocks():
    h = np.array([[0, 0.25, 0.5, 1], [0.25, 0.5, 0, 1], [1, 1, 0, 0], [1, 1, 0, 0.5]], dtype=np.float32)
    out = resize_map(h, (2, 2))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.25, 0.625], [1.0, 0.125]], atol=1e-6)


def test_resize_up_linear():
    out = resize_map(np.array([[0, 1], [0, 1]], dtype=np.float32), (2, 4))
    np.testing.assert_allclose(out, [[0, 0.25, 0.75, 1], [0, 0.25, 0.75, 1]], atol=1e-6)


def test_resize_nan_aware():
    h = np.array([
        [0.0, 0.5, 1.0, 1.0],
        [0.5, 1.0, 1.0, 0.5],
        [nan, 0.5, 0.25, 0.75],
        [nan, nan, nan, nan],
    ], dtype=np.float32)
    out = resize_map(h, (2, 2))
    # top blocks fully seen; bottom-left 1/4 seen -> NaN; bottom-right half seen -> mean .5
    np.testing.assert_allclose(out[0], [0.5, 0.875], atol=1e-6)
    assert np.isnan(out[1, 0])
    assert out[1, 1] == pytest.approx(0.5, abs=1e-6)


def test_resize_same_size_and_all_nan():
    h = H.copy()
    out = resize_map(h, (4, 4))
    np.testing.assert_array_equal(out, h)
    assert out is not h
    assert np.isnan(resize_map(np.full((4, 4), nan), (2, 2))).all()


def test_map_stats_entropy_is_scipys():
    from scipy.stats import entropy

    rng = np.random.default_rng(5)
    for shape in ((7, 9), (64, 64)):
        h = rng.random(shape) * (rng.random(shape) > 0.3)
        assert map_stats(h)["entropy"] == pytest.approx(float(entropy(h.ravel() / h.sum(), base=2)), abs=1e-12)
