"""``load_model``: a classifier ready to audit, with its data config, labels and device."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from . import registry
from .anatomy import Anatomy, anatomy_of
from .checkpoints import load_into, read_state_dict, sha256_file
from .labels import LabelSet, default_labels, read_label_file
from .preprocess import Crop, Preprocessing

_tokens = itertools.count()


@dataclass(eq=False)
class AuditModel:
    """A loaded classifier: the module (eval mode) and everything needed to feed and read it."""

    module: nn.Module
    name: str
    family: str  # vit | windowed | transformer | cnn (see vitaudit.anatomy)
    labels: list[str]
    data_config: dict[str, Any]
    device: torch.device
    weights: str = "random init"
    checkpoint: str | None = None  # the weights file: a given checkpoint, or where pretrained weights came from
    checkpoint_sha256: str | None = None
    target_layer: str | None = None  # module path for CAM methods; None: found automatically
    crop: Crop = "resize"
    key: str = field(default_factory=lambda: f"m{next(_tokens)}")  # identity for the cache

    anatomy: Anatomy | None = None  # how to read it; None: looked up from the module

    def __post_init__(self) -> None:
        if self.anatomy is None:
            self.anatomy = anatomy_of(self.module)
        self.labelset = LabelSet(self.labels)
        self.preprocessing = Preprocessing.from_data_config(self.data_config, self.crop)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def label_index(self, label: str | int) -> int:
        """Class index of a label (full name, synonym or index); LabelError if none."""
        return self.labelset.index(label)

    def describe(self) -> str:
        return f"{self.name} ({self.family}, {self.weights}, {self.device})"

    @property
    def kind(self) -> str:
        """What the model is, in words ("a windowed-attention transformer with no class token")."""
        return self.anatomy.kind  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"AuditModel({self.describe()})"


def device_problem(device: str | torch.device | None) -> str | None:
    """Why ``device`` cannot be used on this machine (one line), or None when it can."""
    if device in (None, "auto"):
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return (f"CUDA is not available on this machine (torch {torch.__version__} sees no CUDA device); "
                    "use cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            return f"there is no {dev}: this machine has {count} CUDA device{'s' if count != 1 else ''}"
    return None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when present, else CPU. A device this machine lacks is a ModelError."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    problem = device_problem(device)
    if problem is not None:
        raise registry.ModelError(f"device {device!r}: {problem}")
    return torch.device(device)


def load_model(
    spec: str,
    *,
    pretrained: bool | None = None,
    checkpoint: str | Path | None = None,
    num_classes: int | None = None,
    labels: Sequence[str] | str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    target_layer: str | None = None,
    crop: Crop = "resize",
    model_kwargs: dict[str, Any] | None = None,
) -> AuditModel:
    """Load a classifier by spec (timm name, ``torchvision:NAME``, ``fixture:NAME``, ...).

    ``pretrained=None`` keeps each source's default: a fixture's trained weights, random
    init for timm/torchvision (as ``timm.create_model``). ``checkpoint`` loads a local
    ``.safetensors`` or state-dict file instead of pretrained weights. Random init is
    deterministic for a given ``seed``. ``labels`` is a list or a text file, one per line.
    ``model_kwargs`` go to the constructor (e.g. timm's ``img_size``, ``depth``).
    """
    if checkpoint is not None and pretrained:
        raise registry.ModelError("pass either pretrained=True or checkpoint=..., not both")
    request = registry.LoadRequest(
        pretrained=False if checkpoint is not None else pretrained,
        num_classes=num_classes,
        model_kwargs=tuple(sorted((model_kwargs or {}).items())),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = registry.build(spec, request)
    module = built.module
    weights = built.weights
    sha = sha256_file(built.weights_file) if built.weights_file else None
    if checkpoint is not None:
        load_into(module, read_state_dict(checkpoint), str(checkpoint))
        sha = sha256_file(checkpoint)
        weights = f"checkpoint {Path(checkpoint).name}"
    module.eval()
    dev = resolve_device(device)
    module.to(dev)

    n = _num_classes(module)
    if labels is not None:
        names = read_label_file(labels) if isinstance(labels, (str, Path)) else [str(x) for x in labels]
        if len(names) != n:
            raise registry.ModelError(f"{len(names)} labels given but {spec} has {n} classes")
    elif built.labels is not None and len(built.labels) == n:
        names = built.labels
    else:
        names = default_labels(n, built.imagenet_subset)
    anatomy = anatomy_of(module)
    return AuditModel(
        module=module,
        name=spec,
        family=anatomy.family,
        anatomy=anatomy,
        labels=list(names),
        data_config=dict(built.data_config),
        device=dev,
        weights=weights,
        checkpoint=str(checkpoint) if checkpoint is not None else built.weights_file,
        checkpoint_sha256=sha,
        target_layer=target_layer,
        crop=crop,
    )


def family_of(spec: str, model_kwargs: dict[str, Any] | None = None) -> str:
    """A spec's family ("vit"/"cnn") without its weights: the network built on the meta device.

    For the report when pretrained weights are missing; ``"?"`` when even that cannot be built.
    """
    request = registry.LoadRequest(pretrained=False, num_classes=None,
                                   model_kwargs=tuple(sorted((model_kwargs or {}).items())))
    try:
        with torch.device("meta"):
            return anatomy_of(registry.build(spec, request).module).family
    except Exception:  # the load itself has already said what is wrong
        return "?"


def _num_classes(module: nn.Module) -> int:
    n = getattr(module, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    if n == 0:
        raise registry.ModelError("this model has no classifier head (num_classes=0); pass num_classes=N")
    last = None
    for m in module.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise registry.ModelError("cannot tell how many classes this model has (no num_classes, no Linear head)")
    return int(last.out_features)
