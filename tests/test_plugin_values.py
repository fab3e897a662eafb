"""The plugin's verdicts follow the computed values, for every metric kind (issue 12).

Each value is first worked out here, independently of ``vitaudit.metrics``,
``vitaudit.faithfulness`` and ``vitaudit.audit.evaluate``: the map comes from
``vitaudit.explain`` (checked against references in its own tests), and the metric from a
few lines of numpy on that map; probabilities and faithfulness curves from the plain
``torch`` model. Then every expectation is written twice, with a threshold just on either
side of that value: one must pass, the other fail, and the value in ``audit.json`` must be
the one computed here. A plugin that ignores a region, an option or a target, or reads the
wrong map, gets at least one verdict or value wrong.

Material: the committed fixture models on a 64x64 scene (its object in the lower left),
with regions that split the image (left half, top half) and the scene's own object mask.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitaudit
import vitaudit.audit.evaluate  # noqa: F401  (imported before pytester's in-process runs, as in test_plugin)
import vitaudit.report  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SCENES = ROOT / "audits" / "images" / "scenes"
SCENE, OBJECT = SCENES / "clean_striped_0.png", SCENES / "clean_striped_0_object.png"
CNN, VIT = "fixture:resnet-scenes", "fixture:vit-scenes"
D = 0.02  # how far each threshold sits from the true value

HEAD = f"""
models:
  cnn: {{name: "{CNN}"}}
  vit: {{name: "{VIT}"}}
images:
  scene:
    path: scene.png
    regions:
      left: {{box: [0, 0, 0.5, 1], units: fraction}}
      top: {{box: [0, 0, 64, 32]}}
      object: {{mask: object.png}}
expect:
"""


# ----------------------------------------------------------------- independent values
def region_masks() -> dict[str, np.ndarray]:
    left = np.zeros((64, 64), bool)
    left[:, :32] = True
    top = np.zeros((64, 64), bool)
    top[:32, :] = True
    obj = np.asarray(Image.open(OBJECT)) != 0
    return {"left": left, "top": top, "object": obj, "not left": ~left}


def mass(hm, m):
    return hm[m].sum() / hm.sum()


def energy(hm, m):
    n = (hm - hm.min()) / (hm.max() - hm.min())
    return n[m].sum() / n.sum()


def top_set(hm, k):
    flat = hm.ravel()
    order = np.argsort(-flat, kind="stable")
    assert flat[order[k - 1]] != flat[order[k]], "a tie at the k-th value would make the expected value ambiguous"
    top = np.zeros(flat.size, bool)
    top[order[:k]] = True
    return top.reshape(hm.shape)


def iou_top(hm, m, percent):
    top = top_set(hm, int(np.floor(percent * hm.size / 100 + 0.5)))
    return (top & m).sum() / (top | m).sum()


def rank_accuracy(hm, m):
    return (top_set(hm, int(m.sum())) & m).sum() / m.sum()


def pearson(a, b):
    return np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1]


def spearman(a, b):
    from scipy.stats import rankdata

    return pearson(rankdata(a.ravel()), rankdata(b.ravel()))


def model_input(model) -> torch.Tensor:
    """The scene as the model sees it, by hand: 64x64 needs no resize; scale and normalise."""
    cfg = model.data_config
    x = np.asarray(Image.open(SCENE).convert("RGB"), np.float32) / 255.0
    x = (x - np.array(cfg["mean"], np.float32)) / np.array(cfg["std"], np.float32)
    return torch.from_numpy(x).permute(2, 0, 1).contiguous()


def probabilities(module, batch: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(module(batch).double(), dim=-1).numpy()


def curve_auc(model, saliency, target, kind, baseline, steps):
    """RISE deletion / insertion by hand: change the most salient pixels first, trapezoid AUC."""
    x = model_input(model)
    base = torch.zeros_like(x) if baseline == "zero" else x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    n = saliency.size
    order = np.argsort(-saliency.ravel(), kind="stable")
    counts = [int(np.floor(i * n / steps + 0.5)) for i in range(steps + 1)]
    images = []
    for c in counts:
        changed = np.zeros(n, bool)
        changed[order[:c]] = True
        changed = torch.from_numpy(changed.reshape(saliency.shape))
        images.append(torch.where(changed, base, x) if kind == "deletion" else torch.where(changed, x, base))
    scores = probabilities(model.module, torch.stack(images))[:, target]
    fractions = np.array(counts) / n
    return float(((scores[1:] + scores[:-1]) / 2 * np.diff(fractions)).sum())


def between(v, lo=0.05, hi=0.95):
    assert lo < v < hi, f"{v} is too close to a bound for a two-sided check"
    return float(v)


@pytest.fixture(scope="module")
def truth():
    """Everything the audit below measures, computed here."""
    from vitaudit.sanity import randomize_top_layers

    cnn, vit = (vitaudit.load_model(name, device="cpu") for name in (CNN, VIT))
    masks = region_masks()
    maps = {f"{key}.{method}": vitaudit.explain(model, str(SCENE), method)
            for key, model in (("cnn", cnn), ("vit", vit))
            for method in ("gradcam", "attention", "rollout") if not (key == "cnn" and method != "gradcam")}
    hm = {k: e.heatmap.astype(np.float64) for k, e in maps.items()}
    for h in hm.values():
        assert h.shape == (64, 64) and np.isfinite(h).all()
    t = {"maps": maps, "masks": masks, "hm": hm}

    probs = probabilities(cnn.module, model_input(cnn)[None])[0]
    order = np.argsort(-probs)
    t["labels"] = [cnn.labels[i] for i in order]  # most probable first
    t["prob"] = between(probs[order[0]], 0.05, 0.999)
    t["prob_second"] = float(probs[order[1]])

    g, a, r = hm["cnn.gradcam"], hm["vit.attention"], hm["vit.rollout"]
    # A map for another class than the top-1 (``for <class>``): the first whose map has signal.
    for idx in order[1:]:
        other = vitaudit.explain(cnn, str(SCENE), "gradcam", target=int(idx))
        if not other.no_signal:
            break
    t["other_label"] = cnn.labels[int(idx)]
    t["mass_for_other"] = between(mass(other.heatmap.astype(np.float64), masks["left"]))
    assert abs(t["mass_for_other"] - mass(g, masks["left"])) > 2 * D, "the two targets' maps must differ"
    t["mass"] = {(k, reg): between(mass(hm[k], masks[reg])) for k in hm for reg in ("left", "object", "not left")}
    t["energy"] = {(k, "object"): between(energy(hm[k], masks["object"])) for k in hm}
    t["energy"]["cnn.gradcam", "top"] = between(energy(g, masks["top"]))
    t["iou"] = between(iou_top(g, masks["object"], 20))
    t["rank"] = {k: between(rank_accuracy(hm[k], masks["object"]), 0.01, 0.99) for k in hm}
    t["pearson"] = between(pearson(g, a), -0.95)
    t["spearman"] = between(spearman(a, r), -0.95)

    # Faithfulness: the map on the 64x64 input is the map on the 64x64 image.
    t["deletion"] = between(curve_auc(cnn, g, maps["cnn.gradcam"].target, "deletion", "zero", 4))
    t["insertion"] = between(curve_auc(vit, r, maps["vit.rollout"].target, "insertion", "mean", 5))

    # Sanity: the maps of copies whose top layers are re-initialised (sanity.py has its own tests).
    cnn2, _ = randomize_top_layers(cnn, 2)
    vit3, _ = randomize_top_layers(vit, 3)
    t["sanity_cnn"] = between(spearman(g, vitaudit.explain(cnn2, str(SCENE), "gradcam",
                                                           target=maps["cnn.gradcam"].target).heatmap), -0.95)
    t["sanity_vit"] = between(spearman(a, vitaudit.explain(vit3, str(SCENE), "attention",
                                                           target=maps["vit.attention"].target).heatmap), -0.95)
    # Baseline: a stored map we write ourselves (vit.attention's, in float16) under cnn.gradcam's name.
    t["stored"] = a.astype(np.float16)
    t["baseline"] = between(pearson(g, t["stored"].astype(np.float32).astype(np.float64)), -0.95)
    return t


# ----------------------------------------------------------------- the audit
def pair(name: str, sentence: str, value: float, op: str, d: float = D) -> list[tuple[str, str, bool, float]]:
    """``sentence`` (with ``{op} {t}`` to fill) twice: threshold on the passing, then the failing side."""
    up = op in (">", ">=")
    good, bad = (value - d, value + d) if up else (value + d, value - d)
    return [(f"{name}-pass", sentence.format(op=op, t=f"{good:.6f}"), True, value),
            (f"{name}-fail", sentence.format(op=op, t=f"{bad:.6f}"), False, value)]


def peak_hits(hm: np.ndarray, m: np.ndarray) -> bool:
    maxima = hm == hm.max()
    inside, outside = bool((maxima & m).any()), bool((maxima & ~m).any())
    assert not (inside and outside), "the map's maxima straddle the region's edge: the verdict would be ambiguous"
    return inside


def write(pytester, items, name="audit_values.yaml"):
    lines = [HEAD.strip("\n")]
    for item_id, sentence, _, _ in items:
        lines += [f"  - scene: {sentence}", f"    id: {item_id}"]
    (pytester.path / name).write_text("\n".join(lines) + "\n")
    shutil.copy(SCENE, pytester.path / "scene.png")
    shutil.copy(OBJECT, pytester.path / "object.png")


def run_and_check(pytester, items, *args):
    write(pytester, items)
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    rows = {r["nodeid"].split("::")[-1]: r for r in json.loads((pytester.path / "reports" / "audit.json").read_text())["expectations"]}
    wrong = []
    for item_id, sentence, passes, value in items:
        row = rows[item_id]
        want = "passed" if passes else "failed"
        if row["outcome"] != want:
            wrong.append(f"{item_id}: '{sentence}' {row['outcome']}, expected {want} (value {row['value']!r}, true {value!r})")
        elif value is not None and not np.isclose(row["value"], value, rtol=1e-4, atol=1e-5):
            wrong.append(f"{item_id}: '{sentence}' reports {row['value']!r}, computed here {value!r}")
    assert not wrong, "\n".join(wrong)
    result.assert_outcomes(passed=sum(p for _, _, p, _ in items), failed=sum(not p for _, _, p, _ in items))
    return result


# ----------------------------------------------------------------- tests
def test_prediction_verdicts_follow_the_probabilities(pytester, truth):
    first, second, *rest = truth["labels"]
    items = pair("prob", f"cnn prob({first}) {{op}} {{t}}", truth["prob"], ">")
    items += pair("prob2", f"cnn prob({second}) {{op}} {{t}}", truth["prob_second"], "<=", d=min(D, truth["prob_second"] / 2))
    p1 = truth["prob"]
    items += [
        ("is-pass", f"cnn top1 is {first}", True, p1),
        ("is-fail", f"cnn top1 is {second}", False, p1),
        ("isnot-pass", f"cnn top1 is not {second}", True, p1),
        ("isnot-fail", f"cnn top1 is not {first}", False, p1),
        ("in-pass", f"cnn top1 in [{second}, {first}]", True, p1),
        ("in-fail", f"cnn top1 in [{', '.join([second] + rest)}]", False, p1),
        ("topk-pass", f"{second} in cnn top2", True, 2.0),
        ("topk-fail", f"{second} in cnn top1", False, 2.0),
        ("topk-last", f"{rest[-1]} in cnn top4", False, 5.0),
    ]
    result = run_and_check(pytester, items)
    out = result.stdout.str()
    assert f"failed: expected top-1 '{second}'; top-1 is '{first}' (p={p1:.3f})" in out
    assert "best rank 2" in out


def test_localisation_verdicts_follow_the_map_and_the_region(pytester, truth):
    hm, masks = truth["hm"], truth["masks"]
    items = []
    for key in ("cnn.gradcam", "vit.attention", "vit.rollout"):
        short = key.replace(".", "-")
        items += pair(f"{short}-mass-left", f"{key} mass in left {{op}} {{t}}", truth["mass"][key, "left"], ">")
        items += pair(f"{short}-mass-notleft", f"{key} mass in not left {{op}} {{t}}", truth["mass"][key, "not left"], "<")
        items += pair(f"{short}-mass-object", f"{key} mass in object {{op}} {{t}}", truth["mass"][key, "object"], ">=")
        items += pair(f"{short}-energy", f"{key} energy pointing game in object {{op}} {{t}}", truth["energy"][key, "object"], "<=")
        items += pair(f"{short}-rank", f"{key} rank accuracy in object {{op}} {{t}}", truth["rank"][key], ">",
                      d=min(D, truth["rank"][key] / 2))
        for region in ("left", "top", "object"):
            hit = peak_hits(hm[key], masks[region])
            items += [(f"{short}-hits-{region}", f"{key} pointing game hits {region}", hit, float(hit)),
                      (f"{short}-misses-{region}", f"{key} pointing game misses {region}", not hit, float(hit))]
    items += pair("for-other", f"cnn.gradcam for {truth['other_label']} mass in left {{op}} {{t}}", truth["mass_for_other"], ">")
    items += pair("energy-top", "cnn.gradcam energy pointing game in top {op} {t}", truth["energy"]["cnn.gradcam", "top"], ">")
    items += pair("iou", "cnn.gradcam iou(top 20%, object) {op} {t}", truth["iou"], ">", d=min(D, truth["iou"] / 2))
    # Counting metrics are ratios of whole numbers, so exactly the value here: each operator at the value.
    exact = truth["rank"]["cnn.gradcam"]
    for op, passes in ((">=", True), (">", False), ("<=", True), ("<", False)):
        items.append((f"exact{op.replace('>', 'gt').replace('<', 'lt').replace('=', 'e')}",
                      f"cnn.gradcam rank accuracy in object {op} {exact!r}", passes, exact))
    # Pointing game tolerance: the CNN's peak is d rows below the top half (pixel centre to centre).
    g = hm["cnn.gradcam"]
    rows = np.nonzero((g == g.max()).any(axis=1))[0]
    assert rows.min() > 32, "the peak must lie below the top half for this check"
    dist = int(rows.min()) - 31
    items += [("within-pass", f"cnn.gradcam pointing game hits top within {dist}px", True, 1.0),
              ("within-fail", f"cnn.gradcam pointing game hits top within {dist - 1}px", False, 0.0)]
    result = run_and_check(pytester, items)
    out = result.stdout.str()
    assert f"mass in 'left' = {truth['mass']['cnn.gradcam', 'left']:.3g} (expected > " in out


def test_agreement_and_baseline_verdicts_follow_the_maps(pytester, truth):
    items = pair("pearson", "agreement(cnn.gradcam, vit.attention) {op} {t}", truth["pearson"], ">")
    items += pair("spearman", "agreement(vit.attention, vit.rollout) {op} {t} by spearman", truth["spearman"], "<")
    items += pair("baseline", "cnn.gradcam baseline similarity {op} {t}", truth["baseline"], ">=")
    stored = pytester.path / "baselines" / "audit_values" / "scene" / "cnn.gradcam.npy"
    stored.parent.mkdir(parents=True)
    np.save(stored, truth["stored"])
    run_and_check(pytester, items)


def test_faithfulness_and_sanity_verdicts_follow_the_model(pytester, truth):
    items = pair("deletion", "cnn.gradcam deletion auc {op} {t} steps 4 baseline zero", truth["deletion"], "<")
    items += pair("insertion", "vit.rollout insertion auc {op} {t} with 5 steps and a mean baseline", truth["insertion"], ">")
    items += pair("sanity-cnn", "cnn.gradcam sanity similarity {op} {t} after randomizing 2 layers", truth["sanity_cnn"], "<")
    items += pair("sanity-vit", "vit.attention sanity similarity {op} {t} after randomizing 3 layers", truth["sanity_vit"], "<=")
    result = run_and_check(pytester, items)
    assert "after re-initialising fc, layer4.0 = " in result.stdout.str()
