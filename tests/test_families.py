"""Every timm transformer family: attention against timm's ``AttentionExtract`` on an unfused
copy, rollout against a float64 recomputation, logits bitwise with and without capture (against
the bare model in the same autograd mode, see tests/plain_forward.py), and
Grad-CAM against pytorch-grad-cam called directly with the reshape a user would have to write.

The variants are tiny random-init models. Random init leaves relative-position tables, register
and class tokens near zero, which makes attention rows almost flat (and a test that drops the
bias or misreads a register pass anyway), so :func:`_liven` gives them real values first and
:func:`_assert_rows_differ` checks it worked.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import vitaudit
from vitaudit.capture import RolloutConfig
from vitaudit.engine import explain_batch, forward
from vitaudit.explainers import Needs
from vitaudit.layers import target_layer

from plain_forward import assert_within_rounding, plain_logits

SMALL = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 2}
FAMILIES = {
    "deit3": ("deit3_small_patch16_224", SMALL),
    "beit": ("beit_base_patch16_224", SMALL),
    "eva02": ("eva02_tiny_patch14_224", SMALL),
    "rope_vit": ("vit_small_patch16_rope_224", SMALL),
    "relpos_cls": ("vit_relpos_medium_patch16_cls_224", SMALL),
    "cait": ("cait_xxs24_224", {**SMALL, "depth_token_only": 2}),
    "dinov2_reg": ("vit_small_patch14_reg4_dinov2", {**SMALL, "img_size": 40}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", SMALL),
    "vit_non_square": ("vit_tiny_patch16_224", {**SMALL, "img_size": (32, 48)}),
}
_LIVEN = ("relative_position_bias_table", "rel_pos", "reg_token", "cls_token", "dist_token", "pos_embed")


def _liven(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(k in name for k in _LIVEN):
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith(("qkv.weight", "q.weight", "k.weight", "q_proj.weight", "k_proj.weight")):
                p.mul_(4.0)  # sharper attention: rows that differ from one token to the next


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_model(request):
    spec, kwargs = FAMILIES[request.param]
    model = vitaudit.load_model(spec, num_classes=7, seed=0, device="cpu", model_kwargs=kwargs)
    _liven(model.module)
    return model


def _inputs(model, images):
    return torch.stack([model.preprocessing(vitaudit.load_image(im))[0] for im in images])


def _extract(model, x) -> list[torch.Tensor]:
    """timm's AttentionExtract on a copy whose attention modules all take the unfused path."""
    from timm.utils import AttentionExtract

    ref = copy.deepcopy(model.module)
    for m in ref.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    names = [f"{p}.attn_drop" for p in model.anatomy.attention]
    with torch.no_grad():
        out = AttentionExtract(ref, names=names, method="hook")(x)
    return [out[n].double() for n in names]


def _assert_rows_differ(attns: list[torch.Tensor], p: int) -> None:
    for a in attns:
        rows = a[:, :, 0, p:]
        assert float(rows.std(dim=-1).mean()) > 0.2 / rows.shape[-1], "attention rows are near flat: test would be vacuous"


def _rollout64(attns: list[torch.Tensor], class_attention: bool, fusion: str = "mean", discard: float = 0.0) -> np.ndarray:
    """Abnar & Zuidema rollout in float64 from full (or class-row) attention matrices."""
    B, _, _, N = attns[0].shape
    result = np.stack([np.eye(N)] * B)
    for attn in attns:
        a = attn.numpy()
        fused = {"mean": a.mean(axis=1), "max": a.max(axis=1), "min": a.min(axis=1)}[fusion]  # (B, Nq, N)
        for b in range(B):
            if class_attention:  # only the class token attends; the others pass unchanged
                row = fused[b, 0].copy()
                drop = np.argsort(row, kind="stable")[: int(N * discard)]
                row[drop[drop != 0]] = 0.0
                m = np.eye(N)
                m[0] = row + np.eye(N)[0]
            else:
                flat = fused[b].reshape(-1).copy()
                drop = np.argsort(flat, kind="stable")[: int(N * N * discard)]
                flat[drop[drop != 0]] = 0.0
                m = flat.reshape(N, N) + np.eye(N)
            m = m / m.sum(axis=1, keepdims=True)
            result[b] = m @ result[b]
    return result[:, 0, :]


def test_attention_matches_attention_extract(family_model, noise_images):
    model = family_model
    a = model.anatomy
    assert model.family == "vit" and a.class_token
    images = noise_images[:2]
    ref = _extract(model, _inputs(model, images))
    assert len(ref) == len(a.attention)
    _assert_rows_differ(ref, a.num_prefix)
    gh, gw = model.module.patch_embed.grid_size
    ours = explain_batch(model, images, ["attention", "attention(layer=0)"])
    for i in range(len(images)):
        for layer, key in ((-1, "attention"), (0, "attention(layer=0)")):
            expected = ref[layer][i, :, 0, a.num_prefix:].mean(dim=0).numpy().reshape(gh, gw)
            np.testing.assert_allclose(ours[i][key].raw, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fusion,discard", [("mean", 0.0), ("max", 0.5)])
def test_rollout_matches_float64_recomputation(family_model, noise_images, fusion, discard):
    model = family_model
    a = model.anatomy
    images = noise_images[:2]
    ref = _rollout64(_extract(model, _inputs(model, images)), a.class_attention, fusion, discard)
    method = f"rollout(head_fusion='{fusion}', discard_ratio={discard})"
    ours = explain_batch(model, images, [method])
    gh, gw = model.module.patch_embed.grid_size
    for i in range(len(images)):
        np.testing.assert_allclose(ours[i][method].raw, ref[i, a.num_prefix:].reshape(gh, gw), rtol=1e-4, atol=1e-6)


def test_logits_bitwise_equal_with_capture(family_model):
    """Bitwise against the bare model in the same autograd mode (tests/plain_forward.py says why);
    within float32 rounding against a forward entirely under no_grad."""
    model = family_model
    x = torch.randn(3, 3, *model.preprocessing.input_hw, generator=torch.Generator().manual_seed(3))
    layer = target_layer(model).path
    needs = Needs(cls_rows=True, rollouts={RolloutConfig(), RolloutConfig("max", 0.5)}, layers={layer})
    ctx = forward(model, x, needs)
    assert torch.equal(ctx.logits, plain_logits(model.module, x, grad_from=layer,
                                                  grad_off_in=model.anatomy.class_row_paths({layer})))
    assert len(ctx.attention.cls_rows) == len(model.anatomy.attention)
    assert_within_rounding(ctx.logits, plain_logits(model.module, x))
    attention_only = forward(model, x, Needs(cls_rows=True, rollouts={RolloutConfig("max", 0.5)}))
    assert torch.equal(attention_only.logits, plain_logits(model.module, x))  # no autograd anywhere


@pytest.mark.parametrize("name", ["beit", "cait", "eva02"])
def test_unfused_models_are_read_from_their_own_softmax(name, noise_images):
    """With fused attention off (TIMM_FUSED_ATTN=0, or a module set so), the module's own softmax
    output is what is read; it must agree with the fused model's recomputed attention."""
    spec, kwargs = FAMILIES[name]
    fused = vitaudit.load_model(spec, num_classes=7, seed=0, device="cpu", model_kwargs=kwargs)
    _liven(fused.module)
    module = copy.deepcopy(fused.module)
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    unfused = vitaudit.AuditModel(module=module, name=spec, family="vit", labels=fused.labels,
                                  data_config=fused.data_config, device=fused.device)
    x = _inputs(fused, noise_images[:2])
    ctx = forward(unfused, x, Needs(cls_rows=True, rollouts={RolloutConfig("max", 0.5)}))
    assert torch.equal(ctx.logits, plain_logits(module, x))  # attention only: no autograd in either
    ref = forward(fused, x, Needs(cls_rows=True, rollouts={RolloutConfig("max", 0.5)}))
    for a, b in zip(ctx.attention.cls_rows, ref.attention.cls_rows):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    cfg = RolloutConfig("max", 0.5)
    torch.testing.assert_close(ctx.attention.rollout_row(cfg), ref.attention.rollout_row(cfg), rtol=1e-4, atol=1e-6)


def _as_grad_cam(raw: np.ndarray, w: int, h: int) -> np.ndarray:
    return scale_cam_image(scale_cam_image(raw[None], (w, h)))[0]


def _pgc(model, images, layer_path, targets, reshape, keep_output=False):
    module = copy.deepcopy(model.module)
    x = _inputs(model, images)
    layer = module.get_submodule(layer_path)
    with GradCAM(module, [layer], reshape_transform=reshape) as cam:
        if keep_output:
            # Runs after pytorch-grad-cam's hook: the network goes on with a copy, so an in-place
            # op downstream (torchvision DenseNet's F.relu(inplace=True)) cannot rewrite the
            # activations pytorch-grad-cam saved (on a CPU, .cpu().detach() aliases them).
            layer.register_forward_hook(lambda m, a, out: out.clone())
        return cam(x, [ClassifierOutputTarget(int(t)) for t in targets])


def test_gradcam_matches_pytorch_grad_cam_with_the_users_reshape(family_model, noise_images):
    model = family_model
    p = model.module.num_prefix_tokens
    gh, gw = model.module.patch_embed.grid_size

    def reshape(t):  # what a user writes for pytorch-grad-cam on a ViT
        return t[:, p:, :].reshape(t.size(0), gh, gw, t.size(2)).permute(0, 3, 1, 2)

    images = noise_images[:2]
    ours = explain_batch(model, images, ["gradcam"])
    layer = target_layer(model).path
    ref = _pgc(model, images, layer, [e["gradcam"].target for e in ours], reshape)
    h, w = model.preprocessing.input_hw
    for i in range(len(images)):
        assert ours[i]["gradcam"].raw.shape == (gh, gw)
        np.testing.assert_allclose(_as_grad_cam(ours[i]["gradcam"].raw, w, h), ref[i], atol=2e-4)


# ------------------------------------------------------------------ Swin, no class token

SWIN = dict(img_size=(32, 64), patch_size=4, window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2))


@pytest.fixture(scope="module")
def swin():
    return vitaudit.load_model("swin_tiny_patch4_window7_224", num_classes=7, seed=0, device="cpu", model_kwargs=SWIN)


@pytest.mark.parametrize("method", ["attention", "rollout"])
def test_swin_attention_is_refused_with_the_reason(swin, method):
    assert swin.family == "windowed"
    with pytest.raises(vitaudit.ExplainerError) as err:
        vitaudit.explain(swin, np.zeros((32, 32, 3), np.uint8), method)
    assert str(err.value).endswith(
        "swin_tiny_patch4_window7_224 is a windowed-attention transformer with no class token: use gradcam")


def test_swin_gradcam_on_a_non_square_input_matches_pytorch_grad_cam(swin, noise_images):
    images = noise_images[:2]
    ours = explain_batch(swin, images, ["gradcam", "layercam"])
    assert target_layer(swin).path == "norm"
    for method, cls in (("gradcam", GradCAM), ("layercam", __import__("pytorch_grad_cam").LayerCAM)):
        module = copy.deepcopy(swin.module)
        with cls(module, [module.norm], reshape_transform=lambda t: t.permute(0, 3, 1, 2)) as cam:
            ref = cam(_inputs(swin, images), [ClassifierOutputTarget(e[method].target) for e in ours])
        for i in range(len(images)):
            assert ours[i][method].raw.shape == (4, 8)
            np.testing.assert_allclose(_as_grad_cam(ours[i][method].raw, 64, 32), ref[i], atol=2e-4)


def test_relpos_vit_without_class_token_says_so_and_gradcam_works(noise_images):
    model = vitaudit.load_model("vit_srelpos_small_patch16_224", num_classes=5, seed=0, device="cpu", model_kwargs=SMALL)
    with pytest.raises(vitaudit.ExplainerError, match="relative position bias with no class token .*use gradcam"):
        vitaudit.explain(model, noise_images[0], "rollout")
    assert vitaudit.explain(model, noise_images[0], "gradcam").raw.shape == (4, 4)


def test_cnn_refusal_names_the_network(small_cnn):
    with pytest.raises(vitaudit.ExplainerError, match=r"is a convolutional network \(ResNet\): use gradcam"):
        vitaudit.explain(small_cnn, np.zeros((32, 32, 3), np.uint8), "attention")


# ------------------------------------------------------------------ CNN families

def _torchvision_small(cls_name: str, **kwargs):
    """A small instance of a torchvision architecture (its ``*_tiny``/``121`` builders fix the size)."""
    import torchvision

    def make():
        torch.manual_seed(0)
        module = getattr(torchvision.models, cls_name)(num_classes=5, **kwargs).eval()
        cfg = {"input_size": (3, 64, 96), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
        return vitaudit.AuditModel(module=module, name=f"torchvision {cls_name}", family="cnn",
                                   labels=[f"c{i}" for i in range(5)], data_config=cfg, device=torch.device("cpu"))

    return make


def _loaded(spec: str, **kwargs):
    return lambda: vitaudit.load_model(spec, num_classes=5, seed=0, device="cpu", model_kwargs=kwargs)


def _tv_convnext():
    from torchvision.models.convnext import CNBlockConfig

    return _torchvision_small("ConvNeXt", block_setting=[CNBlockConfig(8, 16, 1), CNBlockConfig(16, 24, 1),
                                                         CNBlockConfig(24, None, 1)])


def _tv_regnet():
    from torchvision.models.regnet import BlockParams

    return _torchvision_small("RegNet", block_params=BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0,
                                                                                  group_width=8))


CNNS = [
    ("convnext", _loaded("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 16, 24, 32)), "stages"),
    ("regnet", _loaded("regnetx_002"), "s4"),
    ("mobilenetv3", _loaded("mobilenetv3_small_050"), "blocks"),  # its conv_head runs after pooling, on 1x1
    ("densenet", _loaded("densenet121", growth_rate=8, block_config=(1, 1, 1, 1)), "features"),
    ("torchvision:convnext", _tv_convnext(), "features"),
    ("torchvision:regnet", _tv_regnet(), "trunk_output"),
    ("torchvision:mobilenet_v3", _loaded("torchvision:mobilenet_v3_small"), "features"),
    ("torchvision:densenet", _torchvision_small("DenseNet", growth_rate=8, block_config=(1, 1, 1, 1), num_init_features=16),
     "features"),
]


@pytest.mark.parametrize("name,make,layer", CNNS, ids=[c[0] for c in CNNS])
def test_cnn_families_auto_layer_and_gradcam_match_pytorch_grad_cam(name, make, layer, noise_images):
    model = make()
    model.preprocessing = dataclasses.replace(model.preprocessing, input_hw=(64, 96))  # small, non-square
    assert model.family == "cnn"
    assert target_layer(model).path == layer
    images = noise_images[:1]
    ours = explain_batch(model, images, ["gradcam"])
    ref = _pgc(model, images, layer, [ours[0]["gradcam"].target], None, keep_output=True)
    h, w = model.preprocessing.input_hw
    np.testing.assert_allclose(_as_grad_cam(ours[0]["gradcam"].raw, w, h), ref[0], atol=2e-4)
