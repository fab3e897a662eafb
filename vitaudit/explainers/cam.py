"""The CAM family through the ``grad-cam`` package, fed from the shared forward pass.

Each method's maths is pytorch-grad-cam's own (``get_cam_weights`` / ``get_cam_image`` of its
classes); what changes is where activations and gradients come from: the engine's single
forward, with a backward that stops at the target layer. ViT tokens are reshaped to patch
maps first (pytorch-grad-cam's ``reshape_transform`` idea), so the family works on ViTs too.
The package is imported on first use, without the scikit-learn and matplotlib it would load for
tools vitaudit does not call (:mod:`.gradcam_lib`).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, ClassVar

import numpy as np
import torch

from ..layers import get_module, target_layer
from ..models import AuditModel
from .base import Explainer, ExplainerError, ForwardContext, Needs


class _Released:
    def release(self) -> None:  # BaseCAM.__del__ calls this
        pass


def _bare(name: str, model: AuditModel, batch_size: int):
    """An instance of a pytorch-grad-cam class without its hooks: only its maths is used."""
    from .gradcam_lib import grad_cam

    cls = getattr(grad_cam, name)
    cam = cls.__new__(cls)
    cam.model = model.module
    cam.device = model.device
    cam.target_layers = []
    cam.reshape_transform = None
    cam.batch_size = batch_size
    cam.activations_and_grads = _Released()
    return cam


class CamExplainer(Explainer):
    """Base of the CAM methods; subclasses name the pytorch-grad-cam class they use."""

    cam_class: ClassVar[str]  # the pytorch-grad-cam class, by name
    uses_gradients: ClassVar[bool] = True
    defaults = {"layer": None}

    def check_option(self, key: str, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ExplainerError(f"{self.name} option layer must be a module path such as 'layer4', not {value!r}")
        return value

    def needs(self, model: AuditModel, options: dict[str, Any]) -> Needs:
        return Needs(layers={target_layer(model, options["layer"]).path})

    def maps(self, ctx: ForwardContext, targets: torch.Tensor, options: dict[str, Any]) -> np.ndarray:
        path = target_layer(ctx.model, options["layer"]).path
        acts = ctx.activations(path)
        grads = ctx.gradients(path, targets) if self.uses_gradients else None
        cam = self.cam_image(ctx, path, targets, acts, grads)
        return np.maximum(cam, 0).astype(np.float32)

    def cam_image(self, ctx: ForwardContext, path: str, targets: torch.Tensor,
                  acts: torch.Tensor, grads: torch.Tensor | None) -> np.ndarray:
        cam = _bare(self.cam_class, ctx.model, batch_size=max(16, ctx.x.shape[0]))
        acts_np = acts.float().cpu().numpy()
        grads_np = grads.float().cpu().numpy() if grads is not None else None
        from .gradcam_lib import grad_cam  # noqa: F401  (grad-cam's import, done the lean way)
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]
        layer = get_module(ctx.model.module, path)
        return cam.get_cam_image(ctx.x, layer, cam_targets, acts_np, grads_np, eigen_smooth=False)


class GradCAMExplainer(CamExplainer):
    """Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient."""

    name = "gradcam"
    cam_class = "GradCAM"


class GradCAMPlusPlusExplainer(CamExplainer):
    """Grad-CAM++ (Chattopadhyay et al. 2018)."""

    name = "gradcam++"
    cam_class = "GradCAMPlusPlus"


class HiResCAMExplainer(CamExplainer):
    """HiResCAM (Draelos & Carin 2020): gradients times activations, element-wise."""

    name = "hirescam"
    cam_class = "HiResCAM"


class LayerCAMExplainer(CamExplainer):
    """LayerCAM (Jiang et al. 2021): positive gradients times activations, element-wise."""

    name = "layercam"
    cam_class = "LayerCAM"


class EigenCAMExplainer(CamExplainer):
    """EigenCAM (Muhammad & Yeasin 2020): first principal component of the activations (class-agnostic)."""

    name = "eigencam"
    cam_class = "EigenCAM"
    uses_gradients = False
    class_specific = False


class ScoreCAMExplainer(CamExplainer):
    """Score-CAM (Wang et al. 2020): each channel weighted by the target score of the input masked by it.

    Needs one extra forward per channel (batched), by nature of the method.
    """

    name = "scorecam"
    cam_class = "ScoreCAM"
    uses_gradients = False

    def cam_image(self, ctx: ForwardContext, path: str, targets: torch.Tensor,
                  acts: torch.Tensor, grads: torch.Tensor | None) -> np.ndarray:
        # pytorch-grad-cam draws tqdm bars on stderr for every image; keep the terminal quiet.
        with contextlib.redirect_stderr(io.StringIO()), torch.no_grad():
            return super().cam_image(ctx, path, targets, acts, grads)
