"""ViT attention maps against independent re-computations from the blocks' q and k.

Reference 1 re-derives q and k from each block's *input* (captured by a plain pre-hook on
the block) with the block's own weights, in float64. Reference 2 is timm's own
``AttentionExtract`` on a copy of the model with fused attention switched off on that copy.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitaudit
from vitaudit.engine import explain_batch

VITS = ["tiny_vit", "reg_vit", "distilled_vit"]


def reference_attention(module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per layer (B, heads, N, N) float64 softmax attention, recomputed from q and k."""
    inputs: list[torch.Tensor] = []
    handles = [b.register_forward_pre_hook(lambda m, a: inputs.append(a[0].detach())) for b in module.blocks]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    out = []
    with torch.no_grad():
        for blk, xin in zip(module.blocks, inputs):
            a = blk.attn
            h = blk.norm1(xin)
            B, N, _ = h.shape
            qkv = F.linear(h, a.qkv.weight, a.qkv.bias).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
            q, k = a.q_norm(qkv[0]).double(), a.k_norm(qkv[1]).double()
            out.append(((q @ k.transpose(-2, -1)) * a.head_dim ** -0.5).softmax(dim=-1))
    return out


def reference_rollout(attns: list[torch.Tensor], fusion: str = "mean", discard: float = 0.0) -> np.ndarray:
    """Abnar & Zuidema rollout in numpy float64: (fused + I), rows renormalised, multiplied through."""
    B, _, N, _ = attns[0].shape
    result = np.stack([np.eye(N)] * B)
    for attn in attns:
        a = attn.numpy()
        fused = {"mean": a.mean(axis=1), "max": a.max(axis=1), "min": a.min(axis=1)}[fusion]
        for b in range(B):
            flat = fused[b].reshape(-1).copy()
            drop = np.argsort(flat, kind="stable")[: int(N * N * discard)]
            drop = drop[drop != 0]
            flat[drop] = 0.0
            m = flat.reshape(N, N) + np.eye(N)
            m = m / m.sum(axis=1, keepdims=True)
            result[b] = m @ result[b]
    return result[:, 0, :]


def _inputs(model, images):
    return torch.stack([model.preprocessing(vitaudit.load_image(im))[0] for im in images])


@pytest.mark.parametrize("name", VITS)
def test_attention_and_cls_rows_match_recomputation(name, request, noise_images):
    model = request.getfixturevalue(name)
    images = noise_images[:3]
    ours = explain_batch(model, images, ["attention"])
    ref = reference_attention(model.module, _inputs(model, images))
    p = model.module.num_prefix_tokens
    gh, gw = model.module.patch_embed.grid_size
    for i in range(len(images)):
        expected_last = ref[-1][i, :, 0, p:].mean(dim=0).numpy().reshape(gh, gw)
        np.testing.assert_allclose(ours[i]["attention"].raw, expected_last, rtol=1e-4, atol=1e-6)
        rows = np.stack([r[i, :, 0, p:].numpy().reshape(-1, gh, gw) for r in ref])
        # cls_attention is kept in float16 in the cache: compare at that precision.
        np.testing.assert_allclose(ours[i]["attention"].cls_attention, rows, rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("name", VITS)
@pytest.mark.parametrize("fusion,discard", [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.9)])
def test_rollout_matches_recomputation(name, fusion, discard, request, noise_images):
    model = request.getfixturevalue(name)
    images = noise_images[:2]
    method = f"rollout(head_fusion='{fusion}', discard_ratio={discard})"
    ours = explain_batch(model, images, [method])
    ref = reference_rollout(reference_attention(model.module, _inputs(model, images)), fusion, discard)
    p = model.module.num_prefix_tokens
    gh, gw = model.module.patch_embed.grid_size
    for i in range(len(images)):
        np.testing.assert_allclose(ours[i][method].raw, ref[i, p:].reshape(gh, gw), rtol=1e-4, atol=1e-7)


def test_attention_matches_timm_attention_extract(tiny_vit, noise_images):
    """timm's own extractor, on a copy whose blocks use the unfused path, sees the same attention."""
    from timm.utils import AttentionExtract

    ref_model = copy.deepcopy(tiny_vit.module)
    for blk in ref_model.blocks:
        blk.attn.fused_attn = False
    x = _inputs(tiny_vit, noise_images[:2])
    extracted = AttentionExtract(ref_model, method="fx")(x)
    last = list(extracted.values())[-1]  # (B, heads, N, N)
    ours = explain_batch(tiny_vit, noise_images[:2], ["attention"])
    gh, gw = tiny_vit.module.patch_embed.grid_size
    for i in range(2):
        expected = last[i, :, 0, 1:].mean(dim=0).detach().numpy().reshape(gh, gw)
        np.testing.assert_allclose(ours[i]["attention"].raw, expected, rtol=1e-4, atol=1e-6)


def test_gap_vit_without_class_token_says_so():
    model = vitaudit.load_model("vit_little_patch16_reg4_gap_256", num_classes=5, seed=0,
                                model_kwargs={"img_size": 64, "depth": 1, "embed_dim": 32, "num_heads": 2})
    with pytest.raises(vitaudit.ExplainerError, match="no class token"):
        vitaudit.explain(model, np.zeros((32, 32, 3), np.uint8), "attention")
    e = vitaudit.explain(model, np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8), "gradcam")
    assert e.raw.shape == (4, 4)


def test_attention_refuses_cnn(small_cnn):
    with pytest.raises(vitaudit.ExplainerError, match="applies to vit"):
        vitaudit.explain(small_cnn, np.zeros((32, 32, 3), np.uint8), "rollout")
