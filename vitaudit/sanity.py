"""Model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

An explanation that does not change when the model's last layers are re-initialised explains
the image, not the model. :func:`randomize_top_layers` gives a copy of a model with its top
``n`` layers (the classifier first, then the last blocks/stages, as in the paper's cascading
randomisation) re-initialised with a fixed seed; the original model is untouched.
"""
from __future__ import annotations

import copy
from typing import Union

import torch
from torch import nn

from .models import AuditModel

Layers = Union[int, str]  # a count, or "all"

_CONTAINERS = (nn.Sequential, nn.ModuleList)


def top_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers from the top (classifier) down: top-level children with parameters,
    with Sequential/ModuleList containers (ViT ``blocks``, ResNet ``layerN``) opened one level."""
    units: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if isinstance(child, _CONTAINERS):
            units.extend((f"{name}.{sub}", m) for sub, m in child.named_children())
        else:
            units.append((name, child))
    units = [(n, m) for n, m in units if any(True for _ in m.parameters())]
    return list(reversed(units))


def _reinit(module: nn.Module, generator_seed: int) -> None:
    torch.manual_seed(generator_seed)
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
        elif m is not module or not any(True for _ in m.children()):
            for p in m.parameters(recurse=False):
                nn.init.normal_(p, std=0.02)


def randomize_top_layers(model: AuditModel, layers: Layers = 1, seed: int = 0) -> tuple[AuditModel, list[str]]:
    """A copy of ``model`` with its top ``layers`` layers re-initialised, and their names."""
    units = top_layers(model.module)
    if layers == "all":
        count = len(units)
    elif isinstance(layers, int) and not isinstance(layers, bool) and layers >= 1:
        count = min(layers, len(units))
    else:
        raise ValueError(f"layers must be a positive integer or 'all', not {layers!r}")
    module = copy.deepcopy(model.module)
    names = [name for name, _ in units[:count]]
    with torch.random.fork_rng(devices=[]):
        for i, name in enumerate(names):
            _reinit(module.get_submodule(name), seed + i)
    module.eval()
    randomized = AuditModel(
        module=module,
        name=f"{model.name} (top {count} layer{'s' if count != 1 else ''} re-initialised)",
        family=model.family,
        labels=model.labels,
        data_config=model.data_config,
        device=model.device,
        weights="randomised",
        target_layer=model.target_layer,
        crop=model.crop,
    )
    return randomized, names
