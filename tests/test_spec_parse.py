"""parse_audit_file on good files: declarations, regions, paths, ids, marks, '*' and the YAML loader."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from vitaudit.regions import Region
from vitaudit.spec import Mark, ModelDecl, is_audit_file, parse_audit_file
from vitaudit.spec.yamlload import load_yaml

GOOD = Path(__file__).parent / "data" / "audits_good"
EXAMPLE = GOOD / "example.yaml"


@pytest.fixture(scope="module")
def spec():
    result = parse_audit_file(EXAMPLE)
    assert result.errors == ()
    return result


def test_models(spec) -> None:
    file = str(EXAMPLE)
    assert spec.models["vit"] == ModelDecl("vit", "vit_base_patch16_224", pretrained=True, file=file, line=4)
    assert spec.models["resnet"].target_layer == "layer4"
    assert spec.models["fix"].name == "fixture:vit-scenes" and spec.models["fix"].pretrained is None
    mine = spec.models["mine"]
    assert mine.checkpoint == str(GOOD / "weights" / "mine.safetensors")
    assert (mine.num_classes, mine.labels, mine.crop, mine.labels_path) == (3, ("a", "b", "c"), "center", None)
    filed = spec.models["filed"]
    assert (filed.labels, filed.labels_path, filed.seed) == (("a", "b", "c"), str(GOOD / "labels3.txt"), 7)
    assert spec.label_groups == {"cat": ("tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"),
                                 "goats": ("ram", "bighorn", "ibex", 348)}


def test_model_kwargs(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
models:
  tiny: {{name: resnet18, num_classes: 10, model_kwargs: {{layers: [1, 1, 1, 1], img_size: 64, flag: true}}}}
images: {{goat: {{path: {IMG}}}}}
expect:
  - goat: tiny top1 is 3
""")
    spec = parse_audit_file(path)
    assert spec.errors == ()
    assert spec.models["tiny"].model_kwargs == (("flag", True), ("img_size", 64), ("layers", (1, 1, 1, 1)))


def test_images_and_regions(spec) -> None:
    file = str(EXAMPLE)
    goat = spec.images["goat"]
    assert (goat.path, goat.skimage, goat.line) == (str(GOOD / "images" / "cutegoat.jpg"), None, 14)
    assert goat.regions == {
        "goat": Region("goat", "box", ((40.0, 60.0), (180.0, 210.0)), "px", None, file, 17),
        "head": Region("head", "box", ((0.1, 0.2), (0.4, 0.5)), "fraction", None, file, 18),
        "sky": Region("sky", "polygon", ((0.0, 0.0), (300.0, 0.0), (300.0, 40.0)), "px", None, file, 19),
        "body": Region("body", "mask", (), "px", str(GOOD / "masks" / "goat_body.png"), file, 20),
    }
    kitty = spec.images["kitty"]
    assert (kitty.path, kitty.skimage) == (None, "chelsea")
    assert kitty.regions["cat"].units == "fraction"


def test_ids_texts_and_lines(spec) -> None:
    got = [(e.image, e.id, e.line) for e in spec.expectations]
    assert got == [
        ("goat", "vit-top1_in[ram,bighorn,ibex]", 26),
        ("goat", "vit.attention-mass_in[goat]", 27),
        ("goat", "resnet.gradcam-pointing_game[goat]", 28),
        ("goat", "agreement[vit.rollout,resnet.gradcam]", 29),
        ("goat", "vit.attention-mass_in-2[goat]", 30),
        ("kitty", "vit.gradcam@tabby-mass_in[cat]", 31),
        ("goat", "vit-top1_is[tabby]", 32),
        ("goat", "vit-top1_in[goats]", 34),
        ("kitty", "vit-top1_in[goats]", 34),
        ("kitty", "resnet.gradcam-sanity[layers=2]", 35),
        ("goat", "vit.gradcam-deletion_auc[steps=50]", 37),
    ]
    texts = [e.text for e in spec.expectations]
    assert texts[0] == "goat: vit top1 in [ram, bighorn, ibex]"
    assert texts[4] == '{image: goat, model: vit, method: attention, metric: mass_in, region: goat, op: ">", value: 0.4}'
    assert texts[6] == "goat: vit top1 is tabby"
    assert texts[7] == texts[8] == "*: vit top1 in goats"
    assert texts[10] == '{image: goat, metric: deletion_auc, model: vit, method: gradcam, op: "<", value: 0.3, steps: 50}'
    assert all(e.file == str(EXAMPLE) for e in spec.expectations)


def test_marks(spec) -> None:
    audit = Mark("audit")
    exps = spec.expectations
    assert exps[0].marks == (audit,)
    assert exps[6].marks == (audit, Mark("xfail", (), {"reason": "not a cat", "strict": True}))
    assert exps[9].marks == (audit, Mark("slow"))
    # Expectations are hashable values: kwargs (a dict) stay out of the hash but not out of ==.
    again = parse_audit_file(EXAMPLE).expectations[6]
    assert again is not exps[6] and again == exps[6] and hash(again) == hash(exps[6])
    assert {exps[6]: "found"}[again] == "found"
    other = Mark("xfail", (), {"reason": "another reason", "strict": True})
    assert hash(other) == hash(exps[6].marks[1]) and other != exps[6].marks[1]


def write(tmp_path: Path, text: str, name: str = "audit_t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


IMG = GOOD / "images" / "cutegoat.jpg"


def test_file_level_xfail_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
models: {{vit: {{name: vit_base_patch16_224}}}}
images: {{goat: {{path: {IMG}}}}}
xfail: known flaky
skip: false
marks: [slow]
expect:
  - goat: vit top1 is ram
  - goat: vit top1 is ibex
    xfail: false
  - goat: vit top1 is tabby
    skip: no cats today
    marks: [nightly]
""")
    spec = parse_audit_file(path)
    assert spec.errors == ()
    xfail = Mark("xfail", (), {"reason": "known flaky"})
    assert [e.marks for e in spec.expectations] == [
        (xfail, Mark("slow")),
        (Mark("slow"),),
        (xfail, Mark("slow"), Mark("skip", (), {"reason": "no cats today"}), Mark("nightly")),
    ]


def test_paths_are_relative_to_the_audit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOOD.parent)
    spec = parse_audit_file(os.path.join("audits_good", "example.yaml"))
    assert spec.errors == ()
    assert spec.path == os.path.join("audits_good", "example.yaml")
    assert spec.images["goat"].path == str(GOOD / "images" / "cutegoat.jpg")
    assert spec.images["goat"].regions["body"].mask_path == str(GOOD / "masks" / "goat_body.png")
    assert spec.models["mine"].checkpoint == str(GOOD / "weights" / "mine.safetensors")
    assert spec.expectations[0].file == os.path.join("audits_good", "example.yaml")


def test_star_expands_in_image_order_and_duplicates_get_suffixes(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
models: {{vit: {{name: vit_base_patch16_224}}}}
images:
  b: {{path: {IMG}}}
  a: {{skimage: astronaut}}
expect:
  - {{image: "*", metric: top1_is, model: vit, label: ram}}
  - b: vit top1 is ram
  - b: vit top1 is ram
    id: my-own-id
  - b: vit top1 is ram
  - a: vit prob(tiger cat) > 0.5
""")
    spec = parse_audit_file(path)
    assert spec.errors == ()
    assert [(e.image, e.id) for e in spec.expectations] == [
        ("b", "vit-top1_is[ram]"), ("a", "vit-top1_is[ram]"), ("b", "vit-top1_is-2[ram]"),
        ("b", "my-own-id"), ("b", "vit-top1_is-3[ram]"), ("a", "vit-prob[tiger_cat]")]


def test_more_ids(tmp_path: Path) -> None:
    path = write(tmp_path, f"""\
models: {{vit: {{name: vit_base_patch16_224}}, resnet: {{name: resnet50}}}}
images:
  goat:
    path: {IMG}
    regions: {{goat: {{box: [40, 60, 180, 210]}}}}
expect:
  - goat: vit.gradcam pointing game hits not goat
  - goat: vit.gradcam pointing game misses goat within 15px
  - goat: vit.rollout(head_fusion=max) iou(top 20%, goat) > 0.3
  - goat: agreement(vit.rollout, resnet.gradcam) > 0.5 by ssim
  - goat: tabby in vit top5
  - goat: vit top1 is not "tabby, tabby cat"
  - goat: vit.attention baseline similarity > 0.9
  - goat: vit.gradcam deletion auc < 0.3 baseline zero
""")
    spec = parse_audit_file(path)
    assert spec.errors == ()
    assert [e.id for e in spec.expectations] == [
        "vit.gradcam-pointing_game[not goat]",
        "vit.gradcam-pointing_game_misses[goat,within=15px]",
        "vit.rollout(head_fusion=max)-iou_top[goat,top=20%]",
        "agreement[vit.rollout,resnet.gradcam,by=ssim]",
        "vit-in_top5[tabby]",
        "vit-top1_is_not[tabby/tabby_cat]",
        "vit.attention-baseline_similarity",
        "vit.gradcam-deletion_auc[baseline=zero]",
    ]


def test_spec_error_str_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "models: [\n")
    (err,) = parse_audit_file(path).errors
    assert str(err) == f"{path}:1: invalid YAML: expected the node content, but found '<stream end>' " \
                       "(while parsing a flow node)"
    assert "\n" not in str(err)


def test_errors_stay_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'models:\n  vit: {name: v, "pre\\ntrained": true}\nimages: {}\nexpect: []\n')
    err = parse_audit_file(path).errors[0]
    assert err.line == 2 and err.message.startswith("unknown key 'pre\\ntrained' in model 'vit'")
    assert "\n" not in str(err)


def test_yaml_loader_records_lines() -> None:
    root, errors = load_yaml("a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\nbase: &b {e: 3}\nm:\n  <<: *b\n  f: 4\n", "f")
    assert errors == []
    assert root.key_line("a") == 1 and root.value["a"].key_line("c") == 3
    assert root.value["a"].value["b"].line == 2
    items = root.value["a"].value["c"].value
    assert [i.line for i in items] == [4, 5] and items[1].value["d"].value == 2
    merged = root.value["m"]
    assert {k: v.value for k, v in merged.value.items()} == {"f": 4, "e": 3}
    assert merged.key_line("f") == 9 and merged.key_line("e") == 6


def test_yaml_loader_keeps_keys_as_written() -> None:
    root, _ = load_yaml("images:\n  no: {skimage: camera}\n  1: {skimage: coins}\n", "f")
    assert list(root.value["images"].value) == ["no", "1"]


def test_yaml_loader_rejects_python_tags_and_recursion() -> None:
    _, errors = load_yaml("a: !!python/object:os.system x\n", "f")
    assert [(e.line, e.message.split(":")[0]) for e in errors] == [(1, "invalid YAML value")]
    _, errors = load_yaml("a: &r [1, *r]\n", "f")
    assert [(e.line, e.message) for e in errors] == [(1, "recursive YAML alias")]


@pytest.mark.parametrize("name,expected", [
    ("audit_goats.yaml", True), ("tests/x/audit_a.yaml", True), ("goats.audit.yaml", True),
    ("audit_goats.yml", False), ("goats.yaml", False), ("myaudit_x.yaml", False),
])
def test_is_audit_file(name: str, expected: bool) -> None:
    assert is_audit_file(name) is expected


def test_keys_may_use_letters_of_any_script(tmp_path: Path) -> None:
    """Model, image and region keys accept what Python identifiers and pytest ids accept."""
    from vitaudit.audit import baselines

    path = tmp_path / "audit_café.yaml"
    path.write_text(
        "models:\n  modèle: {name: resnet18}\n"
        "images:\n  kaffee_ü:\n    skimage: coffee\n    regions:\n      tasse_ö: {box: [0, 0, 1, 1], units: fraction}\n"
        "      Ελλάδα: {box: [0, 0, 1, 1], units: fraction}\n"
        "  kaffee_ö: {skimage: coffee}\n"
        "expect:\n  - kaffee_ü: modèle.gradcam mass in tasse_ö > 0.5\n  - kaffee_ü: modèle.gradcam mass in not Ελλάδα > 0.5\n"
        "  - kaffee_ö: modèle.gradcam baseline similarity > 0.5\n  - kaffee_ü: modèle.gradcam baseline similarity > 0.5\n",
        encoding="utf-8")
    spec = parse_audit_file(path)
    assert spec.errors == ()
    assert [(e.image, e.id) for e in spec.expectations] == [
        ("kaffee_ü", "modèle.gradcam-mass_in[tasse_ö]"), ("kaffee_ü", "modèle.gradcam-mass_in[not Ελλάδα]"),
        ("kaffee_ö", "modèle.gradcam-baseline_similarity"), ("kaffee_ü", "modèle.gradcam-baseline_similarity")]
    # baselines of images that differ only in a non-ASCII letter do not share a file
    stored = [baselines.path_for(str(path), e.image, e.maps[0]) for e in spec.expectations[2:]]
    assert [p.relative_to(tmp_path).as_posix() for p in stored] == [
        "baselines/audit_café/kaffee_ö/modèle.gradcam.npy", "baselines/audit_café/kaffee_ü/modèle.gradcam.npy"]
    # still refused: a leading digit or dash, spaces and punctuation
    bad = tmp_path / "audit_bad.yaml"
    bad.write_text("models:\n  m: {name: resnet18}\nimages:\n  1ü: {skimage: coffee}\n  ü ö: {skimage: coffee}\n"
                   "expect:\n  - 1ü: m top1 is tabby\n", encoding="utf-8")
    messages = [e.message for e in parse_audit_file(bad).errors]
    assert "image key '1ü' must be a name of letters, digits, '_' and '-'" in messages
    assert "image key 'ü ö' must be a name of letters, digits, '_' and '-'" in messages
