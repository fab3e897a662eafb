"""Bad audit files (one problem each, in tests/data/audits_bad): exact line and message of every
error, and which expectations survive."""
from __future__ import annotations

from pathlib import Path

import pytest

from vitaudit.spec import parse_audit_file

BAD = Path(__file__).parent / "data" / "audits_bad"
MODEL_KEYS = "keys: name, pretrained, checkpoint, num_classes, labels, target_layer, crop, seed, model_kwargs"
MAP_SHORT = ("mass in <region> <op> <n> | pointing game hits|misses <region> | energy pointing game in <region> "
             "<op> <n> | iou(top <n>%, <region>) <op> <n> | rank accuracy in <region> <op> <n> | baseline similarity "
             "<op> <n> | deletion auc <op> <n> | insertion auc <op> <n> | sanity similarity <op> <n>")
ACCEPTED = ("accepted forms: <model> top1 is <class>; <model> top1 is not <class>; <model> top1 in [<class>, ...]; "
            "<class> in <model> top<k>; <model> prob(<class>) <op> <number>; <model>.<method> [for <class>] <metric> "
            "(mass in <region> <op> <n>, pointing game hits <region>, ...); "
            "agreement(<map>, <map>) <op> <number> [by pearson|spearman|ssim]")
METRICS = ("top1_is, top1_is_not, top1_in, in_topk, prob, mass_in, pointing_game, energy_pointing_game, iou_top, "
           "rank_accuracy, agreement, baseline_similarity, deletion_auc, insertion_auc, sanity, accuracy")
NO_GOAT = "image file not found: images/no_such_goat.jpg (looked for {bad}/images/no_such_goat.jpg)"
NO_CKPT = "checkpoint file not found: weights/missing.safetensors (looked for {bad}/weights/missing.safetensors)"
NO_MASK = "region 'body': mask file not found: masks/no_such_mask.png (looked for {bad}/masks/no_such_mask.png)"
NO_SOURCE = ("image 'goat' needs 'path' (a file, relative to the audit file) or 'skimage' "
             "(a scikit-image sample such as chelsea)")
UNKNOWN_PRETRAIND = f"unknown key 'pretraind' in model 'resnet' (did you mean 'pretrained'?); {MODEL_KEYS}"
UNKNOWN_REGOINS = ("unknown key 'regoins' in image 'goat' (did you mean 'regions'?); keys: path, skimage, regions, "
                   "storage_options, cache, retry_for")
UNKNOWN_UNIT = "unknown key 'unit' in region 'head' (did you mean 'units'?); keys: box, polygon, mask, units"
NO_SKIMAGE = ("unknown scikit-image sample 'chelsae' (did you mean 'chelsea'?); "
              "e.g. astronaut, camera, cat, chelsea, coffee, horse, rocket")

# file -> ([(line, message), ...] in line order, ids of the expectations that survive)
CASES: dict[str, tuple[list[tuple[int, str]], list[str]]] = {
    "invalid_yaml.yaml": ([(7, "invalid YAML: mapping values are not allowed here")], []),
    "invalid_yaml_unclosed.yaml": ([(8, "invalid YAML: expected ',' or ']', but got ':' "
                                        "(while parsing a flow sequence started at line 7)")], []),
    "empty.yaml": ([(1, "empty audit file: expected a mapping with models:, images: and expect:")], []),
    "comments_only.yaml": ([(1, "empty audit file: expected a mapping with models:, images: and expect:")], []),
    "not_a_mapping.yaml": ([(1, "an audit file is a mapping with models:, images: and expect:, got a list")], []),
    "expect_not_list.yaml": ([(6, "'expect' must be a list of expectations (- <image>: <sentence>), "
                                  "got a mapping")], []),
    "missing_expect.yaml": ([(1, "the audit file has no 'expect:' list, so nothing to check")], []),
    "unknown_top_key.yaml": ([
        (3, "unknown key 'imgaes' in the audit file (did you mean 'images'?); "
            "keys: models, labels, images, datasets, expect, marks, xfail, skip"),
        (6, "unknown image 'goat': the file declares no images or datasets")], []),
    "unknown_model_key.yaml": ([
        (5, UNKNOWN_PRETRAIND),
        (10, f"model 'resnet' is invalid (line 5: {UNKNOWN_PRETRAIND})")], ["vit-top1_is[tabby]"]),
    "model_missing_name.yaml": ([
        (3, "model 'resnet' needs a 'name' (a timm name, torchvision:NAME, fixture:NAME...)"),
        (9, "model 'resnet' is invalid (line 3: model 'resnet' needs a 'name' "
            "(a timm name, torchvision:NAME, fixture:NAME...))")], ["vit-top1_is[ram]"]),
    "missing_checkpoint.yaml": ([
        (5, NO_CKPT),
        (11, f"model 'mine' is invalid (line 5: {NO_CKPT})"),
        (12, f"model 'mine' is invalid (line 5: {NO_CKPT})")], ["vit-top1_is[ram]"]),
    "labels_count_mismatch.yaml": ([
        (5, "model 'mine' has num_classes: 3 but 2 labels"),
        (9, "model 'mine' is invalid (line 5: model 'mine' has num_classes: 3 but 2 labels)")], []),
    "unknown_image_key.yaml": ([
        (6, UNKNOWN_REGOINS),
        (10, f"image 'goat' is invalid (line 6: {UNKNOWN_REGOINS})")], ["vit-top1_is[tabby]"]),
    "missing_image_file.yaml": ([
        (5, NO_GOAT),
        (10, f"image 'goat' is invalid (line 5: {NO_GOAT})"),
        (12, f"image 'goat' is invalid (line 5: {NO_GOAT})")], ["vit-top1_is[tabby]"]),
    "image_no_source.yaml": ([
        (4, NO_SOURCE),
        (8, f"image 'goat' is invalid (line 4: {NO_SOURCE})")], []),
    "image_both_sources.yaml": ([
        (6, "image 'goat' has both 'path' and 'skimage'; keep one"),
        (8, "image 'goat' is invalid (line 6: image 'goat' has both 'path' and 'skimage'; keep one)")], []),
    "unknown_skimage.yaml": ([
        (4, NO_SKIMAGE),
        (6, f"image 'kitty' is invalid (line 4: {NO_SKIMAGE})")], []),
    "duplicate_key.yaml": ([(5, "duplicate key 'goat' (first at line 4); the first one is kept")],
                           ["vit-top1_is[ram]"]),
    "unknown_region_key.yaml": ([
        (8, UNKNOWN_UNIT),
        (11, f"region 'head' of image 'goat' is invalid (line 8: {UNKNOWN_UNIT})")],
        ["vit.attention-mass_in[goat]", "vit-top1_is[ram]"]),
    "region_box_count.yaml": ([
        (7, "region 'goat': box needs 4 numbers [x0, y0, x1, y1], got 3"),
        (10, "region 'goat' of image 'goat' is invalid (line 7: region 'goat': box needs 4 numbers "
             "[x0, y0, x1, y1], got 3)")], ["vit.attention-mass_in[sky]", "vit-top1_is[ram]"]),
    "region_box_inverted.yaml": ([
        (7, "region 'goat': box x1 (40) must be greater than x0 (180)"),
        (9, "region 'goat' of image 'goat' is invalid (line 7: region 'goat': box x1 (40) must be greater "
            "than x0 (180))")], []),
    "region_box_not_number.yaml": ([
        (11, "region 'goat': box coordinate must be a number, got 'wide'"),
        (14, "region 'goat' of image 'goat' is invalid (line 11: region 'goat': box coordinate must be a number, "
             "got 'wide')")], []),
    "region_fraction_range.yaml": ([
        (7, "region 'head': box coordinate 1.4 is outside [0, 1] (units: fraction)"),
        (9, "region 'head' of image 'goat' is invalid (line 7: region 'head': box coordinate 1.4 is outside "
            "[0, 1] (units: fraction))")], []),
    "region_polygon_short.yaml": ([
        (7, "region 'sky': polygon needs at least 3 points, got 2"),
        (9, "region 'sky' of image 'goat' is invalid (line 7: region 'sky': polygon needs at least 3 points, "
            "got 2)")], []),
    "region_mask_missing.yaml": ([
        (7, NO_MASK),
        (9, f"region 'body' of image 'goat' is invalid (line 7: {NO_MASK})")], []),
    "region_mask_size.yaml": ([
        (7, "region 'body': mask is 100x80 px but the image is 320x240; a mask must have the image's size"),
        (10, "region 'body' of image 'goat' is invalid (line 7: region 'body': mask is 100x80 px but the image is "
             "320x240; a mask must have the image's size)")], ["vit.attention-mass_in[goat]"]),
    "region_outside_image.yaml": ([
        (7, "region 'goat': box point (400, 210) lies outside the 320x240 px image "
            "(use units: fraction for fractions)"),
        (9, "region 'goat' of image 'goat' is invalid (line 7: region 'goat': box point (400, 210) lies outside "
            "the 320x240 px image (use units: fraction for fractions))")], []),
    "unknown_model_ref.yaml": ([(8, "unknown model 'vti' (did you mean 'vit'?); models: vit, resnet")],
                               ["vit-top1_is[ram]"]),
    "unknown_image_ref.yaml": ([(7, "unknown image 'gaot' (did you mean 'goat'?); images: goat")],
                               ["vit-top1_is[ram]"]),
    "unknown_region_ref.yaml": ([(11, "unknown region 'gaot' of image 'goat' (did you mean 'goat'?); "
                                      "regions: goat, sky")], ["vit.attention-mass_in[goat]"]),
    "star_missing_region.yaml": ([(13, "unknown region 'subject' of image 'kitty'; regions: cat")],
                                 ["vit.attention-mass_in[subject]"]),
    "unknown_method.yaml": ([(10, "unknown method 'gradcm' (did you mean 'gradcam'?); methods: attention, rollout, "
                                  "gradcam, gradcam++, hirescam, scorecam, eigencam, layercam")],
                            ["vit.gradcam-pointing_game[goat]"]),
    "unknown_metric.yaml": ([(10, "unknown metric in 'vit.attention mas in goat > 0.4' (did you mean 'mass in'?); "
                                  f"after vit.attention write one of: {MAP_SHORT}")],
                            ["vit.attention-mass_in[goat]"]),
    "unknown_metric_structured.yaml": ([(13, f"unknown metric 'mass' (did you mean 'mass_in'?); metrics: {METRICS}")],
                                       ["vit.attention-mass_in[goat]"]),
    "unparseable_sentence.yaml": ([(7, f"cannot parse 'the goat should look like a goat'; {ACCEPTED}")],
                                  ["vit-top1_is[ram]"]),
    "unknown_expectation_key.yaml": ([(14, "unknown key 'regoin' in expectation (did you mean 'region'?)")],
                                     ["vit-top1_is[ram]"]),
    "unknown_sentence_item_key.yaml": ([(8, "unknown key 'xfial' in expectation (did you mean 'xfail'?); an item is "
                                            "'<image>: <sentence>' plus id, xfail, skip, marks")],
                                       ["vit-top1_is[ram]"]),
    "threshold_not_number.yaml": ([(10, "threshold must be a number, got '0.4x'")], ["vit.attention-mass_in[goat]"]),
    "threshold_string_structured.yaml": ([(16, "threshold 'value' must be a number, got '0.4x'")],
                                         ["vit.attention-mass_in[goat]"]),
    "threshold_bool.yaml": ([(7, "threshold 'value' must be a number, got the boolean true")], ["vit-top1_is[ram]"]),
    "unquoted_op.yaml": ([(11, "'op' of prob must be >, >=, < or <=, got '' (quote it: op: \">\")")],
                         ["vit-top1_is[ram]"]),
    "bad_xfail.yaml": ([(8, "unknown key 'strcit' in xfail (did you mean 'strict'?); keys: reason, strict, run")],
                       ["vit-top1_is[ram]"]),
    "billion_laughs.yaml": ([(6, "YAML over budget: the alias *a4 expands the file past 200,000 nodes; audit files "
                                 "are limited to at most 4 MiB, 64 levels of nesting, 10,000 alias uses and "
                                 "200,000 nodes with aliases expanded")], []),
    "option_not_applicable.yaml": ([(7, "option 'by' does not apply to deletion_auc (its options: steps, baseline)")],
                                   ["vit-top1_is[ram]"]),
}


def test_every_bad_file_has_a_case() -> None:
    assert sorted(p.name for p in BAD.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file(name: str) -> None:
    expected_errors, surviving = CASES[name]
    path = BAD / name
    spec = parse_audit_file(path)
    expected = [(line, msg.format(bad=BAD)) for line, msg in expected_errors]
    assert [(e.line, e.message) for e in spec.errors] == expected
    assert [e.id for e in spec.expectations] == surviving
    for err in spec.errors:
        assert err.file == str(path)
        assert str(err) == f"{path}:{err.line}: {err.message}"
        assert "\n" not in str(err)


def test_dropped_expectations_carry_image_and_text() -> None:
    spec = parse_audit_file(BAD / "missing_image_file.yaml")
    decl_error, *dropped = spec.errors
    assert (decl_error.image, decl_error.text) == (None, None)
    assert [(e.image, e.text) for e in dropped] == [
        ("goat", "goat: vit top1 is ram"), ("goat", "goat: vit.attention mass in goat > 0.4")]
    assert list(spec.images) == ["kitty"]
    spec = parse_audit_file(BAD / "star_missing_region.yaml")
    assert [(e.image, e.text) for e in spec.errors] == [("kitty", "*: vit.attention mass in subject > 0.4")]
    assert [e.image for e in spec.expectations] == ["goat"]


def test_region_error_keeps_the_image_and_other_regions() -> None:
    spec = parse_audit_file(BAD / "region_box_count.yaml")
    assert list(spec.images) == ["goat"]
    assert list(spec.images["goat"].regions) == ["sky"]


def test_broken_model_is_left_out_of_models() -> None:
    spec = parse_audit_file(BAD / "missing_checkpoint.yaml")
    assert list(spec.models) == ["vit"]


def test_unreadable_paths(tmp_path: Path) -> None:
    spec = parse_audit_file(tmp_path / "audit_missing.yaml")
    assert [(e.line, e.message) for e in spec.errors] == [(1, "cannot read audit file: No such file or directory")]
    bad = tmp_path / "audit_latin1.yaml"
    bad.write_bytes(b"models: {}\n# caf\xe9\n")
    assert [(e.line, e.message) for e in parse_audit_file(bad).errors] == [(2, "the audit file is not UTF-8 text")]


def test_yaml_budget_stops_each_kind_of_blow_up_at_its_line() -> None:
    from vitaudit.spec.yamlload import YamlBudget, load_yaml

    budget = YamlBudget(max_bytes=400, max_depth=5, max_aliases=3, max_nodes=40)
    limits = "audit files are limited to at most 0 MiB, 5 levels of nesting, 3 alias uses and 40 nodes with aliases expanded"
    cases = {
        "a: [[[[[[1]]]]]]\n": (1, "nesting deeper than 5 levels"),
        "a: &x 1\nb: [*x, *x,\n  *x, *x]\n": (3, "more than 3 alias uses"),
        "a: &x [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nb: &y [*x, *x]\nc: [1, *y]\n": (3, "the alias *y expands the file past 40 nodes"),
        "a: [" + ", ".join(["1"] * 45) + "]\n": (1, "more than 40 nodes"),
    }
    for source, (line, what) in cases.items():
        root, errors = load_yaml(source, "f.yaml", budget)
        assert root is None
        assert [(e.line, e.message) for e in errors] == [(line, f"YAML over budget: {what}; {limits}")], source
    big = "a: 1\n" * 100
    assert [(e.line, e.message) for e in load_yaml(big, "f.yaml", budget)[1]] == [
        (81, f"audit file too large: 0.0 MiB; {limits}")]
    # Within the budget, aliases and merge keys still expand as before.
    root, errors = load_yaml("a: &x {k: 1}\nb: *x\nc: {<<: *x, j: 2}\n", "f.yaml", budget)
    assert errors == [] and root.value["b"].value["k"].value == 1 and set(root.value["c"].value) == {"j", "k"}


@pytest.mark.parametrize("expect,line,says", [
    ('  - {image: goat, model: vit, metric: prob, label: ram, op: >, value: 0.3}\n', 6,
     "found character '>' that cannot start any token (while scanning for the next token); quote the operator: "
     'op: ">" (YAML reads a bare > as syntax)'),
    ("  - *: vit top1 is ram\n", 6,
     "(while scanning an alias); a bare * is a YAML alias: quote it, \"*\": <sentence> (every image)"),
])
def test_the_two_yaml_traps_get_a_hint(tmp_path, expect, line, says):
    """docs/audit-format.md warns about both; the error says what to do, at the line."""
    path = tmp_path / "audit_y.yaml"
    path.write_text("models:\n  vit: {name: x}\nimages:\n  goat: {skimage: astronaut}\nexpect:\n" + expect)
    (err,) = parse_audit_file(path).errors
    assert err.line == line and err.message.startswith("invalid YAML: ") and err.message.endswith(says)
