"""Capturing attention or gradients must leave the model's function unchanged: bitwise against the
bare model run in the same autograd mode, within float32 rounding against one under no_grad
(tests/plain_forward.py says why)."""
from __future__ import annotations

import numpy as np
import pytest
import timm.layers.config as timm_config
import torch

from vitaudit.capture import RolloutConfig
from vitaudit.engine import explain_batch, forward
from vitaudit.explainers import Needs
from vitaudit.layers import target_layer

from plain_forward import assert_within_rounding, plain_logits

MODELS = ["tiny_vit", "reg_vit", "distilled_vit", "small_cnn"]


def _hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())


@pytest.mark.parametrize("name", MODELS)
def test_logits_bitwise_equal_with_every_capture(name, request):
    model = request.getfixturevalue(name)
    torch.manual_seed(1)
    x = torch.randn(3, 3, *model.preprocessing.input_hw)
    layer = target_layer(model).path
    needs = Needs(cls_rows=model.family == "vit", layers={layer})
    if model.family == "vit":
        needs.rollouts = {RolloutConfig(), RolloutConfig("max", 0.5)}
    ctx = forward(model, x, needs)
    # Like with like: the bare model with autograd on from the same layer (tests/plain_forward.py).
    assert torch.equal(ctx.logits, plain_logits(model.module, x, grad_from=layer,
                                                  grad_off_in=model.anatomy.class_row_paths({layer})))
    assert ctx.graph_logits is not None and ctx.graph_logits.requires_grad
    assert_within_rounding(ctx.logits, plain_logits(model.module, x))  # all under no_grad: other kernels may run


@pytest.mark.parametrize("name", MODELS)
def test_explaining_leaves_the_model_as_it_was(name, request):
    model = request.getfixturevalue(name)
    module = model.module
    fused_before = [getattr(b.attn, "fused_attn", None) for b in getattr(module, "blocks", [])]
    global_fused = timm_config._USE_FUSED_ATTN
    grads_req = [p.requires_grad for p in module.parameters()]
    hooks = _hooks(module)
    methods = ["gradcam", "gradcam++", "eigencam"] + (["attention", "rollout"] if model.family == "vit" else [])
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(2)]
    result = explain_batch(model, images, methods)
    assert set(result[0]) == set(methods)
    assert _hooks(module) == hooks
    assert all(p.grad is None for p in module.parameters()), "explaining must not write parameter gradients"
    assert [p.requires_grad for p in module.parameters()] == grads_req
    assert [getattr(b.attn, "fused_attn", None) for b in getattr(module, "blocks", [])] == fused_before
    assert timm_config._USE_FUSED_ATTN == global_fused
    assert not module.training
    assert torch.is_grad_enabled()


def test_probs_are_the_plain_models_softmax(tiny_vit, small_cnn, noise_images):
    from vitaudit.cache import ExplanationCache

    for model in (tiny_vit, small_cnn):
        # Its own cache: an entry another test made for these images in a batch of another size
        # holds that forward's floats, which need not equal a batch of two bit for bit.
        ex = explain_batch(model, noise_images[:2], ["gradcam"], cache=ExplanationCache())
        x = torch.stack([model.preprocessing(__import__("vitaudit").load_image(im))[0] for im in noise_images[:2]])
        layer = target_layer(model).path
        # gradcam's autograd mode
        logits = plain_logits(model.module, x, grad_from=layer, grad_off_in=model.anatomy.class_row_paths({layer}))
        probs = torch.softmax(logits.float(), dim=-1).numpy()
        for i in range(2):
            np.testing.assert_array_equal(ex[i]["gradcam"].probs, probs[i])


def test_fused_attention_stays_on(fresh, monkeypatch):
    """The default timm ViT uses F.scaled_dot_product_attention; capturing attention must not
    need it off: the fused kernel runs in every block while attention and rollout are read."""
    model = fresh("TINY_VIT")  # its own model: no other test's explaining comes first
    blocks = model.module.blocks
    assert all(b.attn.fused_attn for b in blocks)
    rng = np.random.default_rng(3)
    # Counted by the profiler (the capture itself watches calls of the real function, so the
    # function must stay the real one).
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        result = explain_batch(model, [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)], ["attention", "rollout"])
    calls = [e for e in prof.events() if e.name == "aten::scaled_dot_product_attention"]
    assert not result[0]["attention"].no_signal
    assert len(calls) == len(blocks), f"the fused kernel ran {len(calls)} times for {len(blocks)} blocks"
    assert all(b.attn.fused_attn for b in blocks)
