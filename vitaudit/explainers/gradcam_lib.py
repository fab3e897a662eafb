"""pytorch-grad-cam, imported without loading what vitaudit never calls of it.

Importing ``pytorch_grad_cam`` runs its package ``__init__``, which imports every tool it has:
scikit-learn's ``KernelPCA`` and ``NMF`` (for KPCA-CAM and deep feature factorisation) and
matplotlib's ``pyplot`` (for its plotting helpers). vitaudit uses only the CAM classes' maths,
and those two libraries cost 170 MB of resident memory and seconds of import on the build
machine, which is most of what a camera photo's audit needs beyond a plain forward pass.

So, when vitaudit is the first to import grad-cam and neither library is loaded yet, the import
runs with stand-ins for those modules in ``sys.modules``; the stand-ins are removed right after.
Every name grad-cam took from them is a :class:`Deferred` that imports the real object on first
use, so grad-cam's own plotting and factorisation tools still work in the same process. Where
either library is already loaded, grad-cam gets the real one. Importing this module is the
import (the pytest plugin warms it in the background).
"""
from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any

#: The libraries grad-cam imports at its top level only for tools vitaudit does not call.
DEFERRED_LIBRARIES: dict[str, tuple[str, ...]] = {
    "sklearn": ("sklearn.decomposition",),
    "matplotlib": ("matplotlib.pyplot", "matplotlib.lines"),
}

_lock = threading.Lock()


class Deferred:
    """Stands for ``module.name`` (an attribute, or a submodule) until first used."""

    def __init__(self, module: str, name: str):
        self._where = (module, name)

    def real(self) -> Any:
        module, name = self._where
        try:
            return importlib.import_module(f"{module}.{name}")
        except ImportError:
            return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.real()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.real(), attr)

    def __repr__(self) -> str:
        return f"<deferred {'.'.join(self._where)}>"


class _StandIn(types.ModuleType):
    """A module in ``sys.modules`` for the length of grad-cam's import: any name taken from it
    is a :class:`Deferred` of the real module's."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return Deferred(self.__name__, attr)


def _load() -> types.ModuleType:
    with _lock:
        done = sys.modules.get("pytorch_grad_cam")
        if done is not None:
            return done
        stand_ins: list[str] = []
        for top, subs in DEFERRED_LIBRARIES.items():
            if top in sys.modules:
                continue
            for name in (top, *subs):
                sys.modules[name] = _StandIn(name)
                stand_ins.append(name)
        try:
            return importlib.import_module("pytorch_grad_cam")
        finally:
            for name in stand_ins:
                if isinstance(sys.modules.get(name), _StandIn):
                    del sys.modules[name]


grad_cam = _load()
