"""The explainer base class and what one forward pass hands to every explainer.

Like pytorch-grad-cam, one base class and a small subclass per method that overrides one
function. Unlike calling pytorch-grad-cam per method, every explainer reads the *same*
forward pass: the engine asks each requested method what it needs (:meth:`Explainer.needs`),
runs the model once with those hooks, and then each method turns the capture into maps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..capture import AttentionRecord, LayerCapture, RolloutConfig
from ..layers import infer_grid, layer_prefix, tokens_to_maps
from ..models import AuditModel


class ExplainerError(ValueError):
    """A method that does not apply to a model, or bad options (one-line message)."""


@dataclass
class Needs:
    """What the shared forward pass must capture for a set of methods."""

    cls_rows: bool = False
    rollouts: set[RolloutConfig] = field(default_factory=set)
    layers: set[str] = field(default_factory=set)  # module paths whose output becomes a grad leaf

    def merge(self, other: "Needs") -> "Needs":
        self.cls_rows |= other.cls_rows
        self.rollouts |= other.rollouts
        self.layers |= other.layers
        return self


@dataclass
class ForwardContext:
    """One forward pass over a batch: logits and everything the hooks captured."""

    model: AuditModel
    x: torch.Tensor  # (B, 3, h, w) normalised inputs
    logits: torch.Tensor  # (B, classes), detached
    grid: tuple[int, int] | None  # ViT patch grid
    num_prefix: int  # ViT prefix tokens (CLS, registers, distillation)
    attention: AttentionRecord | None
    layers: dict[str, LayerCapture]
    graph_logits: torch.Tensor | None = None  # the logits still attached to the autograd graph
    layouts: dict[str, str] = field(default_factory=dict)  # per captured layer: tokens | nchw | nhwc
    _grad_cache: dict[tuple, dict[str, torch.Tensor]] = field(default_factory=dict)

    def activations(self, path: str) -> torch.Tensor:
        """The captured output of ``path`` as (B, C, h, w) maps (ViT tokens reshaped)."""
        leaf = self._leaf(path)
        return self._as_maps(leaf.detach(), path)

    def gradients(self, path: str, targets: torch.Tensor) -> torch.Tensor:
        """d logit[i, targets[i]] / d activation[i] as (B, C, h, w), one backward for the batch.

        ``torch.autograd.grad`` with respect to the captured activations alone: the backward
        stops at that layer and no parameter receives a gradient.
        """
        key = tuple(int(t) for t in targets)
        grads = self._grad_cache.get(key)
        if grads is None:
            paths = sorted(self.layers)
            leaves = [self._leaf(p) for p in paths]
            out = self.graph_logits
            if out is None or not out.requires_grad:
                raise ExplainerError("no gradient path from the logits to the target layer")
            with torch.enable_grad():
                score = out.gather(1, targets.view(-1, 1).to(out.device)).sum()
                computed = torch.autograd.grad(score, leaves, retain_graph=True, allow_unused=True)
            grads = {p: (g if g is not None else torch.zeros_like(l)) for p, g, l in zip(paths, computed, leaves)}
            self._grad_cache[key] = grads
        return self._as_maps(grads[path], path)

    def _leaf(self, path: str) -> torch.Tensor:
        cap = self.layers.get(path)
        if cap is None or cap.leaf is None:
            raise ExplainerError(f"layer {path!r} did not run in the forward pass")
        return cap.leaf

    def _as_maps(self, t: torch.Tensor, path: str = "") -> torch.Tensor:
        """A layer's output as (B, C, h, w): tokens without their prefix on the patch grid,
        NHWC permuted; the reshape pytorch-grad-cam leaves to its users, read from the model."""
        if t.dim() == 3:
            if self.grid is not None:
                return tokens_to_maps(t, layer_prefix(t.shape[1], self.grid, self.num_prefix), self.grid)
            return tokens_to_maps(t, 0, infer_grid(t.shape[1], tuple(self.x.shape[-2:])))
        if t.dim() == 4 and self.layouts.get(path) == "nhwc":
            return t.permute(0, 3, 1, 2)
        if t.dim() != 4:
            raise ExplainerError(f"target layer output has shape {tuple(t.shape)}; CAM methods need (B, C, h, w) maps or ViT tokens")
        return t


class Explainer:
    """One explanation method. Subclasses set the class attributes and override :meth:`maps`."""

    name: ClassVar[str]
    families: ClassVar[tuple[str, ...]] = ("vit", "windowed", "transformer", "cnn")
    class_specific: ClassVar[bool] = True  # False: the map does not depend on the target class
    defaults: ClassVar[dict[str, Any]] = {}

    def options(self, given: dict[str, Any]) -> dict[str, Any]:
        """Validated options with defaults filled in (canonical: part of the cache key)."""
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ExplainerError(f"{self.name} has no option {unknown[0]!r} (options: {known})")
        out = dict(self.defaults)
        for k, v in given.items():
            out[k] = self.check_option(k, v)
        return out

    def check_option(self, key: str, value: Any) -> Any:
        return value

    def check_model(self, model: AuditModel) -> None:
        if model.family not in self.families:
            raise ExplainerError(
                f"{self.name} applies to {' and '.join(self.families)} models (transformers with global softmax "
                f"attention); {model.name} is {model.kind}: use gradcam"
                if self.families == ("vit",) else
                f"{self.name} applies to {' and '.join(self.families)} models; {model.name} is {model.kind}"
            )

    def needs(self, model: AuditModel, options: dict[str, Any]) -> Needs:
        raise NotImplementedError

    def maps(self, ctx: ForwardContext, targets: torch.Tensor, options: dict[str, Any]) -> np.ndarray:
        """Raw maps (B, gh, gw), float32, non-negative, not yet scaled."""
        raise NotImplementedError
