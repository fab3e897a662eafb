"""Hugging Face ``transformers`` classifiers as ``hf:<folder>``: tiny random models made from a
config and ``save_pretrained`` into a temporary folder, read with SDPA attention left on, and
checked against the same folder loaded eagerly with ``output_attentions=True``."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

import vitaudit  # noqa: E402
from vitaudit.capture import RolloutConfig  # noqa: E402
from vitaudit.engine import explain_batch, forward  # noqa: E402
from vitaudit.explainers import Needs  # noqa: E402
from vitaudit.layers import target_layer  # noqa: E402

from test_families import _as_grad_cam, _rollout64  # noqa: E402

LABELS = ["cat", "dog", "fox"]
VIT = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
CONFIGS = {
    "vit": lambda: transformers.ViTConfig(**VIT),
    "deit": lambda: transformers.DeiTConfig(**VIT, architectures=["DeiTForImageClassificationWithTeacher"]),
    "beit": lambda: transformers.BeitConfig(**VIT, use_relative_position_bias=True),
    "dinov2_reg": lambda: transformers.Dinov2WithRegistersConfig(**{**VIT, "image_size": 32}, num_register_tokens=4),
}


def _save(tmp_path_factory, name: str, config, hw: tuple[int, int] | None = None) -> str:
    config.id2label = dict(enumerate(LABELS))
    config.label2id = {v: k for k, v in config.id2label.items()}
    torch.manual_seed(0)
    model = transformers.AutoModelForImageClassification.from_config(config)
    with torch.no_grad():  # make attention rows differ (random init leaves them near flat)
        for pname, p in model.named_parameters():
            if any(k in pname for k in ("relative_position_bias_table", "register_tokens", "cls_token", "position_embeddings")):
                p.normal_(0, 1)
            elif pname.endswith(("q_proj.weight", "k_proj.weight", "query.weight", "key.weight")):
                p.mul_(6.0)
    folder = tmp_path_factory.mktemp(name)
    model.save_pretrained(folder)
    size = getattr(config, "image_size", 32)
    h, w = hw or (size, size)
    transformers.ViTImageProcessor(size={"height": h, "width": w}, image_mean=[0.5, 0.4, 0.3],
                                   image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=list(CONFIGS))
def hf_vit(request, tmp_path_factory):
    folder = _save(tmp_path_factory, request.param, CONFIGS[request.param]())
    return folder, vitaudit.load_model(f"hf:{folder}", device="cpu")


def _inputs(model, images):
    return torch.stack([model.preprocessing(vitaudit.load_image(im))[0] for im in images])


def test_labels_and_preprocessing_come_from_the_folder(hf_vit):
    _, model = hf_vit
    assert model.labels == LABELS and model.family == "vit"
    assert model.preprocessing.mean == pytest.approx((0.5, 0.4, 0.3)) and model.preprocessing.input_hw == (32, 32)
    assert model.module.model.config._attn_implementation == "sdpa"


def test_attention_and_rollout_match_eager_output_attentions(hf_vit, noise_images):
    folder, model = hf_vit
    images = noise_images[:2]
    x = _inputs(model, images)
    eager = transformers.AutoModelForImageClassification.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = eager(pixel_values=x, output_attentions=True)
    ref = [a.double() for a in out.attentions]
    p = model.anatomy.num_prefix
    for a in ref:
        assert float(a[:, :, 0, p:].std(dim=-1).mean()) > 0.2 / (a.shape[-1] - p), "near-flat attention: vacuous"
    g = 32 // 8
    rollout = _rollout64(ref, False, "max", 0.5)
    ours = explain_batch(model, images, ["attention", "rollout(head_fusion='max', discard_ratio=0.5)"])
    for i in range(len(images)):
        np.testing.assert_allclose(ours[i]["attention"].raw, ref[-1][i, :, 0, p:].mean(0).numpy().reshape(g, g), atol=1e-5)
        np.testing.assert_allclose(ours[i]["rollout(head_fusion='max', discard_ratio=0.5)"].raw,
                                   rollout[i, p:].reshape(g, g), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.stack([e["attention"].probs for e in ours]),
                               torch.softmax(out.logits, -1).numpy(), atol=1e-5)


def test_logits_bitwise_equal_with_capture(hf_vit):
    _, model = hf_vit
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model.module(x)
    ctx = forward(model, x, Needs(cls_rows=True, rollouts={RolloutConfig()}, layers={target_layer(model).path}))
    assert torch.equal(ctx.logits, plain)


def test_gradcam_matches_pytorch_grad_cam(hf_vit, noise_images):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    _, model = hf_vit
    images = noise_images[:2]
    ours = explain_batch(model, images, ["gradcam"])
    p = model.anatomy.num_prefix
    module = copy.deepcopy(model.module)
    layer = module.get_submodule(target_layer(model).path)
    reshape = lambda t: t[:, p:].reshape(t.shape[0], 4, 4, t.shape[-1]).permute(0, 3, 1, 2)  # noqa: E731
    with GradCAM(module, [layer], reshape_transform=reshape) as cam:
        ref = cam(_inputs(model, images), [ClassifierOutputTarget(e["gradcam"].target) for e in ours])
    for i in range(len(images)):
        np.testing.assert_allclose(_as_grad_cam(ours[i]["gradcam"].raw, 32, 32), ref[i], atol=2e-4)


def test_swin_convnext_resnet_from_folders(tmp_path_factory, noise_images):
    swin = _save(tmp_path_factory, "swin", transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                                                                   num_heads=[1, 2], window_size=4), hw=(32, 64))
    model = vitaudit.load_model(f"hf:{swin}", device="cpu")
    assert model.family == "windowed"
    with pytest.raises(vitaudit.ExplainerError, match="is a windowed-attention transformer with no class token: use gradcam"):
        vitaudit.explain(model, noise_images[0], "rollout")
    ours = vitaudit.explain(model, noise_images[0], "gradcam")
    assert target_layer(model).path == "model.swin.layernorm" and ours.raw.shape == (4, 8)  # non-square
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = copy.deepcopy(model.module)
    reshape = lambda t: t.reshape(t.shape[0], 4, 8, t.shape[-1]).permute(0, 3, 1, 2)  # noqa: E731
    with GradCAM(module, [module.model.swin.layernorm], reshape_transform=reshape) as cam:
        ref = cam(_inputs(model, noise_images[:1]), [ClassifierOutputTarget(ours.target)])
    np.testing.assert_allclose(_as_grad_cam(ours.raw, 64, 32), ref[0], atol=2e-4)
    for name, config, layer in (
        ("convnext", transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], image_size=32), "model.convnext.encoder"),
        ("resnet", transformers.ResNetConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], embedding_size=8), "model.resnet.encoder"),
    ):
        m = vitaudit.load_model(f"hf:{_save(tmp_path_factory, name, config)}", device="cpu")
        assert m.family == "cnn", name
        assert target_layer(m).path.startswith(layer), (name, target_layer(m).path)
        assert vitaudit.explain(m, noise_images[0], "gradcam").raw.ndim == 2


def test_missing_folder_and_offline_hub_id_fail_in_one_line(tmp_path):
    with pytest.raises(vitaudit.ModelError) as err:
        vitaudit.load_model(f"hf:{tmp_path}", device="cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(vitaudit.ModelError, match="cannot be loaded") as err:
        vitaudit.load_model("hf:nobody-here/no-such-model-xyz", device="cpu")
    assert "\n" not in str(err.value)
