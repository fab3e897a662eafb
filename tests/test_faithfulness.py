"""Deletion/insertion curves with a score function whose every value can be worked out by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vitaudit.faithfulness import FaithfulnessResult, baseline_image, deletion_auc, insertion_auc
from vitaudit.metrics import MetricError, NoSignalError

nan = float("nan")

# A 1-channel 2x4 input of ones (n = 8 pixels). The "model" answers the mean of channel 0 over
# the two pixels S = (0,0), (0,1): 1 while both are intact, 0 once both are zeroed.
X = torch.ones(1, 2, 4)


def score_s(batch: torch.Tensor) -> np.ndarray:
    return batch[:, 0, 0, 0:2].mean(dim=1).numpy()


PERFECT = np.array([[1.0, 0.9, 0.1, 0.2], [0.3, 0.4, 0.5, 0.6]])  # S ranked first
REVERSED = 1.0 - PERFECT  # S ranked last


def test_deletion_perfect_by_hand():
    r = deletion_auc(X, PERFECT, score_s, steps=4, baseline="zero")
    assert isinstance(r, FaithfulnessResult) and r.kind == "deletion"
    np.testing.assert_array_equal(r.fractions, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_array_equal(r.scores, [1, 0, 0, 0, 0])  # S goes in the first chunk of 2
    assert r.auc == 0.125  # 0.25 * (1 + 0) / 2


def test_deletion_reversed_by_hand():
    r = deletion_auc(X, REVERSED, score_s, steps=4, baseline="zero")
    np.testing.assert_array_equal(r.scores, [1, 1, 1, 1, 0])
    assert r.auc == 0.875  # 0.25 * (1 + 1 + 1 + 0.5)


def test_insertion_by_hand():
    good = insertion_auc(X, PERFECT, score_s, steps=4, baseline="zero")
    bad = insertion_auc(X, REVERSED, score_s, steps=4, baseline="zero")
    assert good.kind == "insertion"
    np.testing.assert_array_equal(good.scores, [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(bad.scores, [0, 0, 0, 0, 1])
    assert (good.auc, bad.auc) == (0.875, 0.125)


def test_uneven_chunks_round_half_up():
    # 8 pixels in 3 steps: 8/3 = 2.67 -> 3, 16/3 = 5.33 -> 5
    r = deletion_auc(X, PERFECT, score_s, steps=3, baseline="zero")
    np.testing.assert_array_equal(r.fractions, [0, 3 / 8, 5 / 8, 1])
    np.testing.assert_array_equal(r.scores, [1, 0, 0, 0])
    assert r.auc == 3 / 16
    # 8 pixels in 16 steps: i/2 -> halves up gives 1, 1, 2, 2, 3, ... (round() would give 0, 1, 2, 2, ...)
    r = deletion_auc(X, PERFECT, score_s, steps=16, baseline="zero")
    assert r.fractions[1] == 1 / 8 and r.fractions[2] == 1 / 8
    np.testing.assert_array_equal(r.scores[:4], [1, 0.5, 0.5, 0])


def test_nan_saliency_is_lowest():
    s = PERFECT.copy()
    s[0, 0] = s[0, 1] = nan
    r = deletion_auc(X, s, score_s, steps=4, baseline="zero")
    np.testing.assert_array_equal(r.scores, [1, 1, 1, 1, 0])


def test_ties_in_raster_order():
    flat = np.full((2, 4), 0.5)
    np.testing.assert_array_equal(deletion_auc(X, flat, score_s, steps=4, baseline="zero").scores, [1, 0, 0, 0, 0])

    def score_last(batch):  # the last two pixels in raster order are removed last
        return batch[:, 0, 1, 2:4].mean(dim=1).numpy()

    np.testing.assert_array_equal(deletion_auc(X, flat, score_last, steps=4, baseline="zero").scores, [1, 1, 1, 1, 0])


def test_ties_in_raster_order_on_a_larger_input():
    # one pixel per step; the score is sum(pixel * (raster index + 1)), so each drop names the pixel
    x = torch.ones(1, 8, 8)
    flat = np.full(64, 0.5)
    flat[::7] = 1.0
    idx = torch.arange(1.0, 65.0).reshape(1, 8, 8)
    r = deletion_auc(x, flat.reshape(8, 8), lambda b: (b * idx).sum(dim=(1, 2, 3)).numpy(), steps=64, baseline="zero")
    removed = (-np.diff(r.scores) - 1).astype(int).tolist()
    ones = list(range(0, 64, 7))
    assert removed == ones + [i for i in range(64) if i not in ones]


def test_mean_baseline_by_hand():
    x = torch.zeros(1, 2, 4)
    x[0, 0, 0:2] = 1.0  # channel mean 0.25
    r = deletion_auc(x, PERFECT, score_s, steps=4, baseline="mean")
    np.testing.assert_array_equal(r.scores, [1, 0.25, 0.25, 0.25, 0.25])
    assert r.auc == 0.34375  # 0.25 * ((1 + .25) / 2 + 3 * .25)
    r = insertion_auc(x, PERFECT, score_s, steps=4, baseline="mean")
    np.testing.assert_array_equal(r.scores, [0.25, 1, 1, 1, 1])


def test_baseline_images():
    x = torch.stack([torch.full((3, 5), 2.0), torch.arange(15.0).reshape(3, 5)])
    assert torch.equal(baseline_image(x, "zero"), torch.zeros_like(x))
    mean = baseline_image(x, "mean")
    assert torch.equal(mean[0], torch.full((3, 5), 2.0)) and torch.equal(mean[1], torch.full((3, 5), 7.0))
    blur = baseline_image(x, "blur")
    assert blur.shape == x.shape and blur.dtype == x.dtype
    torch.testing.assert_close(blur[0], x[0])  # a constant channel stays constant (edges replicated)


def test_blur_is_rise_kernel():
    # impulse far from the edges: the centre keeps g(0)^2 of the normalised 11-tap, sigma-5 Gaussian
    x = torch.zeros(1, 21, 21, dtype=torch.float64)
    x[0, 10, 10] = 1.0
    g0 = 1.0 / sum(math.exp(-k * k / 50.0) for k in range(-5, 6))
    blur = baseline_image(x, "blur")
    assert blur[0, 10, 10].item() == pytest.approx(g0 ** 2, abs=1e-12)
    assert blur[0, 10, 15].item() > 0 and blur[0, 10, 16].item() == 0  # radius 5
    assert blur.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_one_batched_call_or_chunks():
    sizes: list[int] = []

    def counting(batch):
        sizes.append(batch.shape[0])
        return score_s(batch)

    whole = deletion_auc(X, PERFECT, counting, steps=4, baseline="zero")
    assert sizes == [5]
    sizes.clear()
    chunked = deletion_auc(X, PERFECT, counting, steps=4, baseline="zero", batch_size=2)
    assert sizes == [2, 2, 1]
    np.testing.assert_array_equal(chunked.scores, whole.scores)


def test_score_fn_may_return_a_tensor():
    r = deletion_auc(X, PERFECT, lambda b: b[:, 0, 0, 0:2].mean(dim=1), steps=4, baseline="zero")
    assert r.auc == 0.125


def test_perfect_beats_reversed_on_a_weighted_model():
    # A linear "model" that weighs a bright blob; the saliency is its weights.
    rr, cc = np.mgrid[0:16, 0:16]
    bump = np.exp(-((rr - 5) ** 2 + (cc - 9) ** 2) / 8.0)
    weights = bump + 0.01 * np.random.default_rng(0).random((16, 16))
    x = torch.from_numpy(0.1 + 0.9 * bump).float().expand(3, 16, 16).clone()
    wt = torch.from_numpy(weights).float()

    def model(batch):
        return ((batch * wt).sum(dim=(1, 2, 3)) / (x * wt).sum()).numpy()

    for baseline in ("zero", "mean", "blur"):
        d_good = deletion_auc(x, weights, model, baseline=baseline).auc
        d_bad = deletion_auc(x, weights.max() - weights, model, baseline=baseline).auc
        i_good = insertion_auc(x, weights, model, baseline=baseline).auc
        i_bad = insertion_auc(x, weights.max() - weights, model, baseline=baseline).auc
        assert d_good < d_bad - 0.2, (baseline, d_good, d_bad)
        assert i_good > i_bad + 0.2, (baseline, i_good, i_bad)


def test_errors():
    with pytest.raises(MetricError, match="saliency has shape \\(4, 2\\) but the model input is 2x4"):
        deletion_auc(X, PERFECT.T, score_s)
    with pytest.raises(NoSignalError, match="no signal"):
        deletion_auc(X, np.array([[0, 0, nan, 0], [0, 0, 0, 0]]), score_s)
    with pytest.raises(MetricError, match="unknown baseline 'blurr'; did you mean 'blur'"):
        insertion_auc(X, PERFECT, score_s, baseline="blurr")
    with pytest.raises(MetricError, match="steps must be"):
        deletion_auc(X, PERFECT, score_s, steps=0)
    with pytest.raises(MetricError, match=r"\(C, h, w\) tensor"):
        deletion_auc(X[None], PERFECT, score_s)
    with pytest.raises(MetricError, match=r"one score per image, shape \(17,\), got \(17, 1\)"):
        deletion_auc(X, PERFECT, lambda b: score_s(b)[:, None], baseline="zero")
    with pytest.raises(MetricError, match="non-finite"):
        deletion_auc(X, PERFECT, lambda b: score_s(b) * nan, baseline="zero")


def test_to_dict_is_json():
    r = insertion_auc(X, PERFECT, score_s, steps=4, baseline="zero")
    d = json.loads(json.dumps(r.to_dict()))
    assert d == {"auc": 0.875, "fractions": [0, 0.25, 0.5, 0.75, 1], "scores": [0, 1, 1, 1, 1],
                 "kind": "insertion", "baseline": "zero"}
