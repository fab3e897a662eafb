"""``vitaudit compare OLD.json NEW.json``: matching, categories, per-image flips, formats, exit codes.

The runs are synthetic ``audit.json`` documents written through the real writer
(:func:`vitaudit.report.audit_document`) from :mod:`vitaudit.results` data, so they follow its schema.
"""
from __future__ import annotations

import json

import pytest

from vitaudit import cli
from vitaudit.compare import compare_files, load
from vitaudit.compare_formats import to_markdown
from vitaudit.report import audit_document
from vitaudit.results import ExpectationResult, RunResults


def row(nodeid: str, outcome: str, value: float | None, line: int, **extra) -> ExpectationResult:
    return ExpectationResult(nodeid=f"audits/audit_x.yaml::{nodeid}", file="audits/audit_x.yaml", line=line,
                             text=f"{nodeid.replace('::', ': ')} > 0.5", kind="localisation", outcome=outcome,
                             value=value, op=extra.pop("op", ">"), threshold=extra.pop("threshold", 0.5), **extra)


def per_image(values: dict[str, float], cut: float = 0.3) -> list[dict]:
    return [{"image": k, "value": v, "passed": v > cut} for k, v in values.items()]


def write_run(path, results: list[ExpectationResult]) -> str:
    run = RunResults(started_at="2026-01-01T00:00:00+00:00", duration=1.0, command="pytest", environment={},
                     results=results)
    path.write_text(json.dumps(audit_document(run)))
    return str(path)


@pytest.fixture
def runs(tmp_path):
    old = [
        row("a::vit.attention-mass_in[obj]", "passed", 0.70, 10),
        row("a::cnn.gradcam-mass_in[obj]", "failed", 0.40, 11),
        row("b::vit.attention-mass_in[obj]", "passed", 0.60, 12),
        row("b::vit-top1_is[cat]", "passed", 0.90, 13, op=None, threshold=None),
        row("b::gone-mass_in[obj]", "passed", 0.55, 14),
        row("b::broken-mass_in[obj]", "failed", 0.1, 16),
        row("scenes::mean-vit.attention-mass_in[obj]", "passed", 0.62, 20, image=None, dataset="scenes",
            aggregate="mean", n_images=3, per_image=per_image({"s/1.png": 0.9, "s/2.png": 0.5, "s/3.png": 0.2})),
    ]
    new = [
        row("a::vit.attention-mass_in[obj]", "failed", 0.20, 10),  # newly failing, worse by 0.5
        row("a::cnn.gradcam-mass_in[obj]", "passed", 0.60, 11),  # newly passing
        row("b::vit.attention-mass_in[obj]", "passed", 0.605, 12),  # within the tolerance
        row("b::vit-top1_is[cat]", "skipped", None, 13, op=None, threshold=None),  # neither side fails
        row("b::new-mass_in[obj]", "failed", 0.1, 15),  # added, failing
        row("b::broken-mass_in[obj]", "error", None, 16),  # failing before and now: not newly failing
        row("scenes::mean-vit.attention-mass_in[obj]", "passed", 0.61, 20, image=None, dataset="scenes",
            aggregate="mean", n_images=3, per_image=per_image({"s/1.png": 0.9, "s/2.png": 0.25, "s/3.png": 0.35})),
    ]
    return write_run(tmp_path / "old.json", old), write_run(tmp_path / "new.json", new)


def ids(items) -> list[str]:
    return [getattr(x, "new", x).nodeid.split("::", 1)[1] for x in items]


def test_categories(runs):
    cmp = compare_files(*runs)
    assert ids(cmp.newly_failing) == ["a::vit.attention-mass_in[obj]"]
    assert ids(cmp.newly_passing) == ["a::cnn.gradcam-mass_in[obj]"]
    assert ids(cmp.other_changes) == ["b::vit-top1_is[cat]", "b::broken-mass_in[obj]"]
    assert ids(cmp.added) == ["b::new-mass_in[obj]"] and ids(cmp.removed) == ["b::gone-mass_in[obj]"]
    # Deltas beyond 0.01, worse first; 0.605 vs 0.60 is within the tolerance.
    assert [(ids([d])[0], round(d.delta, 3), d.worse) for d in cmp.deltas] == [
        ("a::vit.attention-mass_in[obj]", -0.5, True), ("a::cnn.gradcam-mass_in[obj]", 0.2, False)]
    # Per-image flips of the aggregate, newly failing images first; its verdict did not change.
    assert [(f.image, f.old_passed, f.new_passed) for f in cmp.flips] == [
        ("s/2.png", True, False), ("s/3.png", False, True)]
    assert cmp.regressed
    assert len(compare_files(*runs, tolerance=0.001).deltas) == 4


def test_no_regression_when_only_better_or_the_same(tmp_path, runs):
    same = compare_files(runs[0], runs[0])
    assert same.empty and not same.regressed
    old = write_run(tmp_path / "o.json", [row("a::x", "failed", 0.2, 1), row("a::y", "passed", 0.9, 2),
                                          row("a::z", "failed", 0.1, 3)])
    new = write_run(tmp_path / "n.json", [row("a::x", "passed", 0.7, 1), row("a::y", "passed", 0.6, 2)])
    better = compare_files(old, new)  # one fixed, one worse but still passing, one removed
    assert ids(better.newly_passing) == ["a::x"] and ids(better.removed) == ["a::z"]
    assert [d.worse for d in better.deltas] == [True, False]
    assert not better.newly_failing and not better.regressed


def test_added_failing_expectation_alone_is_a_regression(tmp_path):
    old = write_run(tmp_path / "o.json", [row("a::x", "passed", 0.7, 1)])
    new = write_run(tmp_path / "n.json", [row("a::x", "passed", 0.7, 1), row("a::y", "failed", 0.1, 2)])
    assert compare_files(old, new).regressed
    new_ok = write_run(tmp_path / "n2.json", [row("a::x", "passed", 0.7, 1), row("a::y", "passed", 0.9, 2)])
    assert not compare_files(old, new_ok).regressed


def test_text_format_and_exit_codes(runs, capsys):
    assert cli.main(["compare", *runs]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("REGRESSED: 1 newly failing, 1 newly passing")
    # Newly failing is listed first, with where, the outcomes and the values.
    first = out.index("newly failing (1):")
    assert first < out.index("newly passing (1):") < out.index("added (1):") < out.index("removed (1):")
    assert "audits/audit_x.yaml:10  passed -> failed" in out and "value 0.7 -> 0.2 (expected > 0.5)" in out
    assert "audits/audit_x.yaml:20  s/2.png  pass -> fail  (0.5 -> 0.25)" in out
    assert "(-0.5, worse)" in out
    assert cli.main(["compare", runs[0], runs[0]]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("no regression: 0 newly failing")


def test_markdown_format(runs, capsys):
    assert cli.main(["compare", *runs, "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert md.startswith("### vitaudit: changes since the previous run")
    assert ":x: **REGRESSED" in md
    assert "#### Newly failing (1)" in md and "#### Per-image verdicts flipped (2)" in md
    assert "| `audits/audit_x.yaml:10` | a: vit.attention-mass_in[obj] &gt; 0.5 | passed → **failed** |" in md
    for line in md.splitlines():
        if line.startswith("| `"):
            assert line.count(" | ") + 2 == line.count("|") - line.count("\\|")  # no stray pipes


def test_markdown_escapes_table_breaking_text(tmp_path):
    nasty = row("a::x", "failed", 0.1, 1)
    nasty.text = "a: <b>x</b> | y\nz"
    old = write_run(tmp_path / "o.json", [row("a::x", "passed", 0.9, 1)])
    new = write_run(tmp_path / "n.json", [nasty])
    md = to_markdown(compare_files(old, new))
    assert "&lt;b&gt;x&lt;/b&gt; \\| y z" in md and "<b>" not in md


def test_json_format(runs, capsys):
    assert cli.main(["compare", *runs, "--format", "json", "--tolerance", "0.3"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["regressed"] is True and doc["tolerance"] == 0.3
    assert [d["new"]["nodeid"].split("::", 1)[1] for d in doc["deltas"]] == ["a::vit.attention-mass_in[obj]"]
    assert doc["newly_failing"][0]["old"]["outcome"] == "passed"
    assert doc["flips"][0]["image"] == "s/2.png"


@pytest.mark.parametrize(("content", "says"), [
    (None, "no such file"),
    ("{oops", "not JSON"),
    ("[1, 2]", "not a vitaudit audit.json"),
    ('{"format": "other"}', "not a vitaudit audit.json"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, runs, capsys, content, says):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert cli.main(["compare", runs[0], str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and str(bad) in err


def test_bad_tolerance_is_a_usage_error(runs):
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", *runs, "--tolerance", "-1"])
    assert exc.value.code == 2


def test_items_of_every_image_are_told_apart_by_their_image(tmp_path):
    a, b = row("a::x", "passed", 0.9, 7, image="a"), row("b::x", "passed", 0.9, 7, image="b")
    a.text = b.text = "*: vit.attention mass in obj > 0.5"
    a2, b2 = (ExpectationResult.from_dict({**r.to_dict(), "outcome": "failed", "value": 0.1}) for r in (a, b))
    cmp = compare_files(write_run(tmp_path / "o.json", [a, b]), write_run(tmp_path / "n.json", [a2, b2]))
    assert [c.new.where for c in cmp.newly_failing] == ["audits/audit_x.yaml:7 [a]", "audits/audit_x.yaml:7 [b]"]
    named = row("a::y", "passed", 0.9, 8, image="a")
    assert compare_files(write_run(tmp_path / "p.json", [named]), write_run(tmp_path / "p.json", [named])).empty
    from vitaudit.compare import Row

    assert Row.from_dict(named.to_dict()).where == "audits/audit_x.yaml:8"  # its text names the image


def test_reads_the_short_expectations_list_too(tmp_path, runs):
    doc = json.loads(open(runs[0]).read())
    del doc["run"]
    (tmp_path / "short.json").write_text(json.dumps(doc))
    assert [r.nodeid for r in load(tmp_path / "short.json")] == [r.nodeid for r in load(runs[0])]
