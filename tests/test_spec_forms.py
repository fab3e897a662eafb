"""Every sentence form parses to the same Expectation as its structured twin, with the right fields."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vitaudit.spec import Expectation, MapRef, parse_audit_file

GOOD = Path(__file__).parent / "data" / "audits_good"
HEADER = f"""\
models:
  vit: {{name: vit_base_patch16_224}}
  resnet: {{name: resnet50, target_layer: layer4}}
labels:
  cat: [tabby, tiger cat, 285]
images:
  goat:
    path: {GOOD / "images" / "cutegoat.jpg"}
    regions:
      goat: {{box: [40, 60, 180, 210]}}
      head: {{box: [0.1, 0.2, 0.4, 0.5], units: fraction}}
expect:
"""

# (sentence, structured twin as a YAML flow mapping)
PAIRS = [
    ("vit top1 is tabby", "{image: goat, metric: top1_is, model: vit, label: tabby}"),
    ("vit top1 is tiger cat", "{image: goat, metric: top1_is, model: vit, label: tiger cat}"),
    ("vit top1 is 281", "{image: goat, metric: top1_is, model: vit, label: 281}"),
    ('vit top1 is "tabby, tabby cat"', '{image: goat, metric: top1_is, model: vit, label: "tabby, tabby cat"}'),
    ("vit top1 is not tabby", "{image: goat, metric: top1_is_not, model: vit, label: tabby}"),
    ("vit top1 in [ram, bighorn, ibex]", "{image: goat, metric: top1_in, model: vit, labels: [ram, bighorn, ibex]}"),
    ("vit top1 in cat", "{image: goat, metric: top1_in, model: vit, labels: cat}"),
    ("tabby in vit top5", "{image: goat, metric: in_topk, model: vit, label: tabby, k: 5}"),
    ("vit prob(tabby) > 0.3", "{image: goat, metric: prob, model: vit, label: tabby, op: '>', value: 0.3}"),
    ("vit.attention mass in goat > 0.4",
     "{image: goat, model: vit, method: attention, metric: mass_in, region: goat, op: '>', value: 0.4}"),
    ("vit.attention mass in not goat <= 0.5",
     "{image: goat, model: vit, method: attention, metric: mass_in, region: not goat, op: '<=', value: 0.5}"),
    ("resnet.gradcam pointing game hits goat",
     "{image: goat, model: resnet, method: gradcam, metric: pointing_game, region: goat}"),
    ("resnet.gradcam pointing game hits goat within 15px",
     "{image: goat, model: resnet, method: gradcam, metric: pointing_game, region: goat, op: hits, within: 15}"),
    ("resnet.gradcam pointing game misses head",
     "{image: goat, model: resnet, method: gradcam, metric: pointing_game, region: head, op: misses}"),
    ("resnet.gradcam++ energy pointing game in goat >= 0.6",
     "{image: goat, model: resnet, method: gradcam++, metric: energy_pointing_game, region: goat, op: '>=',"
     " value: 0.6}"),
    ("vit.attention iou(top 20%, goat) > 0.3",
     "{image: goat, model: vit, method: attention, metric: iou_top, region: goat, top: 20, op: '>', value: 0.3}"),
    ("vit.rollout rank accuracy in head > 0.2",
     "{image: goat, model: vit, method: rollout, metric: rank_accuracy, region: head, op: '>', value: 0.2}"),
    ("agreement(vit.rollout, resnet.gradcam) > 0.5",
     "{image: goat, metric: agreement, maps: [vit.rollout, resnet.gradcam], op: '>', value: 0.5}"),
    ("agreement(vit.rollout(head_fusion=max), resnet.gradcam for tabby) > 0.5 by ssim",
     "{image: goat, metric: agreement, maps: [{model: vit, method: rollout, method_options: {head_fusion: max}},"
     " {model: resnet, method: gradcam, target: tabby}], op: '>', value: 0.5, by: ssim}"),
    ("vit.attention baseline similarity > 0.9",
     "{image: goat, model: vit, method: attention, metric: baseline_similarity, op: '>', value: 0.9}"),
    ("vit.attention baseline similarity > 0.9 by spearman",
     "{image: goat, model: vit, method: attention, metric: baseline_similarity, op: '>', value: 0.9, by: spearman}"),
    ("vit.gradcam deletion auc < 0.3",
     "{image: goat, model: vit, method: gradcam, metric: deletion_auc, op: '<', value: 0.3}"),
    ("vit.gradcam deletion auc < 0.3 steps 50 baseline zero",
     "{image: goat, model: vit, method: gradcam, metric: deletion_auc, op: '<', value: 0.3, steps: 50,"
     " baseline: zero}"),
    ("vit.gradcam insertion auc > 0.5 with 10 steps, with a mean baseline",
     "{image: goat, model: vit, method: gradcam, metric: insertion_auc, op: '>', value: 0.5, steps: 10,"
     " baseline: mean}"),
    ("vit.gradcam sanity similarity < 0.5",
     "{image: goat, model: vit, method: gradcam, metric: sanity, op: '<', value: 0.5}"),
    ("vit.gradcam sanity similarity < 0.5 after randomizing 2 layers by pearson",
     "{image: goat, model: vit, method: gradcam, metric: sanity, op: '<', value: 0.5, layers: 2, by: pearson}"),
    ("vit.rollout(head_fusion=max, discard_ratio=0.9) mass in goat > 0.4",
     "{image: goat, model: vit, method: rollout, method_options: {discard_ratio: 0.9, head_fusion: max},"
     " metric: mass_in, region: goat, op: '>', value: 0.4}"),
    ("vit.gradcam for tabby mass in goat > 0.4",
     "{image: goat, model: vit, method: gradcam, target: tabby, metric: mass_in, region: goat, op: '>',"
     " value: 0.4}"),
    ("vit.layercam for tiger cat mass in goat > 0.4",
     "{image: goat, model: vit, method: layercam, target: tiger cat, metric: mass_in, region: goat, op: '>',"
     " value: 0.4}"),
]


def parse_items(tmp_path: Path, *items: str, header: str = HEADER):
    path = tmp_path / "audit_forms.yaml"
    path.write_text(header + "".join(f"  - {item}\n" for item in items))
    return parse_audit_file(path)


def comparable(exp: Expectation) -> Expectation:
    return replace(exp, id="", text="", line=0)


@pytest.mark.parametrize("sentence,structured", PAIRS, ids=[p[0] for p in PAIRS])
def test_sentence_equals_structured(tmp_path: Path, sentence: str, structured: str) -> None:
    spec = parse_items(tmp_path, f"goat: {sentence}", structured)
    assert spec.errors == ()
    a, b = spec.expectations
    assert comparable(a) == comparable(b)
    assert a.line == 13 and b.line == 14
    assert a.text == f"goat: {sentence}"
    assert b.text == structured


def test_every_metric_has_a_pair() -> None:
    from vitaudit.spec import METRICS

    import re
    written = set()
    for _, structured in PAIRS:
        written.add(re.search(r"metric: (\w+)", structured)[1])
    # accuracy is a dataset aggregate: its pair is in test_dataset_spec.py
    assert written == set(METRICS) - {"accuracy"}


def by_sentence(tmp_path: Path, sentence: str) -> Expectation:
    spec = parse_items(tmp_path, f"goat: {sentence}")
    assert spec.errors == ()
    (exp,) = spec.expectations
    return exp


def test_prediction_fields(tmp_path: Path) -> None:
    exp = by_sentence(tmp_path, "vit top1 in [ram, bighorn, 348]")
    assert (exp.kind, exp.metric, exp.model, exp.maps) == ("prediction", "top1_in", "vit", ())
    assert exp.labels == ("ram", "bighorn", 348)
    assert exp.op is None and exp.value is None and exp.region is None
    exp = by_sentence(tmp_path, "tabby in vit top5")
    assert (exp.metric, exp.labels, exp.k) == ("in_topk", ("tabby",), 5)
    exp = by_sentence(tmp_path, "vit prob(tabby) >= 0.25")
    assert (exp.metric, exp.op, exp.value) == ("prob", ">=", 0.25)
    assert isinstance(exp.value, float)


def test_label_groups_travel_with_the_expectation(tmp_path: Path) -> None:
    exp = by_sentence(tmp_path, "vit top1 in [cat, lynx]")
    assert exp.labels == ("cat", "lynx")
    assert exp.label_groups == (("cat", ("tabby", "tiger cat", 285)),)
    exp = by_sentence(tmp_path, "vit.gradcam for cat mass in goat > 0.1")
    assert exp.maps[0].target == "cat"
    assert exp.label_groups == (("cat", ("tabby", "tiger cat", 285)),)


def test_localisation_fields(tmp_path: Path) -> None:
    exp = by_sentence(tmp_path, "vit.attention mass in not goat < 0.3")
    assert (exp.kind, exp.metric, exp.model) == ("localisation", "mass_in", "vit")
    assert exp.maps == (MapRef("vit", "attention"),)
    assert exp.region is not None and exp.region.negate is True
    assert exp.region.region.name == "goat" and exp.region.label == "not goat"
    assert (exp.op, exp.value) == ("<", 0.3)
    exp = by_sentence(tmp_path, "resnet.gradcam pointing game misses goat within 15 px")
    assert (exp.metric, exp.op, exp.value, exp.options) == ("pointing_game", "misses", None, (("within", 15.0),))
    exp = by_sentence(tmp_path, "vit.attention iou(top 20%, goat) > 0.3")
    assert exp.options == (("top", 20.0),)


def test_map_options_and_target(tmp_path: Path) -> None:
    exp = by_sentence(tmp_path, "vit.rollout(head_fusion=max, discard_ratio=0.9) energy pointing game in goat > 0.2")
    ref = exp.maps[0]
    assert ref.options == (("discard_ratio", 0.9), ("head_fusion", "max"))
    assert ref.target is None
    assert ref.label == "vit.rollout(discard_ratio=0.9,head_fusion=max)"
    exp = by_sentence(tmp_path, 'vit.gradcam for "tabby, tabby cat" mass in goat > 0.4')
    assert exp.maps[0].target == "tabby, tabby cat"
    assert exp.maps[0].label == "vit.gradcam@tabby, tabby cat"
    exp = by_sentence(tmp_path, "vit.gradcam for 281 mass in goat > 0.4")
    assert exp.maps[0].target == 281


def test_defaults_are_filled_in(tmp_path: Path) -> None:
    exp = by_sentence(tmp_path, "agreement(vit.rollout, resnet.gradcam) > 0.5")
    assert (exp.kind, exp.model, exp.options) == ("comparison", None, (("by", "pearson"),))
    assert [m.label for m in exp.maps] == ["vit.rollout", "resnet.gradcam"]
    exp = by_sentence(tmp_path, "vit.gradcam sanity similarity < 0.5")
    assert (exp.kind, exp.options) == ("sanity", (("by", "spearman"), ("layers", 1)))
    exp = by_sentence(tmp_path, "vit.gradcam sanity similarity < 0.5 after randomising all layers")
    assert exp.option("layers") == "all"
    exp = by_sentence(tmp_path, "vit.gradcam deletion auc < 0.3")
    assert (exp.kind, exp.options) == ("faithfulness", (("baseline", "blur"), ("steps", 16)))
    exp = by_sentence(tmp_path, "vit.attention baseline similarity > 0.9")
    assert (exp.kind, exp.options) == ("baseline", (("by", "pearson"),))


def test_keywords_are_case_insensitive_names_are_not(tmp_path: Path) -> None:
    exp = by_sentence(tmp_path, "vit.attention Mass In goat > 0.4")
    assert exp.metric == "mass_in"
    spec = parse_items(tmp_path, "goat: vit.attention mass in Goat > 0.4")
    assert [e.message for e in spec.errors] == [
        "unknown region 'Goat' of image 'goat' (did you mean 'goat'?); regions: goat, head"]
