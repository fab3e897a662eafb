"""Dataset expectations in audit files: aggregate sentences, their structured twins, ids, and
every mistake reported at its line."""
from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from vitaudit.spec import parse_audit_file

SCENES = Path(__file__).resolve().parent.parent / "audits" / "datasets" / "scenes"
HEAD = f"""\
models:
  vit: {{name: "fixture:vit-scenes"}}
  cnn: {{name: "fixture:resnet-scenes"}}
images:
  one: {{path: {SCENES}/clean/striped/00000.png, regions: {{obj: {{box: [0, 0, 8, 8]}}}}}}
datasets:
  scenes:
    folder: {SCENES}/clean
    labels: folders
    regions:
      object: {{mask: "{SCENES}/masks/{{stem}}.png"}}
  plain:
    coco: {SCENES}/coco_clean.json
expect:
"""


def parse(tmp_path: Path, items: str):
    (tmp_path / "audit_d.yaml").write_text(HEAD + textwrap.indent(textwrap.dedent(items).strip("\n") + "\n", "  "))
    return parse_audit_file(tmp_path / "audit_d.yaml")


def one(tmp_path: Path, item: str):
    spec = parse(tmp_path, item)
    assert [e.message for e in spec.errors] == []
    (exp,) = spec.expectations
    return exp


FIRST_LINE = HEAD.count("\n") + 1

PAIRS = [
    ("scenes: vit accuracy > 0.9",
     "{dataset: scenes, metric: accuracy, model: vit, op: '>', value: 0.9}",
     dict(aggregate="accuracy", share=None, op=">", value=0.9, id="vit-accuracy")),
    ("scenes: mean vit.attention mass in object > 0.5",
     "{dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.5, aggregate: mean}",
     dict(aggregate="mean", share=None, id="vit.attention-mass_in[object,mean]")),
    ("scenes: p90 vit.rollout mass in not object < 0.2",
     "{dataset: scenes, metric: mass_in, model: vit, method: rollout, region: not object, op: '<', value: 0.2, aggregate: p90}",
     dict(aggregate="p90", id="vit.rollout-mass_in[not object,p90]")),
    ("scenes: vit.attention mass in object > 0.3 for 90% of images",
     "{dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.3, share: 0.9}",
     dict(aggregate="share", share=0.9, id="vit.attention-mass_in[object,90%]")),
    ("scenes: cnn.gradcam pointing game hits object for 80% of images",
     "{dataset: scenes, metric: pointing_game, model: cnn, method: gradcam, region: object, share: 0.8}",
     dict(aggregate="share", share=0.8, op="hits")),
    ("scenes: agreement(vit.rollout, cnn.gradcam) > 0.3 for 75% of images per class",
     "{dataset: scenes, metric: agreement, maps: [vit.rollout, cnn.gradcam], op: '>', value: 0.3, share: 0.75, group: class}",
     dict(aggregate="share", share=0.75, group="class", id="agreement[vit.rollout,cnn.gradcam,75%,per_class]")),
    ("scenes: vit top1 is striped",  # no aggregate word: every image
     "{dataset: scenes, metric: top1_is, model: vit, label: striped}",
     dict(aggregate="share", share=1.0, id="vit-top1_is[striped,100%]")),
    ("scenes: vit top1 is striped for every image",
     "{dataset: scenes, metric: top1_is, model: vit, label: striped, share: 1}",
     dict(aggregate="share", share=1.0)),
    ("scenes: median vit prob(striped) >= 0.2 per class",
     "{dataset: scenes, metric: prob, model: vit, label: striped, op: '>=', value: 0.2, aggregate: median, group: class}",
     dict(aggregate="median", group="class")),
]


@pytest.mark.parametrize("sentence,structured,fields", PAIRS, ids=[p[0] for p in PAIRS])
def test_sentence_and_structured_forms_agree(tmp_path: Path, sentence: str, structured: str, fields: dict) -> None:
    a = one(tmp_path, f"- {sentence}")
    b = one(tmp_path, f"- {structured}")
    assert a.dataset == "scenes" and a.image == "scenes"
    for name, value in fields.items():
        assert getattr(a, name) == value, name
    assert replace(a, text="") == replace(b, text="")


def test_dataset_region_is_an_annotation_of_the_dataset(tmp_path: Path) -> None:
    exp = one(tmp_path, "- scenes: mean vit.attention mass in object > 0.5")
    assert exp.region.region.kind == "annotation" and exp.region.region.name == "object"
    coco = one(tmp_path, "- plain: mean vit.attention mass in object > 0.5")
    assert coco.dataset == "plain"


ERRORS = [
    ("- scenes: mean cnn.gradcam pointing game hits object",
     "pointing_game has a yes/no result per image, so 'mean' does not apply; write '... for 90% of images' "
     "for the share of images that pass"),
    ("- scenes: max vit top1 is striped",
     "top1_is has a yes/no result per image, so 'max' does not apply; write '... for 90% of images' "
     "for the share of images that pass"),
    ("- plain: vit accuracy > 0.9",
     "accuracy needs the images' classes, but dataset 'plain' has no labels (add labels: folders, a label "
     "column, or a labelled annotation file)"),
    ("- plain: vit.attention mass in object > 0.3 for 80% of images per class",
     "'per class' needs the images' classes, but dataset 'plain' has no labels (add labels: folders, a label "
     "column, or a labelled annotation file)"),
    ("- scenes: vit.attention mass in objet > 0.3 for 80% of images",
     "unknown region 'objet' of dataset 'scenes' (did you mean 'object'?); regions: object"),
    ("- one: vit.attention mass in obj > 0.3 for 80% of images",
     "'one' is an image; aggregates ('mean ...', '... for 90% of images', 'per class', accuracy) apply to "
     "datasets declared under datasets:"),
    ("- one: vit accuracy > 0.9",
     "'one' is an image; aggregates ('mean ...', '... for 90% of images', 'per class', accuracy) apply to "
     "datasets declared under datasets:"),
    ("- one: mean vit.attention mass in obj > 0.3",
     "'one' is an image; aggregates ('mean ...', '... for 90% of images', 'per class', accuracy) apply to "
     "datasets declared under datasets:"),
    ("- scenes: vit.attention mass in object > 0.3 for 0% of images",
     "'for 0% of images' is always true; use a share above 0"),
    ("- scenes: vit.attention mass in object > 0.3 for 120% of images",
     "the share of images must be a percentage in [0, 100], got 120%"),
    ("- scenes: p101 vit.attention mass in object > 0.3",
     "the percentile must be a percentage in [0, 100], got 101%"),
    ("- scenes: vit accuracy > 0.9 for 90% of images",
     "accuracy is already a share of images; write '<model> accuracy > 0.9' alone"),
    ("- scenes: vti accuracy > 0.9",
     "unknown model 'vti' (did you mean 'vit'?); models: vit, cnn"),
    ("- {dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.3,\n"
     "   share: 1.5}", "'share' is a fraction of the images in (0, 1], got 1.5"),
    ("- {dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.3,\n"
     "   aggregate: average}", "'aggregate' must be mean, median, min, max or p<N>, got 'average'"),
    ("- {image: one, metric: mass_in, model: vit, method: attention, region: obj, op: '>', value: 0.3,\n"
     "   share: 0.5}", "'share' applies to dataset expectations (dataset: <key>)"),
    ("- {dataset: scenes, metric: mass_in, model: vit, method: attention, region: object, op: '>', value: 0.3,\n"
     "   group: image}", "'group' must be class, got 'image'"),
]


@pytest.mark.parametrize("item,message", ERRORS, ids=[e[0][:60] for e in ERRORS])
def test_errors_at_their_line(tmp_path: Path, item: str, message: str) -> None:
    spec = parse(tmp_path, item)
    assert spec.expectations == ()
    (err,) = spec.errors
    assert err.message == message
    assert "\n" not in err.message
    assert FIRST_LINE <= err.line <= FIRST_LINE + item.count("\n")


def test_one_bad_dataset_expectation_leaves_the_others(tmp_path: Path) -> None:
    spec = parse(tmp_path, """
        - scenes: mean cnn.gradcam pointing game hits object
        - scenes: mean vit.attention mass in object > 0.5
        - one: vit top1 is striped
    """)
    assert [e.line for e in spec.errors] == [FIRST_LINE]
    assert [e.text for e in spec.expectations] == ["scenes: mean vit.attention mass in object > 0.5",
                                                  "one: vit top1 is striped"]
    assert spec.expectations[1].dataset is None and spec.expectations[1].aggregate is None


def test_a_model_named_like_an_aggregate_word_still_parses(tmp_path: Path) -> None:
    text = HEAD.replace("  cnn: ", "  mean: ")
    (tmp_path / "audit_d.yaml").write_text(text + "  - one: mean top1 is striped\n")
    spec = parse_audit_file(tmp_path / "audit_d.yaml")
    assert spec.errors == ()
    assert spec.expectations[0].model == "mean"
