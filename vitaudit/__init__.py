"""vitaudit: pytest-style audits of image classifiers' explanations.

The Python API::

    import vitaudit
    model = vitaudit.load_model("efficientnet_lite0", pretrained=True)
    e = vitaudit.explain(model, "cat.jpg", "gradcam")
    e.heatmap, e.topk(5), e.target_label

Names are imported lazily (PEP 562): the pytest plugin is loaded by every pytest run once
vitaudit is installed, and must not pay for importing torch unless audits are collected.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "AuditModel": "models", "load_model": "models",
    "explain": "engine", "explain_batch": "engine", "predict": "engine", "prefetch": "engine",
    "Explanation": "explanation", "ExplanationCache": "cache",
    "METHODS": "explainers", "ExplainerError": "explainers",
    "ImageError": "images", "LoadedImage": "images", "load_image": "images",
    "LabelError": "labels", "CheckpointError": "checkpoints",
    "ModelError": "registry", "WeightsUnavailable": "registry", "known_model": "registry",
    "register_source": "registry",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vitaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
