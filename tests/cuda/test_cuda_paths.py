"""The CUDA paths: run by ``benchmarks/gpu_check.sh`` on a machine with a GPU (collected only when
``VITAUDIT_CUDA_TESTS=1``; see ``tests/conftest.py``). Each compares the GPU's answer with the
plain model's on the same device, or with the CPU's within float tolerance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import vitaudit
from vitaudit.engine import Request, resolve_method, run_batch
from vitaudit.images import load_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

TINY = {
    "vit": ("vit_tiny_patch16_224", {"img_size": 64, "patch_size": 8, "depth": 3}),
    "cnn": ("resnet18", {"layers": [1, 1, 1, 1], "channels": (8, 16, 32, 64)}),
}


def _images(n: int = 6):
    rng = np.random.default_rng(0)
    return [load_image(rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)) for i in range(n)]


@pytest.mark.parametrize("family", ["vit", "cnn"])
def test_capture_leaves_cuda_logits_bitwise_equal(family: str) -> None:
    spec, kwargs = TINY[family]
    model = vitaudit.load_model(spec, num_classes=10, seed=0, device="cuda", model_kwargs=kwargs)
    images = _images()
    methods = ["attention", "rollout", "gradcam"] if family == "vit" else ["gradcam", "layercam"]
    reqs = [Request(*resolve_method(model, m), None) for m in methods]
    entries = run_batch(model, images, [reqs] * len(images))
    x = torch.stack([model.preprocessing(im)[0] for im in images]).cuda()
    with torch.no_grad():
        probs = torch.softmax(model.module(x).float(), dim=-1).cpu().numpy()
    for entry, p in zip(entries, probs):
        np.testing.assert_array_equal(entry.probs, p)


@pytest.mark.parametrize("family", ["vit", "cnn"])
def test_cuda_maps_match_the_cpu(family: str) -> None:
    spec, kwargs = TINY[family]
    images = _images(3)
    out = {}
    for device in ("cpu", "cuda"):
        model = vitaudit.load_model(spec, num_classes=10, seed=0, device=device, model_kwargs=kwargs)
        method = "rollout" if family == "vit" else "gradcam"
        out[device] = vitaudit.explain_batch(model, images, [method], cache=vitaudit.cache.ExplanationCache())
    for a, b in zip(out["cpu"], out["cuda"]):
        (ea,), (eb,) = a.values(), b.values()
        np.testing.assert_allclose(ea.probs, eb.probs, atol=1e-4)
        np.testing.assert_allclose(ea.grid, eb.grid, atol=2e-3)


def test_dataset_audit_on_cuda(pytester: pytest.Pytester) -> None:
    """The dataset pass with pinned memory and non-blocking copies gives the CPU's verdicts."""
    from pathlib import Path

    scenes = Path(__file__).resolve().parents[2] / "audits" / "datasets" / "scenes"
    audit = f"""
models:
  vit: {{name: "fixture:vit-scenes"}}
  cnn: {{name: "fixture:resnet-scenes"}}
datasets:
  scenes:
    folder: {scenes}/clean
    labels: folders
    regions:
      object: {{mask: "{scenes}/masks/{{stem}}.png"}}
expect:
  - scenes: vit accuracy > 0.9
  - scenes: mean vit.attention mass in object > 0.6
  - scenes: cnn.gradcam pointing game hits object for 80% of images
"""
    (pytester.path / "audit_cuda.yaml").write_text(audit)
    values = {}
    for device in ("cpu", "cuda"):
        result = pytester.runpytest("-p", "no:cacheprovider", "-q", f"--audit-device={device}",
                                    f"--audit-report=r_{device}/audit.html")
        result.assert_outcomes(passed=3)
        import json

        doc = json.loads((pytester.path / f"r_{device}" / "audit.json").read_text())
        values[device] = [r["value"] for r in doc["expectations"]]
    np.testing.assert_allclose(values["cpu"], values["cuda"], atol=2e-3)
