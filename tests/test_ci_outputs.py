"""What a CI job sees: the Markdown summary (file and $GITHUB_STEP_SUMMARY), JUnit properties, and the
report's "changed since" section (``--audit-compare``)."""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET


from test_compare import row
from test_plugin import line_of, project, report, write_audit  # noqa: F401  (the same tiny-model project)
from vitaudit.compare import Row, compare
from vitaudit.report import render_html
from vitaudit.results import RunResults

EXPECT = """
- blob: cnn top1 in [red, green, blue, gray]
- blob: vit.attention mass in all > 0.99
- blob: cnn prob(red) > 1.5
"""


# ------------------------------------------------------------------ Markdown summary
def test_summary_file_lists_counts_failures_and_the_report(project, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    write_audit(project, "audit_ci.yaml", EXPECT)
    result = project.runpytest("-p", "no:cacheprovider", "--audit-summary", "out/summary.md")
    result.assert_outcomes(passed=2, failed=1)
    md = (project.path / "out" / "summary.md").read_text()
    assert md.startswith("## vitaudit: :x: failed")
    assert "3 expectations: 2 passed, 1 failed" in md
    assert "| passed | 2 |" in md and "| failed | 1 |" in md
    line = line_of(project, "audit_ci.yaml", "prob(red)")
    failure = next(x for x in md.splitlines() if x.startswith(f"| `audit_ci.yaml:{line}`"))
    assert "blob: cnn prob(red) &gt; 1.5" in failure and "(expected &gt; 1.5)" in failure
    assert f"Report: `{project.path / 'reports' / 'audit.html'}`" in md
    assert "summary: " in result.stdout.str()


def test_summary_says_when_it_cut_a_message():
    from vitaudit.plugin.summary import MAX_MESSAGE, markdown

    long, short = row("a::x", "failed", 0.2, 10), row("a::y", "failed", 0.1, 11)
    long.message, short.message = "m" * 280 + " and then the part that says why " + "z" * 40, "short and whole"
    md = markdown(_run([long, short]))
    cells = {x.split(" | ")[1]: x.split(" | ")[-1].rstrip(" |") for x in md.splitlines() if x.startswith("| `audits/")}
    assert cells["a: x &gt; 0.5"].endswith("…") and MAX_MESSAGE - 5 < len(cells["a: x &gt; 0.5"]) <= MAX_MESSAGE
    assert cells["a: y &gt; 0.5"] == "short and whole"


def test_github_step_summary_is_appended_without_any_option(project, monkeypatch):
    step = project.path / "step_summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    write_audit(project, "audit_ci.yaml", "- blob: cnn top1 in [red, green, blue, gray]")
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    text = step.read_text()
    assert text.startswith("earlier step\n## vitaudit: :white_check_mark: passed")
    assert "| passed | 1 |" in text and "Failures" not in text


def test_no_summary_without_option_or_github(project, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    write_audit(project, "audit_ci.yaml", "- blob: cnn top1 in [red, green, blue, gray]")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "summary:" not in result.stdout.str()
    assert not list(project.path.rglob("*.md"))


# ------------------------------------------------------------------ JUnit
def test_junit_properties_carry_the_numbers(project):
    write_audit(project, "audit_ci.yaml", EXPECT)
    project.runpytest("-p", "no:cacheprovider", "--junitxml", "junit.xml").assert_outcomes(passed=2, failed=1)
    cases = ET.parse(project.path / "junit.xml").getroot().iter("testcase")
    props = {c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")} for c in cases}
    doc = {r["nodeid"].split("::")[-1]: r for r in report(project)["expectations"]}
    assert set(props) == set(doc)
    for name, p in props.items():
        r = doc[name]
        assert p["kind"] == r["kind"] and p["metric"] == r["metric"]
        assert float(p["value"]) == r["value"]
        assert p["threshold"] == ("" if r["threshold"] is None else repr(r["threshold"]))
        assert p["audit"].startswith("audit_ci.yaml:")
        assert p["id"] == r["nodeid"]
    assert props["cnn-prob[red]"]["threshold"] == "1.5" and props["cnn-prob[red]"]["op"] == ">"


def test_junit_properties_of_a_problem_in_the_audit_file(project):
    write_audit(project, "audit_ci.yaml", EXPECT + "- blob: cnn prob(red) > lots\n")
    project.runpytest("-p", "no:cacheprovider", "--junitxml", "junit.xml").assert_outcomes(passed=2, failed=2)
    cases = {c.get("name"): c for c in ET.parse(project.path / "junit.xml").getroot().iter("testcase")}
    line = line_of(project, "audit_ci.yaml", "lots")
    props = {p.get("name"): p.get("value") for p in cases[f"error@L{line}"].iter("property")}
    row_ = next(r for r in report(project)["expectations"] if r["kind"] == "error")
    assert props == {"id": row_["nodeid"], "audit": f"audit_ci.yaml:{line}", "kind": "error", "metric": "",
                     "value": "", "threshold": ""}


# ------------------------------------------------------------------ report: changed since
def _run(results) -> RunResults:
    return RunResults(started_at="x", duration=1.0, command="pytest", environment={}, results=results)


def test_report_section_and_card_deltas():
    old = [row("a::x", "passed", 0.7, 10), row("a::y", "passed", 0.5, 11), row("a::w", "passed", 0.9, 13)]
    new = [row("a::x", "failed", 0.2, 10), row("a::z", "passed", 0.5, 12), row("a::w", "passed", 0.9, 13)]
    new[0].text = "a: <script>alert(1)</script> x"
    cmp = compare([Row.from_dict(r.to_dict()) for r in old], [Row.from_dict(r.to_dict()) for r in new],
                  old_name="main/audit.json")
    html = render_html(_run(new), comparison=cmp)
    section = html[html.index('id="changes"'):html.index("<h2>Run</h2>")]
    assert "Changed since main/audit.json" in section and "REGRESSED: 1 newly failing" in section
    assert '<h3>Newly failing (1)</h3>' in section and '<a href="#c0">' in section
    assert "passed → failed · 0.7 → 0.2" in section
    assert "<h3>Removed (1)</h3>" in section and "a: y" in section
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    deltas = [html[i:html.index("</p>", i)] for i in range(len(html)) if html.startswith('<p class="delta">', i)]
    assert deltas == ['<p class="delta">since main/audit.json: 0.7 → 0.2 (-0.5), was passed',
                      '<p class="delta">new since main/audit.json',
                      '<p class="delta">since main/audit.json: unchanged']
    plain = render_html(_run(new))
    assert 'id="changes"' not in plain and 'class="delta"' not in plain


def test_audit_compare_option_in_a_run(project):
    write_audit(project, "audit_ci.yaml", "- blob: cnn prob(red) > 0.01\n- blob: cnn prob(green) > 0.01")
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    shutil.copy(project.path / "reports" / "audit.json", project.path / "old.json")
    body = (project.path / "audit_ci.yaml").read_text().replace("prob(green) > 0.01", "prob(green) > 0.99")
    (project.path / "audit_ci.yaml").write_text(body)
    project.runpytest("-p", "no:cacheprovider", "--audit-compare", "old.json").assert_outcomes(passed=1, failed=1)
    html = (project.path / "reports" / "audit.html").read_text()
    assert "Changed since old.json" in html and "<h3>Newly failing (1)</h3>" in html
    assert "passed → failed" in html and "since old.json: unchanged" in html
    # A missing comparison file is one line at the end, and the report is still written.
    result = project.runpytest("-p", "no:cacheprovider", "--audit-compare", "nowhere.json")
    assert "--audit-compare: nowhere.json: no such file" in result.stdout.str().replace(str(project.path) + "/", "")
    assert 'id="changes"' not in (project.path / "reports" / "audit.html").read_text()
    assert json.loads((project.path / "reports" / "audit.json").read_text())["summary"]["failed"] == 1
