"""What a model source is (a loader from a name to a :class:`Built` network), and the table of them.

:mod:`vitaudit.registry` holds the built-in sources and looks names up here; adapters (one module
per source, e.g. :mod:`.hf`) register with :func:`register_source` without importing the registry.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn


class ModelError(ValueError):
    """A model spec that names nothing loadable (one-line message)."""


class WeightsUnavailable(ModelError):
    """Pretrained weights that cannot be had here (offline and not cached): audits skip, not fail."""


@dataclass
class Built:
    """What a source returns: the network, its data config and class names (None: derive)."""

    module: nn.Module
    data_config: dict[str, Any]
    labels: list[str] | None = None
    imagenet_subset: str | None = None
    weights: str = "random init"  # a word for the report: where the weights came from
    weights_file: str | None = None  # the file the weights were read from, when known (for its hash)


Loader = Callable[[str, "LoadRequest"], Built]
_SOURCES: dict[str, Loader] = {}


@dataclass(frozen=True)
class LoadRequest:
    pretrained: bool | None
    num_classes: int | None
    model_kwargs: tuple[tuple[str, Any], ...] = ()  # extra constructor arguments (timm: img_size, depth, ...)


def register_source(prefix: str) -> Callable[[Loader], Loader]:
    """Register a loader for specs ``"<prefix>:NAME"``."""

    def wrap(fn: Loader) -> Loader:
        _SOURCES[prefix] = fn
        return fn

    return wrap


def _hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
