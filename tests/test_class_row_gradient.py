"""The class-row backward (:class:`vitaudit.capture.ClassRowGradient`): which models and layers
take it, gradients equal to a plain full backward on an untouched copy of the model, logits
bitwise unchanged, and the MLP's all-token backward really gone (the point of it)."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import vitaudit
from vitaudit.engine import forward
from vitaudit.explainers import Needs

from plain_forward import plain_logits

SMALL = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 3, "num_heads": 2}


def _model(spec: str, **kwargs):
    return vitaudit.load_model(spec, num_classes=7, seed=0, device="cpu", model_kwargs={**SMALL, **kwargs})


@pytest.fixture(scope="module")
def vit():
    return _model("vit_tiny_patch16_224")


def test_which_models_take_the_class_row_backward(vit):
    assert vit.anatomy.class_row_modules == ("blocks.2.attn.proj", "blocks.2.mlp")
    assert _model("vit_small_patch14_reg4_dinov2").anatomy.class_row_modules == ("blocks.2.attn.proj", "blocks.2.mlp")
    # Heads that read more than the class token keep the plain backward.
    assert _model("vit_tiny_patch16_224", global_pool="avg").anatomy.class_row_modules == ()
    assert _model("deit_tiny_distilled_patch16_224").anatomy.class_row_modules == ()  # class + distillation token
    assert _model("vit_tiny_patch16_224", global_pool="map").anatomy.class_row_modules == ()  # attention pooling
    assert _model("beit_base_patch16_224").anatomy.class_row_modules == ()  # not timm's VisionTransformer
    from timm.models.vision_transformer import ResPostBlock  # post-norm: its norm1 runs after the attention

    assert _model("vit_tiny_patch16_224", block_fn=ResPostBlock).anatomy.class_row_modules == ()


def test_only_for_layers_that_run_before_the_class_row_modules(vit):
    a = vit.anatomy
    assert a.class_row_paths({"blocks.2.norm1"}) == a.class_row_modules
    assert a.class_row_paths({"blocks.0.norm1", "blocks.1.mlp.fc1"}) == a.class_row_modules
    for after in ("blocks.2.mlp.fc1", "blocks.2.norm2", "blocks.2.attn.proj", "blocks.2", "norm", "fc_norm"):
        assert a.class_row_paths({"blocks.2.norm1", after}) == (), after
    assert a.class_row_paths(set()) == ()


def _full_backward(model, x, layer: str, targets: torch.Tensor) -> torch.Tensor:
    """d logit_t / d output(layer) by autograd through an untouched copy of the model."""
    module = copy.deepcopy(model.module)
    seen = []
    handle = module.get_submodule(layer).register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        logits = module(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(logits.gather(1, targets.view(-1, 1)).sum(), seen[0])
    return grad


@pytest.mark.parametrize("spec", ["vit_tiny_patch16_224", "vit_small_patch14_reg4_dinov2", "deit3_small_patch16_224"])
@pytest.mark.parametrize("layer", ["blocks.2.norm1", "blocks.0.norm1", "blocks.2.attn.qkv"])
def test_gradients_equal_a_full_backward(spec, layer):
    model = _model(spec)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    ctx = forward(model, x, Needs(layers={layer}))
    targets = torch.tensor([1, 4, 6])
    ours = ctx.gradients(layer, targets)
    ref = ctx._as_maps(_full_backward(model, x, layer, targets), layer)
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))
    grad_off = model.anatomy.class_row_paths({layer})
    assert bool(grad_off) == (layer != "blocks.2.attn.qkv")  # qkv: not in the rule, plain backward
    assert torch.equal(ctx.logits, plain_logits(model.module, x, grad_from=layer, grad_off_in=grad_off))


class _MatmulShapes(TorchDispatchMode):
    """The (rows, inner, cols) of every matrix product run while it is active."""

    def __init__(self):
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
            a, b = (args[0], args[1]) if func is torch.ops.aten.mm.default else (args[1], args[2])
            self.shapes.append((a.shape[0], a.shape[1], b.shape[1]))
        return out


def test_the_backward_skips_the_mlp_rows_nothing_reads(vit):
    """With the class-row backward no matrix product in the backward spans every token at the MLP's
    hidden width; with the plain backward (the anatomy's modules cleared) two do (fc1's and fc2's)."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    tokens = 2 * (1 + 16)
    hidden = vit.module.blocks[2].mlp.fc1.out_features

    def backward_products(model) -> list[tuple[int, ...]]:
        ctx = forward(model, x, Needs(layers={"blocks.2.norm1"}))
        with _MatmulShapes() as seen:
            ctx.gradients("blocks.2.norm1", torch.tensor([0, 3]))
        return [s for s in seen.shapes if s[0] == tokens and hidden in s]

    assert backward_products(vit) == []
    plain = dataclasses.replace(vit, anatomy=dataclasses.replace(vit.anatomy, class_row_modules=()))
    assert len(backward_products(plain)) == 2
