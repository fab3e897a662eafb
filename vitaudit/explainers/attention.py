"""ViT attention maps read from the model's own q and k: last-layer CLS attention and rollout."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..capture import RolloutConfig
from ..models import AuditModel
from .base import Explainer, ExplainerError, ForwardContext, Needs


def _patch_grid(ctx: ForwardContext, rows: torch.Tensor) -> np.ndarray:
    """(B, N) rows over all tokens -> (B, gh, gw) over the patches (prefix tokens dropped)."""
    gh, gw = ctx.grid  # type: ignore[misc]
    patches = rows[:, ctx.num_prefix :]
    return patches.reshape(-1, gh, gw).float().cpu().numpy()


def _require_cls(model: AuditModel, name: str) -> None:
    anatomy = model.anatomy
    if not anatomy.class_token:
        raise ExplainerError(f"{name} reads the class token's attention, and {model.name} is {anatomy.kind} with "
                             f"no class token (it pools by {anatomy.pooling or 'averaging'!r}); use gradcam")


class AttentionExplainer(Explainer):
    """Last layer, the class token's attention to the patches, mean over heads (the seed's method, done right)."""

    name = "attention"
    families = ("vit",)
    class_specific = False
    defaults = {"layer": -1}

    def check_option(self, key: str, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ExplainerError(f"attention option layer must be an integer (negative counts from the end), not {value!r}")
        return value

    def needs(self, model: AuditModel, options: dict[str, Any]) -> Needs:
        _require_cls(model, self.name)
        depth = len(model.anatomy.attention)
        if not -depth <= options["layer"] < depth:
            raise ExplainerError(f"attention layer {options['layer']} is out of range for {depth} blocks")
        return Needs(cls_rows=True)

    def maps(self, ctx: ForwardContext, targets: torch.Tensor, options: dict[str, Any]) -> np.ndarray:
        rows = ctx.attention.cls_rows[options["layer"]]  # (B, heads, N)
        return _patch_grid(ctx, rows.mean(dim=1))


class RolloutExplainer(Explainer):
    """Attention rollout (Abnar & Zuidema 2020): (fused attention + I), renormalised, multiplied through the layers."""

    name = "rollout"
    families = ("vit",)
    class_specific = False
    defaults = {"head_fusion": "mean", "discard_ratio": 0.0}

    def check_option(self, key: str, value: Any) -> Any:
        if key == "head_fusion":
            if value not in ("mean", "max", "min"):
                raise ExplainerError(f"rollout head_fusion must be mean, max or min, not {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
            raise ExplainerError(f"rollout discard_ratio must be a number in [0, 1), not {value!r}")
        return float(value)

    def needs(self, model: AuditModel, options: dict[str, Any]) -> Needs:
        _require_cls(model, self.name)
        return Needs(cls_rows=True, rollouts={RolloutConfig(options["head_fusion"], options["discard_ratio"])})

    def maps(self, ctx: ForwardContext, targets: torch.Tensor, options: dict[str, Any]) -> np.ndarray:
        cfg = RolloutConfig(options["head_fusion"], options["discard_ratio"])
        return _patch_grid(ctx, ctx.attention.rollout_row(cfg))
