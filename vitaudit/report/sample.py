"""A realistic synthetic :class:`~vitaudit.results.RunResults` built from scikit-image's photos.

Used by the report's tests and benchmark, and to preview the design without running models:
``python -m vitaudit.report.sample reports/sample.html``. The photos are real (chelsea, coffee,
astronaut, rocket, at their real sizes); the explanation maps are smooth blobs on the named
region plus noise, with the sides a centre-cropping ViT never sees set to NaN; every picture
goes through :mod:`.visuals` exactly as the plugin does.
"""
from __future__ import annotations

import functools
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import skimage.data

from vitaudit.results import (
    AggregateView, ClassRow, Example, ExpectationResult, ImageView, ModelInfo, ModelView, Panel, Prediction, RunResults,
)

from . import visuals
from .aggregates import MAX_BEST, MAX_WORST, histogram

#: (photo, region name, box x0, y0, x1, y1 in px, top-5 labels)
PHOTOS: list[tuple[str, str, tuple[int, int, int, int], list[str]]] = [
    ("chelsea", "face", (145, 20, 335, 215), ["tabby cat", "tiger cat", "Egyptian cat", "lynx", "Persian cat"]),
    ("coffee", "cup", (90, 30, 520, 330), ["espresso", "cup", "coffee mug", "eggnog", "consommé"]),
    ("astronaut", "face", (165, 40, 290, 200), ["suit", "military uniform", "space shuttle", "bulletproof vest", "crash helmet"]),
    ("rocket", "rocket", (245, 20, 365, 360), ["missile", "projectile", "space shuttle", "obelisk", "fountain"]),
]
FILES = ["audits/pets.yaml", "audits/kitchen.yaml", "audits/space.yaml", "audits/vehicles.yaml", "audits/mixed.yaml"]
#: Default picture settings (what the plugin is advised to use; see the benchmark).
CARD = {"max_side": 384, "fmt": "jpeg", "quality": 80}
GRID = {"max_side": None, "fmt": "png"}
#: Worst/best images of aggregate cards: 9 per card, so smaller than single-image cards.
EXAMPLE = {"max_side": 192, "fmt": "jpeg", "quality": 75}


@dataclass
class _Photo:
    key: str
    rgb: np.ndarray
    region: str
    mask: np.ndarray
    labels: list[str]


def _photo(i: int, rng: np.random.Generator) -> _Photo:
    """The i-th image: a photo, flipped and cropped a little differently each time round."""
    name, region, (x0, y0, x1, y1), labels = PHOTOS[i % len(PHOTOS)]
    rgb = getattr(skimage.data, name)()[:, :, :3]
    mask = np.zeros(rgb.shape[:2], bool)
    mask[y0:y1, x0:x1] = True
    if i >= len(PHOTOS):
        h, w = rgb.shape[:2]
        dy, dx = int(rng.integers(0, h // 10 + 1)), int(rng.integers(0, w // 10 + 1))
        rgb, mask = rgb[dy:, dx:], mask[dy:, dx:]
        if i // len(PHOTOS) % 2:
            rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    return _Photo(f"{name}_{i:03d}", np.ascontiguousarray(rgb), region, np.ascontiguousarray(mask), labels)


def _heatmap(mask: np.ndarray, rng: np.random.Generator, focus: float, vit: bool) -> np.ndarray:
    """A smooth map peaking on the region (``focus`` in [0, 1]); NaN outside a ViT's centre crop."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.mean(), xs.mean()) if len(ys) else (h / 2, w / 2)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    s = 0.2 * max(h, w)
    blob = np.exp(-(((yy - cy) ** 2) + ((xx - cx) ** 2)) / (2 * s * s))
    small = rng.random((max(2, h // 32), max(2, w // 32))).astype(np.float32)
    noise = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    m = focus * blob + (1 - focus) * noise
    m = (m - m.min()) / max(float(m.max() - m.min()), 1e-6)
    if vit and w != h:  # centre crop to a square: the sides were never seen
        side = min(h, w)
        if w > h:
            m[:, : (w - side) // 2] = np.nan
            m[:, (w + side) // 2 :] = np.nan
        else:
            m[: (h - side) // 2] = np.nan
            m[(h + side) // 2 :] = np.nan
    return m.astype(np.float32)


def _stats(m: np.ndarray) -> dict[str, Any]:
    """The keys ``vitaudit.metrics.map_stats`` produces (peak as an [x, y] list)."""
    finite = m[np.isfinite(m)]
    row, col = np.unravel_index(int(np.nanargmax(m)), m.shape)
    p = finite / finite.sum()
    return {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean()),
            "std": float(finite.std()), "entropy": float(-(p[p > 0] * np.log2(p[p > 0])).sum()),
            "peak": [int(col), int(row)], "no_signal": False, "nan_fraction": float(1 - finite.size / m.size)}


def _topk(labels: list[str], rng: np.random.Generator) -> list[Prediction]:
    p = np.sort(rng.dirichlet(np.full(len(labels), 0.6)))[::-1]
    return [Prediction(label=l, index=int(rng.integers(0, 1000)), prob=float(q)) for l, q in zip(labels, p)]


def sample_run(
    n_images: int = 6,
    per_image: int = 10,
    *,
    layer_grids: int = 2,
    seed: int = 0,
    card: dict[str, Any] | None = None,
    encode: Callable[..., str] | None = None,
    dataset_images: int = 0,
) -> RunResults:
    """A run of ``n_images x per_image`` expectations over 5 audit files, 3 model views per image.

    ``card`` overrides the encoding settings of card/strip pictures (:data:`CARD`); ``encode``
    replaces :func:`.visuals.encode` (the benchmark times it). About 1 expectation in 8 fails;
    one errors, one is skipped, one xfails, one xpasses (when there are enough of them).
    ``dataset_images`` > 0 appends :func:`dataset_results` over a dataset of that many images.
    """
    rng = np.random.default_rng(seed)
    enc = encode or visuals.encode
    card = {**CARD, **(card or {})}
    results: list[ExpectationResult] = []
    images: list[ImageView] = []
    n_total = n_images * per_image
    special = {3: "error", 7: "skipped", 11: "xfailed", 15: "xpassed"}
    for i in range(n_images):
        ph = _photo(i, rng)
        file = FILES[i % len(FILES)]
        original = enc(ph.rgb, **card)
        maps = {
            ("vit", "attention"): _heatmap(ph.mask, rng, 0.75, vit=True),
            ("vit", "rollout"): _heatmap(ph.mask, rng, 0.6, vit=True),
            ("resnet", "gradcam"): _heatmap(ph.mask, rng, 0.85, vit=False),
        }
        overlays = {k: enc(visuals.overlay(ph.rgb, m), **card) for k, m in maps.items()}
        tops = {"vit": _topk(ph.labels, rng), "resnet": _topk(ph.labels, rng)}
        views = [ModelView(model=mk, method=meth, top1=tops[mk][0], overlay=overlays[(mk, meth)]) for mk, meth in maps]
        if i < layer_grids:
            att = np.stack([cv2.GaussianBlur(rng.random((14, 14)).astype(np.float32), (0, 0), 1.5) for _ in range(144)])
            views[0].layer_grid = enc(visuals.layer_head_mosaic(att.reshape(12, 12, 14, 14)), **GRID)
            views[0].layer_grid_shape = (12, 12)
        images.append(ImageView(file=file, image=ph.key, uri=original, views=views))
        for j in range(per_image):
            n = len(results)
            outcome = special.get(n) if n_total > 16 else None
            fail = outcome is None and rng.random() < 0.13
            results.append(_expectation(j, i, ph, file, maps, overlays, tops, rng, enc, card, original,
                                        outcome or ("failed" if fail else "passed")))
    if dataset_images > 0:
        results += dataset_results(dataset_images, seed=seed, encode=enc)
    env = {"vitaudit": "0.1.0", "python": platform.python_version(), "torch": "2.14.1", "timm": "1.0.20",
           "grad-cam": "1.5.7", "numpy": np.__version__, "device": "cpu", "platform": platform.platform()}
    models = [ModelInfo(key=f"{f}::{k}", spec=spec, family=fam, checkpoint=ck, checkpoint_sha256=sha, device="cpu")
              for f in FILES[: max(1, min(n_images, len(FILES)))]
              for k, spec, fam, ck, sha in [
                  ("vit", "timm:vit_base_patch16_224.augreg2_in21k_ft_in1k", "vit", "fixtures/vit_b16.safetensors", "3f1c" + "a7" * 30),
                  ("resnet", "torchvision:resnet50", "cnn", None, None)]]
    return RunResults(started_at="2025-11-26T10:12:03+00:00", duration=float(12.0 + 0.21 * n_total),
                      command="pytest audits/ -n 2 --vitaudit-html reports/audit.html",
                      environment=env, models=models, results=results, images=images)


def _expectation(j, i, ph, file, maps, overlays, tops, rng, enc, card, original, outcome) -> ExpectationResult:
    """The j-th expectation of image i, cycling through the kinds an audit file has."""
    line = 10 + 12 * (i // len(FILES)) + j
    base = dict(nodeid=f"{file}::{ph.key}::{j}", file=file, line=line, image=ph.key, outcome=outcome,
                duration=float(rng.uniform(0.02, 0.4)), image_uri=original)
    kind = ["prediction", "prediction", "localisation", "localisation", "localisation",
            "comparison", "baseline", "faithfulness", "sanity", "localisation"][j % 10]
    model, method = [("vit", None), ("resnet", None), ("vit", "rollout"), ("resnet", "gradcam"), ("vit", "attention"),
                     ("vit", "rollout"), ("vit", "rollout"), ("resnet", "gradcam"), ("vit", "attention"),
                     ("resnet", "gradcam")][j % 10]
    if outcome == "error":
        return ExpectationResult(**base, text=f"{ph.region} of {model}.{method or 'attention'} covers the subject",
                                 kind="error", models=[model], message="RuntimeError: CUDA out of memory\n  at vitaudit/explain.py:88")
    if outcome == "skipped":
        return ExpectationResult(**base, text=f"{model}.{method} matches its baseline", kind="baseline",
                                 models=[model], methods=[method or "rollout"], message="no baseline recorded yet (run with --vitaudit-update-baselines)")
    if kind == "prediction":
        want = ph.labels[0]
        top = tops[model]
        ok = outcome in ("passed", "xpassed")
        return ExpectationResult(**base, text=f"{ph.key}: top-1 of {model} is {want!r}", kind=kind, models=[model],
                                 metric="top1", value=top[0].prob, op=">=", threshold=0.2 if ok else 0.9, topk=top,
                                 panels=[Panel("prediction", overlays[(model, "attention" if model == "vit" else "gradcam")])],
                                 message="" if ok else f"top-1 probability {top[0].prob:.2f} is below 0.9")
    m = maps[(model, method)]
    value = float(np.clip(rng.normal(0.62, 0.12), 0.05, 0.98))
    threshold: float | list[float] = 0.5
    op = ">="
    if kind == "localisation" and j % 10 == 9:
        op, threshold = "between", [0.2, 0.8]
    passes = outcome in ("passed", "xpassed")
    if op == ">=" and passes != (value >= 0.5):
        value = 0.5 + (0.5 - value) if value != 0.5 else 0.45
        value = min(max(value, 0.01), 0.99)
    if op == "between" and not passes:
        value = 0.9
    msg = "" if passes else f"{kind} metric of {model}.{method} is {value:.3f}, expected {op} {threshold}"
    # As the plugin does: one overlay per map, the region's outline as a layer over it.
    h, w = ph.rgb.shape[:2]
    f = min(1.0, (card.get("max_side") or max(h, w)) / max(h, w))
    small_hw = (max(1, round(h * f)), max(1, round(w * f)))
    panels = [Panel(f"{model} · {method}", overlays[(model, method)], caption=f"outline: {ph.region}",
                    outline=visuals.outline_layer(ph.mask, small_hw))]
    if kind == "comparison":
        panels.append(Panel("resnet · gradcam", overlays[("resnet", "gradcam")]))
    if kind == "baseline":
        old = _heatmap(ph.mask, rng, 0.6, vit=True)
        panels = [Panel("baseline", enc(visuals.overlay(ph.rgb, old), **card)),
                  Panel("current", overlays[(model, method)]),
                  Panel("difference", enc(visuals.diff_image(old, m), **card), caption="red: higher now")]
    if kind == "sanity":
        rand = _heatmap(np.zeros_like(ph.mask), rng, 0.0, vit=True)
        panels.append(Panel("randomised weights", enc(visuals.overlay(ph.rgb, rand), **card)))
    return ExpectationResult(
        **base, text=f"{kind}: {model}.{method} on {ph.region} {op} {threshold}", kind=kind,
        models=[model] + (["resnet"] if kind == "comparison" else []), methods=[method] + (["gradcam"] if kind == "comparison" else []),
        metric={"localisation": "attention_mass", "comparison": "iou_top20", "baseline": "ssim",
                "faithfulness": "deletion_auc", "sanity": "rank_correlation"}[kind],
        region=ph.region, op=op, threshold=threshold, value=value, map_stats=_stats(m), panels=panels, message=msg)


#: The sample dataset's classes: each is drawn with one of the photos (cat, coffee, astronaut, rocket).
DATASET_CLASSES = ("cat", "coffee", "astronaut", "rocket")
DATASET_FILE = "audits/datasets.yaml"

#: (line, text, kind, aggregate, model, method, metric, op, threshold, per-image op, per-image threshold,
#:  per class, beta a/b of the per-image values per class)
_AGGREGATES: list[tuple[Any, ...]] = [
    (8, "scenes: vit accuracy > 0.95", "prediction", "accuracy", "vit", None, "top1", ">", 0.95, "is", None, False, None),
    (9, "scenes: mean vit.attention mass in object > 0.5", "localisation", "mean", "vit", "attention", "mass_in",
     ">", 0.5, None, None, False, [(6, 4), (5, 5), (4, 6), (7, 3)]),
    (10, "scenes: vit.rollout pointing game hits object for 80% of images", "localisation", "share", "vit", "rollout",
     "pointing_game", ">=", 0.8, "hits", None, False, None),
    (11, "scenes: resnet.gradcam mass in object > 0.3 for 90% of images", "localisation", "share", "resnet", "gradcam",
     "mass_in", ">=", 0.9, ">", 0.3, False, [(5, 3), (4, 4), (3, 5), (6, 2)]),
    (12, "scenes: agreement(vit.rollout, resnet.gradcam) > 0.3 for 75% of images", "comparison", "share", "vit", "rollout",
     "agreement", ">=", 0.75, ">", 0.3, False, [(3, 4), (3, 4), (3, 4), (3, 4)]),
    (13, "scenes: vit.attention mass in object > 0.3 for 80% of images per class", "localisation", "share", "vit",
     "attention", "mass_in", ">=", 0.8, ">", 0.3, True, [(6, 3), (5, 4), (2, 5), (7, 2)]),
]


@functools.lru_cache(maxsize=2)
def _example_photos(k: int) -> tuple[_Photo, ...]:
    """The photos of the sample dataset's classes, at the size examples are shown (maps are made
    at that size too, as the plugin draws examples from maps resized to the picture)."""
    out = []
    for j in range(k):
        ph = _photo(j, np.random.default_rng(j))
        h, w = ph.rgb.shape[:2]
        f = min(1.0, EXAMPLE["max_side"] / max(h, w))  # type: ignore[operator]
        size = (max(1, round(w * f)), max(1, round(h * f)))
        rgb = cv2.resize(ph.rgb, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(ph.mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        out.append(_Photo(ph.key, rgb, ph.region, mask, ph.labels))
    return tuple(out)


def _check(op: str | None, threshold: Any, v: float) -> bool:
    return {">": v > threshold, ">=": v >= threshold, "<": v < threshold, "<=": v <= threshold}.get(op or "", v >= 0.5)


def dataset_results(
    n_images: int = 10_000, *, seed: int = 0, encode: Callable[..., str] | None = None,
    file: str = DATASET_FILE, dataset: str = "scenes",
) -> list[ExpectationResult]:
    """Six aggregate expectations over a labelled ``n_images`` dataset, as the plugin reports them.

    Accuracy, a mean, a pointing-game share, a Grad-CAM share, an agreement share, and one share
    ``per class`` (one result per class, each with the per-class table). Per-image values are
    drawn per class from Beta distributions; the worst 6 and best 3 of each card are overlays
    of the photos with the region outlined (:data:`EXAMPLE` settings), shared between cards
    that show the same image's map, as the plugin's are.
    """
    rng = np.random.default_rng(seed + 1)
    enc = encode or visuals.encode
    k = len(DATASET_CLASSES)
    labels = [DATASET_CLASSES[i % k] for i in range(n_images)]
    paths = [f"data/{dataset}/{labels[i]}/{labels[i]}_{i:05d}.png" for i in range(n_images)]
    photos = _example_photos(k)
    overlays: dict[tuple[int, str, str], tuple[str, str]] = {}

    def picture(i: int, model: str, method: str) -> Panel:
        if (i, model, method) not in overlays:
            ph = photos[i % k]
            m = _heatmap(ph.mask, np.random.default_rng(i), 0.7, vit=model == "vit")
            overlays[(i, model, method)] = (enc(visuals.overlay(ph.rgb, m), **EXAMPLE),
                                            visuals.outline_layer(ph.mask, ph.rgb.shape[:2]))
        uri, outline = overlays[(i, model, method)]
        return Panel(f"{model} · {method}", uri, caption=f"outline: {photos[i % k].region}", outline=outline)

    results: list[ExpectationResult] = []
    for line, text, kind, agg, model, method, metric, op, thr, pop, pthr, per_class, beta in _AGGREGATES:
        if beta is None:  # accuracy / pointing game: a hit (1) or a miss (0) per image
            values = (rng.random(n_images) < np.array([0.97, 0.9, 0.8, 0.93])[np.arange(n_images) % k]).astype(float)
        else:
            ab = np.array(beta, float)[np.arange(n_images) % k]
            values = rng.beta(ab[:, 0], ab[:, 1])
        passed = values >= 0.5 if pop in ("is", "hits") else (values > pthr if pop else None)
        groups: list[str | None] = list(DATASET_CLASSES) if per_class else [None]
        rows = []
        for g in DATASET_CLASSES:
            idx = np.flatnonzero(np.array(labels) == g)
            v = float(values[idx].mean()) if agg != "share" else float(passed[idx].mean())  # type: ignore[index]
            rows.append(ClassRow(group=g, n_images=len(idx), value=v,
                                 share_passing=float(passed[idx].mean()) if passed is not None else None,  # type: ignore[index]
                                 passed=_check(op, thr, v)))
        for g in groups:
            idx = np.arange(n_images) if g is None else np.flatnonzero(np.array(labels) == g)
            vals = values[idx]
            ok = passed[idx] if passed is not None else None
            value = float(ok.mean()) if agg == "share" else float(vals.mean())  # type: ignore[union-attr]
            outcome = "passed" if _check(op, thr, value) else "failed"
            order = np.argsort(vals, kind="stable")
            edges, counts = histogram(vals)
            examples = [Example(image=paths[int(idx[j])], value=float(vals[j]), passed=None if ok is None else bool(ok[j]),
                                role=role, panels=[picture(int(idx[j]), model, method or "attention")], label=labels[int(idx[j])])
                        for role, sel in (("worst", order[:MAX_WORST]), ("best", order[::-1][:MAX_BEST])) for j in sel]
            worst = ", ".join(f"{e.image} ({e.value:.2f})" for e in examples[:3])
            results.append(ExpectationResult(
                nodeid=f"{file}::{dataset}::{line}" + (f"[{g}]" if g else ""), file=file, line=line, text=text,
                kind=kind, outcome=outcome, models=[model] + (["resnet"] if kind == "comparison" else []),
                methods=[m for m in (method, "gradcam" if kind == "comparison" else None) if m], metric=metric,
                region=None if kind == "prediction" else "object", op=op, threshold=thr, value=value,
                duration=float(rng.uniform(0.001, 0.01)),
                message="" if outcome == "passed" else
                f"{agg} {value:.3f} over {len(idx)} images, expected {op} {thr}; worst: {worst}",
                dataset=dataset, aggregate=agg, group=g, n_images=len(idx),
                per_image=[{"image": paths[int(i)], "value": float(values[int(i)]),
                            "passed": None if passed is None else bool(passed[int(i)])} for i in idx],
                aggregate_view=AggregateView(
                    per_image_op=pop, per_image_threshold=pthr,
                    share_passing=float(ok.mean()) if ok is not None else None,  # type: ignore[union-attr]
                    edges=edges, counts=counts, examples=examples, per_class=rows if per_class else []),
            ))
    return results


if __name__ == "__main__":  # preview: python -m vitaudit.report.sample out.html [n_images [dataset_images]]
    from .render import write_report

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/sample.html")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    d = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    print(write_report(sample_run(n, dataset_images=d), out, out.with_suffix(".json")))
