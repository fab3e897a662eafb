"""Smaller validation rules, each with its exact line and message (inline files)."""
from __future__ import annotations

from pathlib import Path

import pytest

from vitaudit.spec import parse_audit_file

IMG = Path(__file__).parent / "data" / "audits_good" / "images" / "cutegoat.jpg"
HEAD = f"""\
models:
  vit: {{name: vit_base_patch16_224}}
labels:
  cat: [tabby, 285]
images:
  goat:
    path: {IMG}
    regions:
      goat: {{box: [40, 60, 180, 210]}}
expect:
  - goat: vit top1 is ram
"""  # 11 lines; an expectation appended below is on line 12

EXPECTATION_ERRORS = [
    ("goat: vit.gradcam deletion auc < 0.3 baseline zeros", "'baseline' must be blur, zero or mean, got 'zeros' (did you mean 'zero'?)"),
    ("goat: vit.attention iou(top 120%, goat) > 0.3", "'top' must be a percentage in (0, 100], got 120.0"),
    ("goat: vit.attention iou(top 20, goat) > 0.3", "cannot parse 'vit.attention iou(top 20, goat) > 0.3': write iou(top <n>%, <region>) <op> <number>"),
    ("goat: vit.gradcam deletion auc < 0.3 steps 0", "'steps' must be a whole number >= 1, got 0"),
    ("goat: vit.gradcam sanity similarity < 0.5 by kendall", "'by' must be pearson, spearman or ssim, got 'kendall'"),
    ("goat: vit.gradcam sanity similarity < 0.5 after randomizing 0 layers", "'layers' must be a whole number >= 1 or 'all', got 0"),
    ("goat: tabby in vit top0", "k must be a whole number >= 1, got 0"),
    ("goat: vit top1 in dogs", "'dogs' is not a group from labels:; groups: cat; for one class write 'top1 is dogs' or 'top1 in [dogs]'"),
    ("goat: vit top1 is -3", "a class index cannot be negative, got -3"),
    ("goat: vit top5 is tabby", "cannot parse 'vit top5 is tabby'; for the top-5 write '<class> in vit top5'"),
    ("goat: vit mass in goat > 0.4", "cannot parse 'vit mass in goat > 0.4': an explanation map is written <model>.<method>, e.g. 'vit.gradcam mass in goat > 0.4'"),
    ("goat: vit.attention mass in goat == 0.4", "operator '==' is not supported; use >, >=, < or <="),
    ("goat: vit.attention mass in goat", "expected a comparison like '> 0.4' after 'mass in <region>', got nothing"),
    ("goat: vit.gradcam pointing game hits goat > 0.5", "cannot parse 'vit.gradcam pointing game hits goat > 0.5': the pointing game has no threshold; it passes when the map's maximum hits (or misses) the region"),
    ("goat: vit.gradcam pointing game hits goat within 2cm", "unexpected 'within 2cm' at the end of the sentence (pointing_game)"),
    ("goat: vit prob(tabby) > 0.3 please", "unexpected 'please' at the end of the sentence (prob)"),
    ("goat: vit.rollout(head_fusion=max mass in goat > 0.1", "missing ')' in 'vit.rollout(head_fusion=max mass in goat > 0.1'"),
    ("goat: vit.rollout(head_fusion) mass in goat > 0.1", "method option 'head_fusion' should look like name=value"),
    ("goat: agreement(vit.rollout) > 0.3", "agreement compares two maps: agreement(<model>.<method>, <model>.<method>), got 'agreement(vit.rollout) > 0.3'"),
    ("goat: agreement(vit.rollout, vit.gradcm) > 0.3", "unknown method 'gradcm' (did you mean 'gradcam'?); methods: attention, rollout, gradcam, gradcam++, hirescam, scorecam, eigencam, layercam"),
    ("goat: agreement(vit.rollout, vti.gradcam) > 0.3", "unknown model 'vti' (did you mean 'vit'?); models: vit"),
    ("goat: 5", "expected a sentence after 'goat:', got the number 5"),
    ("goat: {a: 1}", "expected a sentence after 'goat:', got a mapping"),
    ("vit top1 is tabby", "an expectation is '- <image>: <sentence>' or a mapping with metric:, got 'vit top1 is tabby'; add the image: - <image>: <sentence>"),
    ("{model: vit, goat: vit top1 is tabby}", "a structured expectation needs 'metric' and 'image'"),
    ("{goat: vit top1 is tabby, id: 'a::b'}", "'id' cannot contain '::', got 'a::b'"),
    ("{goat: vit top1 is tabby, marks: [1]}", "a mark is a name like slow, got the number 1"),
    ("{goat: vit top1 is tabby, skip: [x]}", "'skip' must be a reason string, true/false, or {reason: ...}, got a list"),
    ("{image: goat, metric: top1_is, model: vit}", "metric top1_is needs 'label'"),
    ("{image: goat, metric: top1_is, model: vit, label: tabby, region: goat}", "key 'region' does not apply to metric top1_is (its keys: model, label)"),
    ("{image: goat, metric: mass_in, model: vit, method: attention, region: goat, op: '>', value: 0.4, by: ssim}", "key 'by' does not apply to metric mass_in (its keys: model, method, region, op, value, method_options, target)"),
    ("{image: goat, metric: pointing_game, model: vit, method: gradcam, region: goat, op: hit}", "'op' of pointing_game must be hits or misses, got 'hit'"),
    ("{image: goat, metric: agreement, maps: [vit.rollout], op: '>', value: 0.5}", "'maps' must list two maps, e.g. [vit.rollout, resnet.gradcam], got a list of 1"),
    ("{image: goat, metric: agreement, maps: [vit.rollout, {model: vit, metod: gradcam}], op: '>', value: 0.5}", "unknown key 'metod' in a map (did you mean 'method'?); keys: model, method, method_options, target"),
    ("{image: goat, metric: mass_in, model: vit, method: attention, region: not, op: '>', value: 0.4}", "'region' must be a region name or 'not <name>', got 'not'"),
    ("{image: goat, metric: mass_in, model: vit, method: attention, method_options: [a], region: goat, op: '>', value: 0.4}", "'method_options' must be a mapping like {head_fusion: max}, got a list"),
    ("{metric: top1_is, model: vit, label: tabby}", "a structured expectation needs 'image' (an image key, or \"*\" for every image) or 'dataset'"),
]


@pytest.mark.parametrize("item,message", EXPECTATION_ERRORS, ids=[e[0] for e in EXPECTATION_ERRORS])
def test_expectation_error(tmp_path: Path, item: str, message: str) -> None:
    path = tmp_path / "audit_v.yaml"
    path.write_text(HEAD + f"  - {item}\n")
    spec = parse_audit_file(path)
    assert [(e.line, e.message) for e in spec.errors] == [(12, message)]
    assert [e.id for e in spec.expectations] == ["vit-top1_is[ram]"]  # the good one survives


DECLARATION_ERRORS = [
    ("models:\n  m:\n    name: r\n    pretrained: 1\n", 4, "'pretrained' must be true or false, got the number 1"),
    ("models:\n  m:\n    name: r\n    num_classes: three\n", 4, "'num_classes' must be a whole number, got 'three'"),
    ("models:\n  m:\n    name: r\n    num_classes: 0\n", 4, "'num_classes' must be >= 1, got 0"),
    ("models:\n  m:\n    name: r\n    crop: centre\n", 4, "'crop' must be resize or center, got 'centre' (did you mean 'center'?)"),
    ("models:\n  m:\n    name: r\n    seed: 1.5\n", 4, "'seed' must be a whole number, got the number 1.5"),
    ("models:\n  m:\n    name: r\n    labels: nolabels.txt\n", 4, "labels file not found: nolabels.txt (looked for {tmp}/nolabels.txt)"),
    ("models:\n  m:\n    name: r\n    labels: []\n", 4, "'labels' must be a list of class names or a path to a text file, got an empty list"),
    ("models:\n  m:\n    name: ''\n", 3, "model 'name' must be a string, got ''"),
    ("models:\n  m:\n    name: r\n    model_kwargs: [1]\n", 4, "'model_kwargs' must be a mapping like {{img_size: 64}}, got a list"),
    ("models:\n  m:\n    name: r\n    pretrained: true\n    checkpoint: {img}\n", 5, "model 'm' has both pretrained: true and a checkpoint; keep one"),
    ("models:\n  m.x: {{name: r}}\n", 2, "model key 'm.x' must be a name of letters, digits, '_' and '-' (no dots)"),
    ("models:\n  m: resnet50\n", 2, "model 'm' must be a mapping like {{name: resnet50, pretrained: true}}, got 'resnet50'"),
    ("models: [a]\n", 1, "'models' must be a mapping of model keys to {{name: ...}}, got a list"),
    ("labels:\n  cat: tabby\n", 2, "label group 'cat' must be a non-empty list of classes, got 'tabby'"),
    ("labels:\n  cat:\n    - tabby\n    - -1\n", 4, "a class index cannot be negative, got -1"),
    ("images:\n  goat:\n    path: {img}\n    regions: [a]\n", 4, "'regions' of image 'goat' must map region names to shapes, got a list"),
    ("images:\n  goat:\n    path: /\n", 3, "image file is a folder, not a file: / (looked for /)"),
    ("images:\n  goat:\n    path: {audit}\n", 3, "image file is not a readable image: {audit} (UnidentifiedImageError)"),
    ("images:\n  image: {{path: {img}}}\n", 2, "image key 'image' is reserved"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      not: {{box: [0, 0, 1, 1]}}\n", 5, "region name 'not' is reserved"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r:\n        box: [0, 0, 1, 1]\n        polygon: [[0, 0], [1, 1], [0, 1]]\n", 7, "region 'r' has both box and polygon; keep one"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r: {{mask: {img}, units: fraction}}\n", 5, "region 'r': 'units' does not apply to a mask"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r: {{units: fraction}}\n", 5, "region 'r' needs one of box, polygon or mask"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r:\n        polygon:\n          - [0, 0]\n          - [1, 1, 2]\n          - [0, 1]\n", 8, "region 'r': a polygon point is [x, y], got 3 numbers"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r: {{box: [-1, 0, 1, 1]}}\n", 5, "region 'r': box coordinate -1 is negative"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r: {{box: [0, 0, 1, 1], units: pixel}}\n", 5, "region 'r': 'units' must be px or fraction, got 'pixel'"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r: {{box: [0, 0, true, 1]}}\n", 5, "region 'r': box coordinate must be a number, got the boolean true"),
    ("images:\n  goat:\n    path: {img}\n    regions:\n      r: {{box: [0, 0, 10, 10]}}\n      r: {{box: [0, 0, 20, 20]}}\n", 6, "duplicate key 'r' (first at line 5); the first one is kept"),
    ("xfail:\n  reason: 3\n", 2, "file-level xfail reason must be a string, got the number 3"),
    ("marks: {{a: 1}}\n", 1, "file-level 'marks' must be a list of mark names like [slow], got a mapping"),
    ("expect: []\n", 1, "'expect' is empty: add expectations like - <image>: <sentence>"),
]


@pytest.mark.parametrize("text,line,message", DECLARATION_ERRORS, ids=[d[2][:60] for d in DECLARATION_ERRORS])
def test_declaration_error(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "audit_d.yaml"
    path.write_text(text.format(img=IMG, audit=path))
    if "expect:" not in text:
        path.write_text(path.read_text() + "expect:\n  - '*': vit top1 is ram\n")
    spec = parse_audit_file(path)
    first = spec.errors[0]
    assert (first.line, first.message) == (line, message.format(tmp=tmp_path, audit=path))
    assert first.image is None and first.text is None
