"""The pytest plugin end to end, through pytester: collection, ids, verdicts, errors, options."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from PIL import Image


def _warm_up_imports() -> None:
    """pytester's in-process runs drop modules first imported inside them; torch registers
    operator libraries once per process, so import what the audits use before any run."""
    import vitaudit
    import vitaudit.audit.evaluate  # noqa: F401
    import vitaudit.report  # noqa: F401

    m = vitaudit.load_model("resnet18", num_classes=2, model_kwargs={"layers": [1, 1, 1, 1], "channels": (8, 8, 8, 8)})
    vitaudit.explain(m, np.zeros((8, 8, 3), np.uint8), "gradcam")


_warm_up_imports()

MODELS = """
models:
  cnn: {name: resnet18, num_classes: 4, labels: [red, green, blue, gray], seed: 1,
        model_kwargs: {layers: [1, 1, 1, 1], channels: [8, 16, 32, 64]}}
  vit: {name: vit_tiny_patch16_224, num_classes: 4, labels: [red, green, blue, gray],
        model_kwargs: {img_size: 32, patch_size: 8, depth: 2}}
"""

IMAGES = """
images:
  blob:
    path: blob.png
    regions:
      all: {box: [0, 0, 48, 40]}
      left: {box: [0, 0, 0.5, 1], units: fraction}
"""


@pytest.fixture
def project(pytester: pytest.Pytester):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(pytester.path / "blob.png")
    return pytester


def write_audit(pytester: pytest.Pytester, name: str, expect: str, extra: str = "") -> None:
    body = MODELS + IMAGES + extra + "expect:\n" + textwrap.indent(textwrap.dedent(expect).strip(), "  ") + "\n"
    (pytester.path / name).write_text(body)


def line_of(pytester: pytest.Pytester, name: str, text: str) -> int:
    lines = (pytester.path / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def report(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "reports" / "audit.json").read_text())


def test_passing_audit_exits_zero_and_writes_the_report(project):
    write_audit(project, "audit_ok.yaml", """
        - blob: cnn top1 in [red, green, blue, gray]
        - blob: cnn.gradcam mass in all > 0.99
        - blob: vit.attention mass in all >= 0.99
        - blob: vit.rollout pointing game hits all
        - blob: agreement(vit.attention, vit.rollout) > -1.01
    """)
    result = project.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=5)
    assert result.ret == 0
    out = result.stdout.str()
    for line in ("audit_ok.yaml::blob::cnn-top1_in[red,green,blue,gray] PASSED",
                 "audit_ok.yaml::blob::cnn.gradcam-mass_in[all] PASSED",
                 "audit_ok.yaml::blob::agreement[vit.attention,vit.rollout] PASSED"):
        assert line in out
    result.stdout.fnmatch_lines(["audit report: *reports/audit.html*"])
    doc = report(project)
    rows = doc["expectations"]
    assert len(rows) == 5 and {r["outcome"] for r in rows} == {"passed"}
    html = (project.path / "reports" / "audit.html").read_text()
    assert "cnn.gradcam" in html and "data:image/jpeg;base64," in html


def test_a_failed_expectation_is_a_sentence_with_file_and_line(project):
    write_audit(project, "audit_fail.yaml", """
        - blob: cnn.gradcam mass in left > 1.5
        - blob: cnn prob(red) > 1.5
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    assert result.ret == 1
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    first, second = (line_of(project, "audit_fail.yaml", t) for t in ("mass in left", "prob(red)"))
    assert f"audit_fail.yaml:{first}: 'blob: cnn.gradcam mass in left > 1.5' failed: mass in 'left' = " in out
    assert "(expected > 1.5)" in out and "[image 'blob', model cnn = resnet18" in out
    assert f"audit_fail.yaml:{second}: 'blob: cnn prob(red) > 1.5' failed: prob('red') = " in out
    assert "Traceback" not in out and "vitaudit/plugin" not in out
    long = project.runpytest("-p", "no:cacheprovider", "--tb=long")
    assert "def runtest" in long.stdout.str()  # the internal traceback, only on request


def test_selection_and_standard_options(project):
    write_audit(project, "audit_sel.yaml", """
        - blob: cnn top1 in [red, green, blue, gray]
        - blob: cnn.gradcam mass in all > 0.99
        - blob: cnn prob(red) > 1.5
    """)
    project.runpytest("-p", "no:cacheprovider", "-k", "gradcam").assert_outcomes(passed=1)
    project.runpytest("-p", "no:cacheprovider", "-m", "audit_prediction").assert_outcomes(passed=1, failed=1)
    res = project.runpytest("-p", "no:cacheprovider", "-x")
    res.assert_outcomes(passed=2, failed=1)
    project.runpytest("-p", "no:cacheprovider", "--junitxml=junit.xml")
    xml = (project.path / "junit.xml").read_text()
    assert 'name="cnn.gradcam-mass_in[all]"' in xml and "failed: prob(" in xml
    # --lf reruns only the failure
    project.runpytest()
    project.runpytest("--lf").assert_outcomes(failed=1)


def test_one_broken_file_never_stops_the_others(project):
    write_audit(project, "audit_ok.yaml", "- blob: cnn.gradcam mass in all > 0.99")
    (project.path / "audit_broken.yaml").write_text("models: {a: [\nexpect: -\n")
    write_audit(project, "audit_partly.yaml", """
        - blob: cnn.gradcam mass in nowhere > 0.5
        - blob: cnn.gradcam mass in all > 0.99
        - blob: cnn.gradcan mass in all > 0.5
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=3)
    out = result.stdout.str()
    assert "audit_broken.yaml:" in out
    assert f"audit_partly.yaml:{line_of(project, 'audit_partly.yaml', 'nowhere')}: unknown region 'nowhere'" in out
    assert "did you mean 'gradcam'" in out
    assert {r["outcome"] for r in report(project)["expectations"] if r["file"] != "audit_ok.yaml"} >= {"error", "passed"}


def test_yaml_bomb_fails_at_its_line_and_the_session_goes_on(project):
    """A 9-level billion laughs (563 bytes, 10**9 nodes expanded) beside a good file."""
    import time
    from pathlib import Path

    bomb = Path(__file__).parent / "data" / "audits_bad" / "billion_laughs.yaml"
    (project.path / "audit_bomb.yaml").write_text(bomb.read_text())
    write_audit(project, "audit_ok.yaml", "- blob: cnn.gradcam mass in all > 0.99")
    start = time.perf_counter()
    result = project.runpytest("-p", "no:cacheprovider")
    assert time.perf_counter() - start < 60
    result.assert_outcomes(passed=1, failed=1)
    assert "audit_bomb.yaml:6: YAML over budget: the alias *a4 expands the file past 200,000 nodes" in result.stdout.str()
    assert {r["file"]: r["outcome"] for r in report(project)["expectations"]}["audit_ok.yaml"] == "passed"


def test_model_that_fails_to_load_fails_its_items_with_the_reason(project):
    extra = "\n".join([
        "  bad: {name: resnt18}",
    ])
    body = MODELS + extra + "\n" + IMAGES + textwrap.dedent("""
    expect:
      - blob: bad top1 in [red]
      - blob: bad.gradcam mass in all > 0.5
      - blob: cnn.gradcam mass in all > 0.99
    """)
    (project.path / "audit_badmodel.yaml").write_text(body)
    project.makeconftest("""
        import vitaudit.models

        attempts = []
        original = vitaudit.models.load_model

        def counting(spec, **kwargs):
            attempts.append(spec)
            return original(spec, **kwargs)

        vitaudit.models.load_model = counting

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"LOADS {sorted(attempts)}")
            vitaudit.models.load_model = original
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    for text in ("bad top1 in [red]", "bad.gradcam mass in all > 0.5"):
        assert f"'blob: {text}' on 'blob': model 'bad' (resnt18, declared at " in out
    assert "did you mean 'resnet18'" in out
    assert "LOADS ['resnet18', 'resnt18']" in out  # each model tried once


def test_model_without_its_weights_is_skipped_and_keeps_its_family(project):
    """The family comes from the name (the network built on the meta device), not '?'."""
    project.makeconftest("""
        import vitaudit.registry as registry

        timm_loader = registry._SOURCES["timm"]

        def offline(name, request):
            if request.pretrained:
                raise registry.WeightsUnavailable(f"pretrained weights for {name!r} are not available")
            return timm_loader(name, request)

        registry._SOURCES["timm"] = offline

        def pytest_unconfigure(config):  # in-process runs share the registry with later tests
            registry._SOURCES["timm"] = timm_loader
    """)
    extra = ("models:\n  hub: {name: vit_tiny_patch16_224, pretrained: true, model_kwargs: {img_size: 32, patch_size: 8}}\n"
             "  cnnhub: {name: resnet18, pretrained: true}\n")
    (project.path / "audit_hub.yaml").write_text(extra + IMAGES + "expect:\n  - blob: hub top1 is red\n"
                                                 "  - blob: cnnhub top1 is red\n")
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(skipped=2)
    families = {m["key"]: m["family"] for m in report(project)["run"]["models"]}
    assert families == {"hub": "vit", "cnnhub": "cnn"}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda_is_one_line_naming_the_option(project):
    write_audit(project, "audit_ok.yaml", "- blob: cnn.gradcam mass in all > 0.99")
    result = project.runpytest("-p", "no:cacheprovider", "--audit-device", "cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert errors == ["ERROR: --audit-device cuda: CUDA is not available on this machine "
                      f"(torch {__import__('torch').__version__} sees no CUDA device); use cpu or auto"]
    project.makeini("[pytest]\naudit_device = cuda:1\n")
    result = project.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: the ini key audit_device = cuda:1: CUDA is not available" in result.stderr.str()
    result = project.runpytest("-p", "no:cacheprovider", "--audit-device", "gpu")
    assert "ERROR: --audit-device gpu: unknown device 'gpu'; use auto, cpu, cuda or cuda:N" in result.stderr.str()


def test_missing_and_unreadable_images(project):
    (project.path / "broken.png").write_text("not a png")
    body = MODELS + textwrap.dedent("""
    images:
      gone: {path: gone.png}
      broken: {path: broken.png}
    expect:
      - broken: cnn top1 in [red, green, blue, gray]
      - gone: cnn top1 in [red]
    """)
    (project.path / "audit_img.yaml").write_text(body)
    result = project.runpytest("-p", "no:cacheprovider")
    # Each declaration is an error at its line, and each expectation that lost its image too.
    result.assert_outcomes(failed=4)
    out = result.stdout.str()
    assert f"audit_img.yaml:{line_of(project, 'audit_img.yaml', 'gone: {path')}: image file not found: " in out
    assert f"audit_img.yaml:{line_of(project, 'audit_img.yaml', 'broken: {path')}: image file is not a readable image" in out
    assert f"audit_img.yaml:{line_of(project, 'audit_img.yaml', '- gone:')}: image 'gone' is invalid" in out


def test_unknown_label_gets_close_matches(project):
    write_audit(project, "audit_lab.yaml", "- blob: cnn top1 is gren")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "unknown label 'gren'; close matches: 'green' (1)" in result.stdout.str()


def test_strict_xfail_stays_green_only_while_it_fails(project):
    write_audit(project, "audit_x.yaml", """
        - blob: cnn prob(red) > 1.5
          xfail: {reason: documents a known miss, strict: true}
    """)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(xfailed=1)
    assert report(project)["expectations"][0]["outcome"] == "xfailed"
    write_audit(project, "audit_x.yaml", """
        - blob: cnn prob(red) >= 0
          xfail: {reason: documents a known miss, strict: true}
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "XPASS(strict)" in result.stdout.str()


def test_baselines_missing_then_written_then_compared(project):
    write_audit(project, "audit_base.yaml", "- blob: vit.attention baseline similarity > 0.99")
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "create it with: pytest audit_base.yaml --audit-update-baselines" in result.stdout.str()
    project.runpytest("-p", "no:cacheprovider", "--audit-update-baselines").assert_outcomes(passed=1)
    stored = project.path / "baselines" / "audit_base" / "blob" / "vit.attention.npy"
    assert stored.is_file() and np.load(stored).dtype == np.float16
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    # A different model (another seed) drifts from the baseline.
    body = (project.path / "audit_base.yaml").read_text().replace("depth: 2}", "depth: 2}, seed: 9")
    (project.path / "audit_base.yaml").write_text(body)
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=1)


def test_report_options(project):
    write_audit(project, "audit_opt.yaml", "- blob: cnn top1 in [red, green, blue, gray]")
    project.runpytest("-p", "no:cacheprovider", "--audit-report", "out/r.html").assert_outcomes(passed=1)
    assert (project.path / "out" / "r.html").is_file() and (project.path / "out" / "r.json").is_file()
    project.runpytest("-p", "no:cacheprovider", "--audit-no-report", "--audit-report", "none/r.html")
    assert not (project.path / "none").exists()


def test_plain_tests_write_no_report(pytester):
    pytester.makepyfile("def test_x():\n    assert True\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_python_audits_share_the_machinery_and_the_report(project):
    project.makepyfile(test_py_audit="""
        import numpy as np
        from vitaudit.regions import Region

        def test_checks(audit_model, explain, audit):
            model = audit_model("resnet18", num_classes=4, labels=["red", "green", "blue", "gray"],
                                model_kwargs={"layers": [1, 1, 1, 1], "channels": (8, 16, 32, 64)})
            e = explain(model, "blob.png", "gradcam")
            audit.top1_in(e, ["red", "green", "blue", "gray"])
            audit.check(e, "mass_in", Region("all", "box", ((0, 0), (48, 40))), ">", 0.99)
            audit.check(e, "mass_in", Region("left", "box", ((0, 0), (24, 40))), ">", 1.5)
    """)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "test_py_audit.py:10: 'resnet18.gradcam mass in left > 1.5' failed: mass in 'left' = " in out
    # the traceback ends at the user's line (the fixture's frames are hidden)
    assert "vitaudit/plugin/fixtures.py" not in out and "\ntest_py_audit.py:10: AuditFailure" in out, out
    rows = report(project)["expectations"]
    assert [r["outcome"] for r in rows] == ["passed", "passed", "failed"]
    assert all(r["kind"] == "python" for r in rows)
    assert len({r["nodeid"] for r in rows}) == 3  # one identity per check, for vitaudit compare
    assert rows[2]["nodeid"] == "test_py_audit.py::test_checks::resnet18.gradcam mass in left > 1.5"


def test_crash_in_one_item_and_interrupt_still_leave_a_report(project):
    write_audit(project, "audit_a.yaml", """
        - blob: cnn top1 in [red, green, blue, gray]
        - blob: cnn.gradcam mass in all > 0.99
        - blob: vit.attention mass in all > 0.99
    """)
    project.makeconftest("""
        import pytest

        def pytest_runtest_call(item):
            if "gradcam" in item.nodeid:
                raise RuntimeError("boom inside one item")
            if "vit.attention" in item.nodeid:
                raise KeyboardInterrupt
    """)
    result = project.runpytest_subprocess("-p", "no:cacheprovider")  # a real Ctrl-C, in its own process
    assert result.ret == 2  # interrupted
    doc = report(project)
    outcomes = {r["nodeid"].split("::")[-1]: r["outcome"] for r in doc["expectations"]}
    assert outcomes["cnn-top1_in[red,green,blue,gray]"] == "passed"
    assert outcomes["cnn.gradcam-mass_in[all]"] == "failed"
    assert doc["run"]["interrupted"] is True


def test_audit_file_names_and_labels_cannot_inject_markup(project):
    """Names and strings from audit files reach the report only escaped (issue: report safety)."""
    from html.parser import HTMLParser

    evil_label = "<script>alert(1)</script>"
    evil_attr = '"><img src=x onerror=alert(2)>'
    name = "audit_<img src=x onerror=alert(3)>.yaml"
    write_audit(project, name, f"- blob: cnn top1 is '{evil_label}'\n- blob: cnn top1 is '{evil_attr}'")
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(failed=2)
    html = (project.path / "reports" / "audit.html").read_text()

    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.handlers, self.scripts, self.imgs_with_x = [], [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            self.handlers += [k for k in attrs if k.startswith("on")]
            if tag == "script":
                self.scripts.append(attrs)
            if tag == "img" and attrs.get("src") == "x":
                self.imgs_with_x.append(attrs)

    tags = Tags()
    tags.feed(html)
    assert tags.handlers == [] and tags.imgs_with_x == []
    assert all("nonce" in a for a in tags.scripts), "every script of the report is its own (nonce'd)"
    assert "<script>alert(1)" not in html and "onerror=alert(2)>" not in html and "onerror=alert(3)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as text
    assert "audit_&lt;img src=x onerror=alert(3)&gt;.yaml" in html


def test_truncated_image_is_an_error_at_its_declaration(project):
    data = (project.path / "blob.png").read_bytes()
    (project.path / "cut.png").write_bytes(data[: len(data) // 2])
    body = MODELS + textwrap.dedent("""
    images:
      cut: {path: cut.png}
    expect:
      - cut: cnn top1 in [red, green, blue, gray]
    """)
    (project.path / "audit_cut.yaml").write_text(body)
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert f"audit_cut.yaml:{line_of(project, 'audit_cut.yaml', 'cut: {path')}: image file is not a readable image" in out
    assert f"audit_cut.yaml:{line_of(project, 'audit_cut.yaml', '- cut:')}: image 'cut' is invalid" in out


def test_xdist_workers_results_merge_into_one_report(project):
    import xdist  # noqa: F401  (a test dependency in pyproject: missing, this fails rather than skips)

    write_audit(project, "audit_a.yaml", """
        - blob: cnn top1 in [red, green, blue, gray]
        - blob: cnn.gradcam mass in all > 0.99
        - blob: vit.attention mass in all > 0.99
    """)
    write_audit(project, "audit_b.yaml", """
        - blob: vit.rollout mass in all > 0.99
        - blob: cnn prob(red) > 1.5
    """)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=4, failed=1)
    doc = report(project)
    assert len(doc["expectations"]) == 5
    assert {r["file"] for r in doc["expectations"]} == {"audit_a.yaml", "audit_b.yaml"}
    run = doc["run"]
    assert {m["key"] for m in run["models"]} >= {"cnn", "vit"}
    assert any(v["views"] for v in run["images"])


def test_xdist_workers_give_torch_their_share_of_the_cores(project, monkeypatch):
    """Two workers on this machine's cores run torch, and numpy's BLAS, with half of them each (at
    least one thread): their threads busy-wait, and two processes of a thread per core each were 3x
    slower under load."""
    import os

    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    write_audit(project, "audit_a.yaml", "- blob: cnn top1 in [red, green, blue, gray]\n")
    write_audit(project, "audit_b.yaml", "- blob: vit.attention mass in all > 0.0\n")
    project.makeconftest("""
        import os, torch
        from threadpoolctl import threadpool_info
        def pytest_runtest_teardown(item):  # torch's threads, and numpy's BLAS threads
            blas = [str(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
            with open(f"threads-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.txt", "a") as fh:
                fh.write(" ".join([str(torch.get_num_threads())] + blas) + "\\n")
    """)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile")
    result.assert_outcomes(passed=2)
    seen = {f.name: set(f.read_text().split()) for f in project.path.glob("threads-*.txt")}
    assert seen  # whichever worker ran an item (xdist may give both files to one) capped its threads
    share = min(torch.get_num_threads(), max(1, len(os.sched_getaffinity(0)) // 2))
    assert all(v == {str(share)} for v in seen.values()), (seen, share)

    # The user's own setting wins.
    for f in project.path.glob("threads-*.txt"):
        f.unlink()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile").assert_outcomes(passed=2)
    assert {v for f in project.path.glob("threads-*.txt") for v in f.read_text().split()} == {"2"}


def test_baseline_updates_under_xdist_lose_nothing(project):
    """Two workers write the baselines of one file: every file is there, whole, written once, as one process writes it."""
    pytest.importorskip("xdist")
    rng = np.random.default_rng(2)
    n = 10
    images, expects = ["images:"], ["expect:"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)).save(project.path / f"im{i}.png")
        images.append(f"  im{i}: {{path: im{i}.png}}")
        for ref in ("cnn.gradcam", "cnn.eigencam"):  # two items per map: the same file wanted twice
            expects += [f"  - im{i}: {ref} baseline similarity > 0.9",
                        f"  - im{i}: {ref} baseline similarity > 0.5 by spearman"]
    (project.path / "audit_many.yaml").write_text(MODELS + "\n".join(images) + "\n" + "\n".join(expects) + "\n")
    project.makeconftest("""
        import os
        import types

        import vitaudit.audit.baselines as baselines

        here = os.path.dirname(__file__)

        def logged(src, dst):  # every rename over a baseline, from any worker
            os.replace(src, dst)
            with open(os.path.join(here, "writes.log"), "a") as log:
                log.write(os.path.relpath(dst, here) + "\\n")

        def pytest_configure(config):
            baselines.os = types.SimpleNamespace(**{**vars(os), "replace": logged})

        def pytest_unconfigure(config):
            baselines.os = os
    """)
    folder = project.path / "baselines" / "audit_many"
    wanted = sorted(f"im{i}/{ref}.npy" for i in range(n) for ref in ("cnn.gradcam", "cnn.eigencam"))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--audit-update-baselines",
                                          "--audit-no-report")
    result.assert_outcomes(passed=4 * n)
    written = {p.relative_to(folder).as_posix(): np.load(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    assert sorted(written) == wanted  # no file missing, no temporary file left
    assert all(a.dtype == np.float16 and a.ndim == 2 and np.isfinite(a).all() and a.max() > 0 for a in written.values())
    log = (project.path / "writes.log").read_text().split()
    assert sorted(log) == [f"baselines/audit_many/{name}" for name in wanted]  # each written once
    # the same bytes as one process writes, so a second update writes nothing
    (project.path / "writes.log").unlink()
    project.runpytest("-p", "no:cacheprovider", "--audit-update-baselines", "--audit-no-report").assert_outcomes(passed=4 * n)
    assert not (project.path / "writes.log").exists()
    for name, data in written.items():
        np.testing.assert_array_equal(np.load(folder / name), data)


def test_images_that_do_not_fit_the_device_fail_alone_with_the_cause(project):
    """Out of memory injected on the CPU: batches of 2+ never fit, and the big image never does."""
    Image.fromarray(np.zeros((40, 120, 3), np.uint8)).save(project.path / "big.png")
    project.makeconftest("""
        import torch

        import vitaudit.engine as engine

        original = engine._run_batch

        def small_device(model, images, *args):
            if len(images) > 1 or any(im.size[1] > 100 for im in images):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
            return original(model, images, *args)

        engine._run_batch = small_device

        def pytest_unconfigure(config):
            engine._run_batch = original
    """)
    extra = "  big: {path: big.png}\n"
    write_audit(project, "audit_oom.yaml", """
        - blob: cnn.gradcam mass in all > 0.99
        - big: cnn top1 in [red, green, blue, gray]
        - blob: cnn top1 in [red, green, blue, gray]
    """, extra=extra)
    result = project.runpytest("-p", "no:cacheprovider", "--audit-batch-size", "4", "--audit-no-report")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([f"*audit_oom.yaml:{line_of(project, 'audit_oom.yaml', '- big:')}: * on 'big': out of "
                                 "memory even for a batch of 1 (batch sizes tried: 1): OutOfMemoryError: CUDA out of "
                                 "memory. Tried to allocate 9.00 GiB [[]image */big.png[]]"])


def test_maps_metrics_and_pictures_stay_at_the_working_resolution(project):
    """With --audit-max-side 64 a 300x400 photo's maps are never built larger than 48x64."""
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(project.path / "big.png")
    project.makeconftest("""
        import vitaudit.explanation as explanation

        shapes = []
        original = explanation.upsample_map

        def recording(grid, geometry):
            out = original(grid, geometry)
            shapes.append(out.shape)
            return out

        explanation.upsample_map = recording

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"MAPS {sorted(set(shapes))}")
            explanation.upsample_map = original
    """)
    extra = ("  big:\n    path: big.png\n    regions:\n      left: {box: [0, 0, 200, 300]}\n"
             "      tri: {polygon: [[0, 0], [400, 0], [0, 300]]}\n      whole: {box: [0, 0, 1, 1], units: fraction}\n")
    write_audit(project, "audit_work.yaml", """
        - big: cnn.gradcam mass in left > 0
        - big: cnn.gradcam mass in tri > 0
        - big: cnn.gradcam pointing game hits whole within 30px
        - big: agreement(cnn.gradcam, cnn.eigencam) > -1.01
        - big: cnn.gradcam baseline similarity > 0.5
    """, extra=extra)
    result = project.runpytest("-p", "no:cacheprovider", "--audit-max-side", "64", "--audit-update-baselines")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["MAPS [[](48, 64)[]]"])
    assert np.load(project.path / "baselines" / "audit_work" / "big" / "cnn.gradcam.npy").shape == (48, 64)
    bad = project.runpytest("-p", "no:cacheprovider", "--audit-max-side", "10")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--audit-max-side must be 0 (full size) or at least 32 pixels, got 10" in bad.stderr.str()


def test_every_image_runs_once_in_batches(project):
    """One pass per image and model for all of a file's expectations, batched in file order."""
    rng = np.random.default_rng(1)
    images = ["images:"]
    expects = ["expect:"]
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)).save(project.path / f"im{i}.png")
        images.append(f"  im{i}: {{path: im{i}.png, regions: {{all: {{box: [0, 0, 1, 1], units: fraction}}}}}}")
        expects += [f"  - im{i}: cnn top1 in [red, green, blue, gray]",
                    f"  - im{i}: cnn.gradcam mass in all > 0.99",
                    f"  - im{i}: cnn.eigencam mass in all > 0.99"]
    (project.path / "audit_many.yaml").write_text(MODELS + "\n".join(images) + "\n" + "\n".join(expects) + "\n")
    project.makeconftest("""
        import vitaudit.engine as engine

        calls = []
        original = engine.forward

        def counting(model, x, needs):
            calls.append(int(x.shape[0]))
            return original(model, x, needs)

        engine.forward = counting

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"FORWARDS {calls}")
            engine.forward = original
    """)
    result = project.runpytest("-p", "no:cacheprovider", "--audit-batch-size", "2", "--audit-no-report")
    result.assert_outcomes(passed=15)
    result.stdout.fnmatch_lines(["FORWARDS [[]2, 2, 1[]]"])
