"""Relative thresholds (``>= baseline - 0.05``): parsing, recording, comparing, the values file."""
from __future__ import annotations

import difflib
import json

import pytest

from test_plugin import project, report, write_audit  # noqa: F401  (the same tiny-model project)
from vitaudit.audit import value_baselines
from vitaudit.spec import Relative
from vitaudit.spec.errors import SentenceError
from vitaudit.spec.sentences import parse_sentence


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(("sentence", "relative", "options"), [
    ("vit.attention mass in obj >= baseline - 0.05", Relative("-", 0.05), {}),
    ("vit.attention mass in obj >= baseline-0.05", Relative("-", 0.05), {}),
    ("vit prob(cat) > baseline * 0.9", Relative("*", 0.9), {}),
    ("vit.gradcam iou(top 20%, obj) > baseline + 0.1", Relative("+", 0.1), {"top": 20.0}),
    ("agreement(vit.rollout, cnn.gradcam) >= baseline by ssim", Relative("=", 0.0), {"by": "ssim"}),
    ("cnn.gradcam deletion auc < baseline + 0.02 baseline zero", Relative("+", 0.02), {"baseline": "zero"}),
    ("vit.attention mass in obj > 0.4", None, {}),
])
def test_every_form_of_relative_threshold_parses(sentence, relative, options):
    draft = parse_sentence(sentence)
    assert draft.relative == relative
    assert (draft.value is None) == (relative is not None)
    assert {k: v for k, v in draft.options.items() if k != "top"} == {k: v for k, v in options.items() if k != "top"}


@pytest.mark.parametrize(("sentence", "says"), [
    ("vit.attention mass in obj > baseline / 2", "write baseline, baseline - <n>, baseline + <n> or baseline * <n>"),
    ("vit.attention mass in obj > baseline - x", "must be a number, got 'x'"),
    ("vit.attention mass in obj > baseline - 0.1 - 0.2", "unexpected '- 0.2'"),
])
def test_malformed_relative_thresholds_say_what_is_wrong(sentence, says):
    with pytest.raises(SentenceError, match=None) as exc:
        parse_sentence(sentence)
    assert says in exc.value.message


def test_relative_threshold_arithmetic():
    assert Relative("-", 0.05).threshold(0.6) == pytest.approx(0.55)
    assert Relative("+", 0.05).threshold(0.6) == pytest.approx(0.65)
    assert Relative("*", 0.9).threshold(0.5) == pytest.approx(0.45)
    assert Relative("=", 0.0).threshold(0.5) == 0.5
    assert Relative("*", 0.9).text == "baseline * 0.9" and Relative().text == "baseline"


def _spec(tmp_path, expect: str):
    from PIL import Image

    from vitaudit.spec import parse_audit_file

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "audit_s.yaml").write_text(
        "models:\n  vit: {name: x}\nimages:\n  a: {path: a.png, regions: {r: {box: [0, 0, 4, 4]}}}\n"
        "expect:\n" + expect)
    return parse_audit_file(tmp_path / "audit_s.yaml")


def test_structured_form_reads_the_same(tmp_path):
    spec = _spec(tmp_path, """
  - {image: a, metric: mass_in, model: vit, method: attention, region: r, op: ">=", value: {baseline: -0.05}}
  - {image: a, metric: mass_in, model: vit, method: attention, region: r, op: ">=", value: {baseline: 0}}
  - {image: a, metric: prob, model: vit, label: cat, op: ">", value: "baseline * 0.9"}
  - a: vit.attention mass in r >= baseline - 0.05
""")
    assert not spec.errors
    rel = [e.relative for e in spec.expectations]
    assert rel == [Relative("-", 0.05), Relative("=", 0.0), Relative("*", 0.9), Relative("-", 0.05)]
    assert all(e.value is None for e in spec.expectations)


def test_bad_structured_relative_values_are_errors_at_their_line(tmp_path):
    spec = _spec(tmp_path, """
  - {image: a, metric: mass_in, model: vit, method: attention, region: r, op: ">=", value: {baseline: x}}
  - {image: a, metric: mass_in, model: vit, method: attention, region: r, op: ">=", value: {base: 1}}
  - {image: a, metric: mass_in, model: vit, method: attention, region: r, op: ">=", value: "baseline / 2"}
""")
    messages = [(e.line, e.message) for e in spec.errors]
    assert len(messages) == 3 and not spec.expectations
    assert "offset in {baseline: <offset>} must be a number" in messages[0][1] and messages[0][0] == 7
    assert "{baseline: <offset>}" in messages[1][1] and messages[1][0] == 8
    assert "write baseline, baseline - <n>" in messages[2][1] and messages[2][0] == 9


# ------------------------------------------------------------------ the values file
def test_values_file_is_stable_and_a_change_is_a_one_line_diff(tmp_path):
    audit = tmp_path / "audit_x.yaml"
    entries = [{"file": str(audit), "key": f"img{i}::vit.attention-mass_in[r]", "value": 0.1 * i} for i in range(5)]
    entries.append({"file": str(audit), "key": "scenes::mean-vit.attention-mass_in[r]", "value": 0.5,
                    "per_image": {"b.png": 0.25, "a.png": 0.75}})
    [path] = value_baselines.write_recorded(reversed(entries))
    assert path == tmp_path / "baselines" / "audit_x" / "values.json"
    first = path.read_text()
    value_baselines.write_recorded(entries)  # another order, the same text
    assert path.read_text() == first
    doc = json.loads(first)
    assert list(doc["values"]) == sorted(doc["values"])
    assert list(doc["values"]["scenes::mean-vit.attention-mass_in[r]"]["per_image"]) == ["a.png", "b.png"]
    # Recording one new value (the others not re-run) changes exactly that line.
    value_baselines.write_recorded([{"file": str(audit), "key": "img3::vit.attention-mass_in[r]", "value": 0.123}])
    diff = [d for d in difflib.ndiff(first.splitlines(), path.read_text().splitlines()) if d[:1] in "+-"]
    assert len(diff) == 2 and "0.123" in diff[1]
    assert value_baselines.read(path)["img4::vit.attention-mass_in[r]"]["value"] == pytest.approx(0.4)


# ------------------------------------------------------------------ in a run
RELATIVE = """
- blob: vit.attention mass in left >= baseline - 0.05
- blob: cnn prob(red) > baseline * 0.9
- blob: cnn.gradcam mass in left < baseline + 0.2
- {image: blob, metric: mass_in, model: vit, method: rollout, region: left, op: ">=", value: {baseline: 0}}
"""


def test_missing_then_recorded_then_compared(project):
    write_audit(project, "audit_rel.yaml", RELATIVE)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    assert "no recorded value for 'blob: vit.attention mass in left >= baseline - 0.05'" in out
    assert "record it with: pytest audit_rel.yaml --audit-update-baselines" in out

    project.runpytest("-p", "no:cacheprovider", "--audit-update-baselines").assert_outcomes(passed=4)
    stored = value_baselines.read(project.path / "baselines" / "audit_rel" / "values.json")
    assert sorted(stored) == ["blob::cnn-prob[red]", "blob::cnn.gradcam-mass_in[left]",
                              "blob::vit.attention-mass_in[left]", "blob::vit.rollout-mass_in[left]"]
    recorded = {r["nodeid"].split("::")[-1]: r["value"] for r in report(project)["expectations"]}

    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)
    rows = {r["nodeid"].split("::")[-1]: r for r in report(project)["expectations"]}
    for key, entry in stored.items():
        row = rows[key.split("::")[1]]
        assert entry["value"] == recorded[key.split("::")[1]] == row["value"] == row["baseline"]
    b = rows["vit.attention-mass_in[left]"]["baseline"]
    assert rows["vit.attention-mass_in[left]"]["threshold"] == pytest.approx(b - 0.05)
    assert rows["cnn-prob[red]"]["threshold"] == pytest.approx(rows["cnn-prob[red]"]["baseline"] * 0.9)
    assert rows["cnn.gradcam-mass_in[left]"]["threshold"] == pytest.approx(rows["cnn.gradcam-mass_in[left]"]["baseline"] + 0.2)
    assert rows["vit.rollout-mass_in[left]"]["threshold"] == rows["vit.rollout-mass_in[left]"]["baseline"]


def test_a_worse_value_fails_with_baseline_current_and_difference(project):
    write_audit(project, "audit_rel.yaml", "- blob: vit.attention mass in left >= baseline - 0.01")
    project.runpytest("-p", "no:cacheprovider", "--audit-update-baselines").assert_outcomes(passed=1)
    path = project.path / "baselines" / "audit_rel" / "values.json"
    doc = json.loads(path.read_text())
    key = "blob::vit.attention-mass_in[left]"
    measured = doc["values"][key]
    doc["values"][key] = measured + 0.3  # as if a better model had been recorded
    path.write_text(json.dumps(doc))
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    from vitaudit.audit.evaluate import fmt

    assert (f"mass in 'left' = {fmt(measured)} (expected >= {fmt(measured + 0.29)}, baseline - 0.01 with baseline "
            f"{fmt(measured + 0.3)}); difference from the baseline: {-0.3:+.3g}") in out


def test_a_threshold_that_is_the_baseline_itself_is_named_once(project):
    write_audit(project, "audit_rel.yaml", "- blob: vit.attention mass in left >= baseline")
    project.runpytest("-p", "no:cacheprovider", "--audit-update-baselines").assert_outcomes(passed=1)
    path = project.path / "baselines" / "audit_rel" / "values.json"
    doc = json.loads(path.read_text())
    key = "blob::vit.attention-mass_in[left]"
    measured = doc["values"][key]
    doc["values"][key] = measured + 0.1
    path.write_text(json.dumps(doc))
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    from vitaudit.audit.evaluation import fmt

    assert (f"mass in 'left' = {fmt(measured)} (expected >= {fmt(measured + 0.1)}, the baseline); "
            f"difference from the baseline: {-0.1:+.3g}") in out
    assert "baseline with baseline" not in out


def test_unreadable_values_file_is_an_error_naming_it(project):
    write_audit(project, "audit_rel.yaml", "- blob: cnn prob(red) > baseline * 0.9")
    path = project.path / "baselines" / "audit_rel" / "values.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=0, failed=1)
    assert "cannot read value baselines baselines/audit_rel/values.json" in result.stdout.str()
    # Recording replaces it.
    project.runpytest("-p", "no:cacheprovider", "--audit-update-baselines").assert_outcomes(passed=1)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_xdist_workers_send_values_to_the_controller_which_writes_once(project):
    pytest.importorskip("xdist")
    write_audit(project, "audit_rel.yaml", """
        - blob: cnn prob(red) > baseline * 0.9
        - blob: cnn prob(green) > baseline * 0.9
    """)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--audit-update-baselines")
    result.assert_outcomes(passed=2)
    stored = value_baselines.read(project.path / "baselines" / "audit_rel" / "values.json")
    assert sorted(stored) == ["blob::cnn-prob[green]", "blob::cnn-prob[red]"]
    assert all(isinstance(e["value"], float) for e in stored.values())
    assert not list((project.path / "baselines" / "audit_rel").glob(".*tmp"))


def test_store_records_per_image_values_for_dataset_aggregates(tmp_path):
    """The API the dataset aggregates call: record a value with per-image rows as in audit.json."""
    from types import SimpleNamespace

    from vitaudit.audit.session import Outbox

    session = SimpleNamespace(outbox=Outbox(), update_baselines=True, value_stores={})
    audit = tmp_path / "audit_d.yaml"
    store = value_baselines.store_for(session, str(audit))
    assert value_baselines.store_for(session, str(audit)) is store
    rows = [{"image": "s/b.png", "value": 0.25, "passed": False}, {"image": "s/a.png", "value": float("nan"),
                                                                    "passed": None}]
    store.record("scenes::mean-vit.attention-mass_in[object]", 0.5, per_image=rows)
    sent = session.outbox.drain()["values"]
    assert sent == [{"file": str(audit), "key": "scenes::mean-vit.attention-mass_in[object]", "value": 0.5,
                     "per_image": {"s/b.png": 0.25, "s/a.png": None}}]
    value_baselines.write_recorded(sent)
    store = value_baselines.Store(str(audit), session)
    exp = SimpleNamespace(relative=Relative("-", 0.03), text="scenes: mean ...")
    assert value_baselines.resolve(exp, "scenes::mean-vit.attention-mass_in[object]", store) == (pytest.approx(0.47), 0.5)
    with pytest.raises(value_baselines.MissingBaseline, match="record it with: pytest .*audit_d.yaml --audit-update-baselines"):
        value_baselines.resolve(exp, "scenes::other", store)
