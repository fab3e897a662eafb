"""Hugging Face ``transformers`` image classifiers as ``hf:<repo id or local folder>``.

The folder (or cached hub repo) holds what ``save_pretrained`` writes: ``config.json`` with
``id2label`` (the labels), the weights, and ``preprocessor_config.json`` (mean, std, size,
resample, crop), which becomes the data config. The network is wrapped in
:class:`HFClassifier` so it takes an image batch and returns logits like a timm model, and
describes itself with an :class:`~vitaudit.anatomy.Anatomy`: attention is read with the same
in-module probe as timm's, with the default SDPA attention left on (it ignores
``output_attentions``); Grad-CAM reads the last layer's first norm on the patch grid of
``config.patch_size``. Offline, a hub id loads from the local cache or fails at once.
Needs the optional extra ``vitaudit[hf]``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import nn

from ..anatomy import Anatomy
from .base import Built, LoadRequest, ModelError, WeightsUnavailable, _hub_reachable, register_source

# model_type -> words, and how many tokens come before the patches (None: windowed / CNN)
_VIT_TYPES: dict[str, tuple[str, int]] = {
    "vit": ("a vision transformer", 1),
    "deit": ("a DeiT vision transformer (class and distillation tokens)", 2),
    "beit": ("a BEiT vision transformer (relative position bias)", 1),
    "data2vec-vision": ("a Data2Vec vision transformer (relative position bias)", 1),
    "dinov2": ("a DINOv2 vision transformer", 1),
    "dinov2_with_registers": ("a DINOv2 vision transformer with register tokens", 1),
}
_WINDOWED = {"swin", "swinv2", "donut-swin"}
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


class HFClassifier(nn.Module):
    """A ``transformers`` image classifier that takes pixel values and returns logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.num_classes = int(model.config.num_labels)
        self.vitaudit_anatomy = hf_anatomy(self)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.model(pixel_values=x).logits


def _blocks(wrapper: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The encoder's list of transformer layers (transformers 4: ``encoder.layer``; 5: ``layers``)."""
    for name, mod in wrapper.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and hasattr(mod[0], "attention"):
            return name, mod
    return None


def hf_anatomy(wrapper: HFClassifier) -> Anatomy:
    config = wrapper.model.config
    mtype = config.model_type
    if mtype in _VIT_TYPES:
        kind, prefix = _VIT_TYPES[mtype]
        prefix += int(getattr(config, "num_register_tokens", 0) or 0)
        found = _blocks(wrapper)
        if found is None:
            raise ModelError(f"cannot find the transformer layers of this {mtype} model")
        path, blocks = found
        attention = []
        for i, blk in enumerate(blocks):
            attn = f"{path}.{i}.attention"
            inner = blk.attention
            attention.append(f"{attn}.attention" if hasattr(inner, "attention") else attn)  # transformers 4 nesting
        last = blocks[-1]
        norm = next((n for n in ("layernorm_before", "norm1") if hasattr(last, n)), None)
        if norm is None:
            raise ModelError(f"cannot find the first norm of the last {mtype} layer")
        p = config.patch_size
        return Anatomy(family="vit", kind=f"{kind} (transformers {type(wrapper.model).__name__})",
                       attention=tuple(attention), class_token=True, num_prefix=prefix,
                       cam_layer=f"{path}.{len(blocks) - 1}.{norm}", feature_layout="tokens",
                       patch_size=(p, p) if isinstance(p, int) else tuple(p), pooling="token")
    if mtype in _WINDOWED:
        base = wrapper.model.base_model_prefix
        return Anatomy(family="windowed", kind="a windowed-attention transformer with no class token",
                       cam_layer=f"model.{base}.layernorm", feature_layout="tokens", pooling="avg")
    name = type(wrapper.model).__name__
    if "attention" in " ".join(type(m).__name__.lower() for m in wrapper.modules()):
        return Anatomy(family="transformer", kind=f"an attention architecture vitaudit has no attention reader for ({name})")
    return Anatomy(family="cnn", kind=f"a convolutional network ({name})")


def _data_config(processor: Any, config: Any) -> dict[str, Any]:
    """The image processor's settings as a timm-style data config."""
    size = getattr(processor, "size", None) or {}
    crop = getattr(processor, "crop_size", None) or {}
    default = int(getattr(config, "image_size", 224) or 224)
    if getattr(processor, "do_center_crop", False) and crop:
        h, w = crop.get("height", default), crop.get("width", default)
    elif "height" in size:
        h, w = size["height"], size["width"]
    else:
        h = w = size.get("shortest_edge", default)
    crop_pct = getattr(processor, "crop_pct", None) or (
        min(h, w) / size["shortest_edge"] if getattr(processor, "do_center_crop", False) and "shortest_edge" in size else 1.0)
    resample = getattr(processor, "resample", 3)
    return {
        "input_size": (3, int(h), int(w)),
        "mean": tuple(processor.image_mean) if getattr(processor, "do_normalize", True) else (0.0, 0.0, 0.0),
        "std": tuple(processor.image_std) if getattr(processor, "do_normalize", True) else (1.0, 1.0, 1.0),
        "interpolation": _RESAMPLE.get(int(getattr(resample, "value", resample)), "bicubic"),
        "crop_pct": float(crop_pct),
    }


@register_source("hf")
def _load_hf(name: str, request: LoadRequest) -> Built:
    try:
        import transformers
    except ImportError:
        raise ModelError("hf: models need the transformers package (pip install 'vitaudit[hf]')") from None
    local = Path(name).expanduser()
    offline = not local.is_dir() and not _hub_reachable()
    if not local.is_dir() and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name):
        raise ModelError(f"hf:{name} is neither a local folder nor a hub repo id")
    source = str(local) if local.is_dir() else name
    kwargs = dict(request.model_kwargs)
    if request.num_classes is not None:
        kwargs.update(num_labels=request.num_classes, ignore_mismatched_sizes=True)
    try:
        config = transformers.AutoConfig.from_pretrained(source, local_files_only=offline)
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=offline)
        except (OSError, ValueError):
            processor = None
        if request.pretrained is False:
            for k, v in kwargs.items():
                if k == "num_labels":
                    config.num_labels = v
                    config.id2label = {i: f"LABEL_{i}" for i in range(v)}
                    config.label2id = {v2: k2 for k2, v2 in config.id2label.items()}
                elif k != "ignore_mismatched_sizes":
                    setattr(config, k, v)
            model = transformers.AutoModelForImageClassification.from_config(config)
            weights = "random init"
        else:
            model = transformers.AutoModelForImageClassification.from_pretrained(source, local_files_only=offline, **kwargs)
            weights = f"transformers {source}"
    except (OSError, ValueError) as exc:
        if local.is_dir() or not isinstance(exc, OSError):
            raise ModelError(f"hf:{name}: {str(exc).splitlines()[0]}") from None
        raise WeightsUnavailable(
            f"hf:{name} cannot be loaded: the model hub cannot be reached and it is not in the local cache"
            if offline else f"hf:{name} cannot be loaded: {str(exc).splitlines()[0]}") from None
    if processor is None:
        raise ModelError(f"hf:{name} has no image-processor config (preprocessor_config.json) to say how to feed it")
    model.eval()
    id2label = model.config.id2label or {}
    labels = [str(id2label.get(i, id2label.get(str(i), f"class_{i}"))) for i in range(model.config.num_labels)]
    weights_file = None
    if local.is_dir():
        for f in ("model.safetensors", "pytorch_model.bin"):
            if (local / f).is_file():
                weights_file = str(local / f)
                break
    return Built(HFClassifier(model), _data_config(processor, model.config), labels=labels, weights=weights,
                 weights_file=weights_file)
