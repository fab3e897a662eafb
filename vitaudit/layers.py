"""Which layer a gradient method reads: found automatically, or given by module path.

- CNNs (timm or torchvision): the module that produces the last spatial feature map before
  global pooling, e.g. ResNet's ``layer4`` or EfficientNet's ``bn2`` (after ``conv_head``).
  It is found once per model by a probe forward on a blank input that records, in the order
  they finish, the modules returning 4-D maps larger than 1x1; the last one wins, and among
  modules returning that very tensor the outermost (shortest path) names it.
- ViTs: the last block's ``norm1``, the tokens entering its attention (as pytorch-grad-cam's
  ViT example): the last block's *output* patch tokens do not reach a CLS-pooled head, so
  their gradients are zero. CaiT: its last class-attention block's ``norm1`` (class token and
  patches). Swin: the final ``norm`` (the last NHWC map before pooling). The family table
  (:mod:`vitaudit.anatomy`) names these; Hugging Face adapters name their own.

Token outputs become maps by dropping the prefix tokens and reshaping to the patch grid, and
NHWC outputs by a permute (pytorch-grad-cam's ``reshape_transform``, read from the model).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models import AuditModel


class LayerError(ValueError):
    """A target layer that does not exist or does not produce a usable map (one line)."""


@dataclass(frozen=True)
class TargetLayer:
    path: str
    tokens: bool  # True: (B, N, C) tokens of a ViT; False: (B, C, h, w) maps
    layout: str = "nchw"  # tokens | nchw | nhwc: how the layer's output is laid out


def get_module(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule`` with a one-line error that lists what exists."""
    try:
        return root.get_submodule(path)
    except AttributeError:
        parent, _, _ = path.rpartition(".")
        try:
            holder = root.get_submodule(parent) if parent else root
            names = [n for n, _ in holder.named_children()][:12]
        except AttributeError:
            names = [n for n, _ in root.named_children()][:12]
        raise LayerError(f"model has no module {path!r} (children there: {', '.join(names)})") from None


def target_layer(model: AuditModel, override: str | None = None) -> TargetLayer:
    """The layer gradient/CAM methods read for ``model`` (cached per model)."""
    path = override or model.target_layer
    anatomy = model.anatomy
    if path:
        get_module(model.module, path)
        return TargetLayer(path, tokens=anatomy.feature_layout == "tokens", layout=anatomy.feature_layout)
    cached = getattr(model, "_auto_target_layer", None)
    if cached is not None:
        return cached
    if anatomy.cam_layer is not None:
        found = TargetLayer(anatomy.cam_layer, tokens=anatomy.feature_layout == "tokens", layout=anatomy.feature_layout)
    else:
        found = TargetLayer(find_feature_layer(model.module, model.preprocessing.input_hw, model.device), tokens=False)
    model._auto_target_layer = found  # type: ignore[attr-defined]
    return found


def find_feature_layer(module: nn.Module, input_hw: tuple[int, int], device: torch.device) -> str:
    """The module producing the last spatial (>1x1) feature map of a forward pass."""
    finished: list[tuple[str, torch.Tensor]] = []
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(m: nn.Module, args: tuple, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[-1] > 1 and out.shape[-2] > 1:
                finished.append((name, out))

        handles.append(sub.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, *input_hw, device=device))
    finally:
        for h in handles:
            h.remove()
    if not finished:
        raise LayerError("found no module producing a spatial feature map; pass target_layer='<module path>'")
    last = finished[-1][1]
    same = [name for name, out in finished if out is last]
    return min(same, key=lambda n: (n.count("."), len(n)))


def tokens_to_maps(tokens: torch.Tensor, num_prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """ViT tokens (B, N, C) -> patch maps (B, C, gh, gw), prefix tokens (CLS, registers) dropped.

    The ``reshape_transform`` idea of pytorch-grad-cam's ViT example. A layer that carries no
    prefix tokens (CaiT's patch stage, Swin) passes ``num_prefix=0``.
    """
    patches = tokens[:, num_prefix:, :]
    B, n, C = patches.shape
    gh, gw = grid
    if n != gh * gw:
        raise LayerError(f"{n} patch tokens do not form the expected {gh}x{gw} grid")
    return patches.reshape(B, gh, gw, C).permute(0, 3, 1, 2)


def layer_prefix(tokens: int, grid: tuple[int, int], num_prefix: int) -> int:
    """How many prefix tokens a layer's (B, N, C) output carries: the model's, or none.

    CaiT's patch blocks and windowed models run without the class token; every other token
    layer carries all ``num_prefix`` of them. Anything else is not a token grid of this model.
    """
    patches = grid[0] * grid[1]
    if tokens == patches + num_prefix:
        return num_prefix
    if tokens == patches:
        return 0
    raise LayerError(f"{tokens} tokens are neither the {grid[0]}x{grid[1]} patch grid nor it with "
                     f"{num_prefix} prefix tokens; choose another target layer")


def infer_grid(tokens: int, input_hw: tuple[int, int]) -> tuple[int, int]:
    """The (gh, gw) grid of ``tokens`` patches over an input, for a stride that fits (Swin stages)."""
    h, w = input_hw
    for stride in range(1, max(h, w) + 1):
        gh, gw = -(-h // stride), -(-w // stride)
        if gh * gw == tokens:
            return gh, gw
        if gh * gw < tokens:
            break
    raise LayerError(f"{tokens} tokens do not tile a {h}x{w} input on any grid; choose another target layer")


def vit_grid(module: nn.Module, input_hw: tuple[int, int], patch_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The patch grid (gh, gw) of a ViT for an input size: timm's ``patch_embed``, or ``patch_size``."""
    if patch_size is not None:
        return input_hw[0] // patch_size[0], input_hw[1] // patch_size[1]
    pe = module.patch_embed
    if getattr(pe, "dynamic_img_size", False) and hasattr(pe, "dynamic_feat_size"):
        return tuple(int(v) for v in pe.dynamic_feat_size(input_hw))  # type: ignore[return-value]
    return tuple(int(v) for v in pe.grid_size)  # type: ignore[return-value]
