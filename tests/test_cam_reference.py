"""CAM methods against calling pytorch-grad-cam directly (its own forward, hooks and backward)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import vitaudit
from vitaudit.engine import explain_batch
from vitaudit.layers import target_layer

CAMS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM,
        "layercam": LayerCAM, "eigencam": EigenCAM, "scorecam": ScoreCAM}


def _as_grad_cam(raw: np.ndarray, w: int, h: int) -> np.ndarray:
    """pytorch-grad-cam's post-processing: min-max + resize per layer, then min-max again."""
    return scale_cam_image(scale_cam_image(raw[None], (w, h)))[0]


def _reference(model, images, cls, layer_path, targets, reshape=None):
    module = copy.deepcopy(model.module)  # pytorch-grad-cam writes .grad and hooks: keep ours clean
    layer = module.get_submodule(layer_path)
    x = torch.stack([model.preprocessing(vitaudit.load_image(im))[0] for im in images])
    with cls(module, [layer], reshape_transform=reshape) as cam:
        return cam(x, [ClassifierOutputTarget(int(t)) for t in targets])


@pytest.mark.parametrize("method", list(CAMS))
def test_cnn_cams_match_pytorch_grad_cam(method, small_cnn, noise_images):
    images = noise_images[:2]
    assert target_layer(small_cnn).path == "layer4"
    ours = explain_batch(small_cnn, images, [method])
    targets = [e[method].target for e in ours]
    ref = _reference(small_cnn, images, CAMS[method], "layer4", targets)
    h, w = small_cnn.preprocessing.input_hw
    for i in range(len(images)):
        mine = _as_grad_cam(ours[i][method].raw, w, h)
        np.testing.assert_allclose(mine, ref[i], atol=2e-4)


def test_cnn_gradcam_for_a_chosen_class(small_cnn, noise_images):
    e = vitaudit.explain(small_cnn, noise_images[0], "gradcam", target=7)
    assert e.target == 7 and e.target_label == "class_7"
    ref = _reference(small_cnn, noise_images[:1], GradCAM, "layer4", [7])
    h, w = small_cnn.preprocessing.input_hw
    np.testing.assert_allclose(_as_grad_cam(e.raw, w, h), ref[0], atol=2e-4)


def _vit_reshape(model):
    p = model.module.num_prefix_tokens
    gh, gw = model.module.patch_embed.grid_size

    def reshape(t):
        return t[:, p:, :].reshape(t.size(0), gh, gw, t.size(2)).permute(0, 3, 1, 2)

    return reshape


@pytest.mark.parametrize("name", ["tiny_vit", "reg_vit"])
@pytest.mark.parametrize("method", ["gradcam", "layercam", "gradcam++"])
def test_vit_cams_match_pytorch_grad_cam_with_reshape(name, method, request, noise_images):
    model = request.getfixturevalue(name)
    images = noise_images[:2]
    layer = target_layer(model).path
    assert layer == f"blocks.{len(model.module.blocks) - 1}.norm1"
    ours = explain_batch(model, images, [method])
    ref = _reference(model, images, CAMS[method], layer, [e[method].target for e in ours], _vit_reshape(model))
    h, w = model.preprocessing.input_hw
    for i in range(len(images)):
        np.testing.assert_allclose(_as_grad_cam(ours[i][method].raw, w, h), ref[i], atol=2e-4)


def test_target_layer_override_by_module_path(small_cnn, noise_images):
    e = vitaudit.explain(small_cnn, noise_images[0], "gradcam(layer='layer3')")
    ref = _reference(small_cnn, noise_images[:1], GradCAM, "layer3", [e.target])
    h, w = small_cnn.preprocessing.input_hw
    assert e.raw.shape == (14, 14)
    np.testing.assert_allclose(_as_grad_cam(e.raw, w, h), ref[0], atol=2e-4)


def test_unknown_layer_is_one_clear_line(small_cnn):
    with pytest.raises(vitaudit.ExplainerError.__mro__[1], match="no module 'layer9'"):
        vitaudit.explain(small_cnn, np.zeros((8, 8, 3), np.uint8), "gradcam(layer='layer9')")


def test_auto_target_layers_of_known_architectures():
    from vitaudit.layers import find_feature_layer

    import timm
    import torchvision

    cases = {
        "resnet18": "layer4",
        "efficientnet_lite0": "bn2",
        "convnext_atto": "stages",
        "mobilenetv3_small_050": "blocks",  # its conv_head runs after pooling, on 1x1
    }
    for name, expected in cases.items():
        m = timm.create_model(name).eval()
        assert find_feature_layer(m, (64, 64), torch.device("cpu")) == expected, name
    tv = torchvision.models.resnet18().eval()
    assert find_feature_layer(tv, (64, 64), torch.device("cpu")) == "layer4"
