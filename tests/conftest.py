"""Shared small models and images for the test suite (random init, CPU, seconds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest_plugins = ["pytester"]

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

TINY_VIT = dict(spec="vit_tiny_patch16_224", model_kwargs={"img_size": 64, "patch_size": 8, "depth": 3})
REG_VIT = dict(spec="vit_small_patch14_reg4_dinov2", num_classes=10,
               model_kwargs={"img_size": 56, "embed_dim": 64, "depth": 2, "num_heads": 2})
DISTILLED_VIT = dict(spec="deit_tiny_distilled_patch16_224", model_kwargs={"img_size": 64, "depth": 2})
SMALL_CNN = dict(spec="resnet18", num_classes=10,
                 model_kwargs={"layers": [1, 1, 1, 1], "channels": (8, 16, 32, 64)})


def _load(cfg: dict, **extra):
    from vitaudit import load_model

    cfg = {"seed": 0, "device": "cpu", **cfg, **extra}
    return load_model(cfg.pop("spec"), **cfg)


@pytest.fixture(scope="session")
def tiny_vit():
    return _load(TINY_VIT)


def sharpen_attention(model, seed: int = 0):
    """Give a random-init ViT attention that is not flat, and prefix tokens that differ.

    Randomly initialised (DINOv2's LayerScale keeps every block's output near 0, and q, k are
    small), the register-token ViT attends uniformly to about 4e-5: a test cannot then tell
    a register token from a patch. Larger q/k weights and distinct class/register tokens
    give rows that differ from token to token (relative spread of order 1).
    """
    g = torch.Generator().manual_seed(seed)
    module = model.module
    with torch.no_grad():
        for blk in module.blocks:
            d = blk.attn.qkv.in_features
            blk.attn.qkv.weight[: 2 * d].normal_(0.0, 0.5, generator=g)  # the q and k rows
        for name in ("cls_token", "reg_token"):
            token = getattr(module, name, None)
            if token is not None:
                token.normal_(0.0, 1.0, generator=g)
    return model


@pytest.fixture(scope="session")
def reg_vit():
    return sharpen_attention(_load(REG_VIT))


@pytest.fixture(scope="session")
def distilled_vit():
    return _load(DISTILLED_VIT)


@pytest.fixture(scope="session")
def small_cnn():
    return _load(SMALL_CNN)


@pytest.fixture
def fresh(request):
    """A function-scoped copy of one of the model configs above: ``fresh("TINY_VIT")``."""
    return lambda name, **extra: _load(globals()[name], **extra)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    from skimage import data

    return data.chelsea()


@pytest.fixture(scope="session")
def noise_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(48 + 8 * i, 80 - 4 * i, 3), dtype=np.uint8) for i in range(5)]


# The CUDA paths (tests/cuda/) run on a GPU machine through benchmarks/gpu_check.sh, which sets
# VITAUDIT_CUDA_TESTS=1; the CPU suite does not collect them at all (rather than skip them).
import os as _os

collect_ignore = [] if _os.environ.get("VITAUDIT_CUDA_TESTS") == "1" else ["cuda"]
