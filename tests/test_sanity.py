"""Model randomisation for the sanity check: which layers, the original untouched, the map changes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vitaudit
from vitaudit.sanity import randomize_top_layers, top_layers


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    """Names of the parameters and buffers of ``module`` that differ from ``before``."""
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


def test_layers_run_from_the_classifier_down(small_cnn, tiny_vit):
    assert [n for n, _ in top_layers(small_cnn.module)] == [
        "fc", "layer4.0", "layer3.0", "layer2.0", "layer1.0", "bn1", "conv1"]
    depth = len(tiny_vit.module.blocks)
    names = [n for n, _ in top_layers(tiny_vit.module)]
    assert names[:2] == ["head", "norm"]
    assert names[2:2 + depth] == [f"blocks.{i}" for i in reversed(range(depth))]
    assert names[-1] == "patch_embed"  # parameterless units (pooling, identities) are left out


@pytest.mark.parametrize("layers,expected", [(1, ["fc"]), (2, ["fc", "layer4.0"]), (3, ["fc", "layer4.0", "layer3.0"])])
def test_exactly_the_named_top_layers_are_reinitialised(small_cnn, layers, expected):
    before = _state(small_cnn.module)
    randomized, names = randomize_top_layers(small_cnn, layers)
    assert names == expected
    changed = _changed(before, randomized.module)
    prefixes = tuple(f"{n}." for n in names)
    # every conv / linear weight of the named layers is new (a random-init model's norm layers
    # reset to the same 1s and 0s), and nothing outside them changed
    weights = {k for k, p in small_cnn.module.named_parameters() if k.startswith(prefixes) and p.ndim >= 2}
    assert weights and weights <= changed
    assert all(k.startswith(prefixes) for k in changed), sorted(k for k in changed if not k.startswith(prefixes))
    assert randomized.weights == "randomised" and not randomized.module.training


def test_the_original_model_is_untouched(small_cnn, tiny_vit):
    for model in (small_cnn, tiny_vit):
        before = _state(model.module)
        randomized, _ = randomize_top_layers(model, "all")
        assert randomized.module is not model.module
        assert _changed(before, model.module) == set()
        assert _changed(before, randomized.module)  # while the copy did change


def test_all_layers_and_counts_beyond_the_depth(tiny_vit):
    every = [n for n, _ in top_layers(tiny_vit.module)]
    assert randomize_top_layers(tiny_vit, "all")[1] == every
    assert randomize_top_layers(tiny_vit, 999)[1] == every
    for bad in (0, -1, True, "some", 1.5):
        with pytest.raises(ValueError, match="positive integer or 'all'"):
            randomize_top_layers(tiny_vit, bad)


def test_fixed_seed_gives_the_same_copy_and_leaves_global_rng_alone(small_cnn):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, _ = randomize_top_layers(small_cnn, 2)
    assert torch.equal(torch.rand(3), expected_next), "the global generator must not be consumed"
    b, _ = randomize_top_layers(small_cnn, 2)
    c, _ = randomize_top_layers(small_cnn, 2, seed=1)
    sa, sb, sc = (m.module.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["fc.weight"], sc["fc.weight"])


def test_the_map_and_the_prediction_change(small_cnn, noise_images):
    """Re-initialising the classifier and the last stage changes Grad-CAM's map and the logits."""
    image = noise_images[0]
    e = vitaudit.explain(small_cnn, image, "gradcam")
    randomized, _ = randomize_top_layers(small_cnn, 2)
    r = vitaudit.explain(randomized, image, "gradcam", target=e.target)
    assert not e.no_signal and not r.no_signal
    corr = np.corrcoef(e.heatmap.ravel(), r.heatmap.ravel())[0, 1]
    assert corr < 0.9, corr
    assert not np.allclose(e.probs, r.probs, atol=1e-4)
    # and the original still explains as before
    again = vitaudit.explain(small_cnn, image, "gradcam")
    np.testing.assert_array_equal(again.raw, e.raw)
