"""Engine behaviour: one forward per batch, the cache, targets, geometry, no-signal maps."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import vitaudit
from vitaudit.cache import ExplanationCache
from vitaudit.engine import explain_batch, predict
from vitaudit.models import AuditModel


class ForwardCounter:
    def __init__(self, module):
        self.n = 0
        self.handle = module.register_forward_pre_hook(self._count)

    def _count(self, *args):
        self.n += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_one_forward_per_batch_for_all_methods(tiny_vit, noise_images):
    cache = ExplanationCache()
    with ForwardCounter(tiny_vit.module) as count:
        out = explain_batch(tiny_vit, noise_images, ["attention", "rollout", "gradcam", "layercam"],
                            batch_size=2, cache=cache)
    assert count.n == 3  # 5 images in batches of 2
    assert len(out) == 5 and all(len(o) == 4 for o in out)


def test_cache_means_no_image_runs_twice(small_cnn, noise_images, tmp_path):
    cache = ExplanationCache()
    explain_batch(small_cnn, noise_images[:2], ["gradcam"], cache=cache)
    with ForwardCounter(small_cnn.module) as count:
        explain_batch(small_cnn, noise_images[:2], ["gradcam"], cache=cache)
        predict(small_cnn, noise_images[:2], cache=cache)
        # The same pixels through a PNG file are the same image.
        path = tmp_path / "img.png"
        cv2.imwrite(str(path), noise_images[0][:, :, ::-1])
        vitaudit.explain(small_cnn, path, "gradcam", cache=cache)
        # Asking for the top-1 class by name hits the same entry.
        top1 = vitaudit.explain(small_cnn, noise_images[0], "gradcam", cache=cache).target
        vitaudit.explain(small_cnn, noise_images[0], "gradcam", target=top1, cache=cache)
    assert count.n == 0
    with ForwardCounter(small_cnn.module) as count:
        vitaudit.explain(small_cnn, noise_images[0], "hirescam", cache=cache)  # a new method: one pass
    assert count.n == 1


def test_cache_keeps_small_entries_and_respects_its_bound(tiny_vit, noise_images):
    cache = ExplanationCache(max_bytes=10_000)
    explain_batch(tiny_vit, noise_images, ["attention", "rollout"], cache=cache)
    assert cache.nbytes <= 10_000 or len(cache) == 1
    entry_cache = ExplanationCache()
    explain_batch(tiny_vit, noise_images[:1], ["attention", "rollout"], cache=entry_cache)
    # probs + two 8x8 maps + float16 CLS rows (3 layers x 3 heads x 8 x 8): a few KB, no N x N matrices.
    assert entry_cache.nbytes < 8_000


def test_targets_by_name_index_and_default(small_cnn, noise_images):
    e_top = vitaudit.explain(small_cnn, noise_images[1], "gradcam")
    assert e_top.target == int(np.argmax(e_top.probs))
    e3 = vitaudit.explain(small_cnn, noise_images[1], "gradcam", target="class_3")
    e3b = vitaudit.explain(small_cnn, noise_images[1], "gradcam", target=3)
    assert e3.target == e3b.target == 3
    np.testing.assert_array_equal(e3.raw, e3b.raw)
    if e_top.target != 3:
        assert not np.allclose(e3.raw, e_top.raw)
    with pytest.raises(vitaudit.LabelError, match="close matches"):
        vitaudit.explain(small_cnn, noise_images[1], "gradcam", target="clas_3")


def test_heatmap_is_on_the_original_image(small_cnn, noise_images):
    img = noise_images[2]
    e = vitaudit.explain(small_cnn, img, "gradcam")
    assert e.heatmap.shape == img.shape[:2] and e.heatmap.dtype == np.float32
    assert np.nanmin(e.heatmap) >= 0 and np.nanmax(e.heatmap) <= 1
    assert not np.isnan(e.heatmap).any()
    # The resize geometry is cv2.resize's half-pixel convention.
    expected = cv2.resize(e.grid, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(e.heatmap, np.clip(expected, 0, 1), atol=1e-5)
    assert [t[1] for t in e.topk(3)] == list(np.argsort(-e.probs)[:3])


def test_center_crop_marks_unseen_pixels_nan(fresh):
    model = fresh("SMALL_CNN", crop="center")
    model.data_config["crop_pct"] = 1.0
    model.__post_init__()
    img = np.random.default_rng(3).integers(0, 255, (100, 200, 3), dtype=np.uint8)
    e = vitaudit.explain(model, img, "gradcam")
    hm = e.heatmap
    # Short side 100 -> input 224 covers the central 100 x 100 square.
    assert np.isnan(hm[:, :50]).all() and np.isnan(hm[:, 150:]).all()
    assert np.isfinite(hm[:, 50:150]).all()


class ZeroHead(nn.Module):
    """A CNN whose class scores ignore the features: every gradient map is zero."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)
        nn.init.zeros_(self.fc.weight)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def test_map_without_signal_is_zeros_and_flagged_never_nan():
    module = ZeroHead().eval()
    cfg = {"input_size": (3, 16, 16), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bilinear", "crop_pct": 1.0}
    model = AuditModel(module=module, name="zero-head", family="cnn", labels=["a", "b", "c"], data_config=cfg,
                       device=torch.device("cpu"))
    e = vitaudit.explain(model, np.full((10, 12, 3), 128, np.uint8), "gradcam")
    assert e.no_signal
    assert np.array_equal(e.heatmap, np.zeros((10, 12), np.float32))


def test_unknown_method_suggests(small_cnn):
    with pytest.raises(vitaudit.ExplainerError, match="did you mean gradcam"):
        vitaudit.explain(small_cnn, np.zeros((8, 8, 3), np.uint8), "gradcan")
    with pytest.raises(vitaudit.ExplainerError, match="no option 'fusion'"):
        vitaudit.explain(small_cnn, np.zeros((8, 8, 3), np.uint8), "gradcam(fusion='max')")


def test_bad_rollout_options_are_refused(tiny_vit):
    with pytest.raises(vitaudit.ExplainerError, match="head_fusion"):
        vitaudit.explain(tiny_vit, np.zeros((8, 8, 3), np.uint8), "rollout(head_fusion='median')")
    with pytest.raises(vitaudit.ExplainerError, match="discard_ratio"):
        vitaudit.explain(tiny_vit, np.zeros((8, 8, 3), np.uint8), "rollout(discard_ratio=1.5)")


def test_random_init_is_deterministic_per_seed(fresh):
    a, b, c = fresh("SMALL_CNN"), fresh("SMALL_CNN"), fresh("SMALL_CNN", seed=1)
    sa, sb, sc = a.module.state_dict(), b.module.state_dict(), c.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    state = torch.random.get_rng_state()
    fresh("SMALL_CNN")
    assert torch.equal(state, torch.random.get_rng_state()), "loading must not disturb the global RNG"


def test_models_with_one_input_transform_share_each_images_tensor(tiny_vit, small_cnn, noise_images, monkeypatch):
    """run_batch with a shared ``prepared`` dict (the dataset pass's) preprocesses each image once
    per distinct transform, and every probability and map is bitwise what it is without."""
    from vitaudit.engine import Request, resolve_method, run_batch
    from vitaudit.images import load_image
    from vitaudit.preprocess import Preprocessing

    images = [load_image(im) for im in noise_images]
    reqs = {id(tiny_vit): [Request(*resolve_method(tiny_vit, "rollout"), None)],
            id(small_cnn): [Request(*resolve_method(small_cnn, "gradcam"), None)]}
    alone = {id(m): run_batch(m, images, [reqs[id(m)]] * len(images)) for m in (tiny_vit, small_cnn)}
    monkeypatch.setattr(small_cnn, "preprocessing", tiny_vit.preprocessing)  # one transform for both
    alone[id(small_cnn)] = run_batch(small_cnn, images, [reqs[id(small_cnn)]] * len(images))
    calls = []
    real = Preprocessing.__call__
    monkeypatch.setattr(Preprocessing, "__call__", lambda self, im: calls.append(im) or real(self, im))
    prepared: dict = {}
    shared = {id(m): run_batch(m, images, [reqs[id(m)]] * len(images), prepared=prepared) for m in (tiny_vit, small_cnn)}
    assert len(calls) == len(images)
    for key in alone:
        for a, b in zip(alone[key], shared[key]):
            assert np.array_equal(a.probs, b.probs) and a.geometry == b.geometry
            assert a.maps.keys() == b.maps.keys()
            assert all(np.array_equal(a.maps[k], b.maps[k]) for k in a.maps)
