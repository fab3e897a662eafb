"""Loading weights safely: safetensors, or ``torch.load(weights_only=True)``, never arbitrary pickles.

Handles the usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``), the ``module.``
prefix of DataParallel and the ``_orig_mod.`` prefix of ``torch.compile``, and explains a
mismatch by naming the first missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Mapping

import torch

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model (one-line message)."""


def _local(path: str | Path) -> Path:
    """A URI checkpoint (``s3://...``) as a local copy (fetched once, see ``storage.local_copy``)."""
    from .storage import is_uri, local_copy

    if is_uri(str(path)):
        try:
            return Path(local_copy(str(path)))
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint not found: {path}") from None
        except OSError as exc:
            raise CheckpointError(f"cannot fetch checkpoint {path}: {exc}") from None
    return Path(path)


def sha256_file(path: str | Path) -> str:
    path = _local(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (or URI), unwrapped and with training prefixes removed."""
    path = _local(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors file {path}: {exc}") from None
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
            raise CheckpointError(
                f"refusing to unpickle {path}: it holds more than tensors ({first[:160]}); "
                "re-save it with torch.save(model.state_dict(), ...) or as .safetensors"
            ) from None
        except Exception as exc:
            raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    return _unwrap(state, path)


def _unwrap(state: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(state, Mapping) and not _is_tensor_dict(state):
            inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
            if inner is None:
                keys = ", ".join(list(map(str, state))[:6])
                raise CheckpointError(f"{path} holds no state dict (top-level keys: {keys})")
            state = inner
    if not isinstance(state, Mapping) or not _is_tensor_dict(state):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _is_tensor_dict(d: Mapping) -> bool:
    return len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, or raise a CheckpointError that names what does not fit."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} mis-shaped (checkpoint vs model: {'; '.join(shapes[:3])})")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
