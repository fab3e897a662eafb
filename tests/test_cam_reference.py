"""CAM methods against calling pytorch-grad-cam directly (its own forward, hooks and backward),
and Grad-CAM, HiResCAM and LayerCAM against a few lines of numpy on captured activations and
gradients (a check of the formulas themselves, which both of the above take from the package).

Maps are compared as the library keeps them, ``raw / raw.max()`` (its ``grid``): no min-max,
so an offset, which changes every mass metric, changes the comparison too.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import vitaudit
from vitaudit.engine import explain_batch
from vitaudit.layers import target_layer

CAMS = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "hirescam": HiResCAM,
        "layercam": LayerCAM, "eigencam": EigenCAM, "scorecam": ScoreCAM}


def _by_max(raw: np.ndarray) -> np.ndarray:
    """The library's scaling of a map (``Explanation.grid``): by its maximum only."""
    raw = np.asarray(raw, np.float64)
    assert raw.max() > 0, "a reference map without signal compares nothing"
    return raw / raw.max()


def _inputs(model, images) -> torch.Tensor:
    return torch.stack([model.preprocessing(vitaudit.load_image(im))[0] for im in images])


def _reference(model, images, cls, layer_path, targets, reshape=None) -> np.ndarray:
    """pytorch-grad-cam's own run, (B, h, w): its per-layer map before any resizing or scaling."""
    module = copy.deepcopy(model.module)  # pytorch-grad-cam writes .grad and hooks: keep ours clean
    layer = module.get_submodule(layer_path)
    x = _inputs(model, images)
    raws = []
    with cls(module, [layer], reshape_transform=reshape) as cam:
        get_cam_image = cam.get_cam_image

        def recording(*args, **kwargs):
            raws.append(get_cam_image(*args, **kwargs))
            return raws[-1]

        cam.get_cam_image = recording
        cam(x, [ClassifierOutputTarget(int(t)) for t in targets])
    assert len(raws) == 1
    return np.maximum(raws[0], 0)


def _captured(model, images, layer_path, targets, reshape=None) -> tuple[np.ndarray, np.ndarray]:
    """Activations A and gradients dy_t/dA at a layer, (B, C, h, w) float64, by plain autograd."""
    module = copy.deepcopy(model.module)
    seen = []
    handle = module.get_submodule(layer_path).register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        logits = module(_inputs(model, images))
    finally:
        handle.remove()
    score = logits[torch.arange(len(images)), torch.as_tensor(targets)].sum()
    (grad,) = torch.autograd.grad(score, seen[0])
    acts = seen[0].detach()
    if reshape is not None:
        acts, grad = reshape(acts), reshape(grad)
    return acts.double().numpy(), grad.double().numpy()


#: The formulas, from the papers, on A and G = dy_t/dA (B, C, h, w).
FORMULAS = {
    "gradcam": lambda a, g: np.maximum(np.einsum("bc,bchw->bhw", g.mean(axis=(2, 3)), a), 0),  # Selvaraju 2017
    "hirescam": lambda a, g: np.maximum((g * a).sum(axis=1), 0),  # Draelos & Carin 2020
    "layercam": lambda a, g: np.maximum((np.maximum(g, 0) * a).sum(axis=1), 0),  # Jiang et al. 2021
}


@pytest.mark.parametrize("method", list(CAMS))
def test_cnn_cams_match_pytorch_grad_cam(method, small_cnn, noise_images):
    images = noise_images[:2]
    assert target_layer(small_cnn).path == "layer4"
    ours = explain_batch(small_cnn, images, [method])
    targets = [e[method].target for e in ours]
    ref = _reference(small_cnn, images, CAMS[method], "layer4", targets)
    for i in range(len(images)):
        np.testing.assert_allclose(ours[i][method].grid, _by_max(ref[i]), atol=2e-4)


def test_cnn_gradcam_for_a_chosen_class(small_cnn, noise_images):
    e = vitaudit.explain(small_cnn, noise_images[0], "gradcam", target=7)
    assert e.target == 7 and e.target_label == "class_7"
    ref = _reference(small_cnn, noise_images[:1], GradCAM, "layer4", [7])
    np.testing.assert_allclose(e.grid, _by_max(ref[0]), atol=2e-4)
    top1 = vitaudit.explain(small_cnn, noise_images[0], "gradcam")
    assert top1.target != 7 and not np.allclose(top1.grid, e.grid, atol=1e-2)


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
    for i in range(len(images)):
        np.testing.assert_allclose(ours[i][method].grid, _by_max(ref[i]), atol=2e-4)


def test_target_layer_override_by_module_path(small_cnn, noise_images):
    e = vitaudit.explain(small_cnn, noise_images[0], "gradcam(layer='layer3')")
    ref = _reference(small_cnn, noise_images[:1], GradCAM, "layer3", [e.target])
    assert e.raw.shape == (14, 14)
    np.testing.assert_allclose(e.grid, _by_max(ref[0]), atol=2e-4)


# The CNN at layer3: at layer4, right before global average pooling, a ResNet's gradients are
# the same at every position, so Grad-CAM and HiResCAM coincide there and a mix-up would not show.
@pytest.mark.parametrize("name,layer", [("small_cnn", "layer3"), ("reg_vit", None)])
@pytest.mark.parametrize("method", list(FORMULAS))
def test_cams_match_the_formulas_in_numpy(name, layer, method, request, noise_images):
    """Independent of pytorch-grad-cam: the formula on activations and gradients from autograd."""
    model = request.getfixturevalue(name)
    images = noise_images[:3]
    layer = layer or target_layer(model).path
    spec = f"{method}(layer='{layer}')"
    ours = [{method: e[spec]} for e in explain_batch(model, images, [spec])]
    targets = [e[method].target for e in ours]
    # one image explained for another class than its top-1
    ours[2] = {method: explain_batch(model, images[2:], [spec], targets=[(targets[2] + 1) % 10])[0][spec]}
    targets[2] = ours[2][method].target
    reshape = _vit_reshape(model) if model.family == "vit" else None
    acts, grads = _captured(model, images, layer, targets, reshape)
    expected = FORMULAS[method](acts, grads)
    for i in range(len(images)):
        assert ours[i][method].raw.shape == expected[i].shape
        np.testing.assert_allclose(ours[i][method].grid, _by_max(expected[i]), atol=1e-4)


def test_unknown_layer_is_one_clear_line(small_cnn):
    with pytest.raises(vitaudit.ExplainerError.__mro__[1], match="no module 'layer9'") as info:
        vitaudit.explain(small_cnn, np.zeros((8, 8, 3), np.uint8), "gradcam(layer='layer9')")
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and len(message) < 300, message


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
