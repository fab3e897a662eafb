"""docs/ci.md: both CI configurations are parsed, and every shell step runs against a small project.

The GitHub workflow runs twice, as a push to main and then as a pull request that swaps in the shortcut
model; its ``uses:`` steps are checked (what they cache, restore, upload) and the cache ones simulated
with a folder. The GitLab job runs as a branch against the main branch's artifact, served by ``file://``
URLs to curl. The one command not run for real is ``pip install`` (it needs the network): a stand-in
on ``PATH`` records it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ci.md"
SCENES = ROOT / "audits" / "images" / "scenes"

AUDIT = """\
models:
  resnet: {name: "fixture:resnet-scenes"}
images:
  striped:
    path: scenes/shortcut_striped_0.png
    regions:
      object: {mask: scenes/shortcut_striped_0_object.png}
expect:
  - striped: resnet.gradcam mass in object >= baseline - 0.05
  - striped: resnet prob(striped) >= baseline * 0.9
"""


def yaml_blocks() -> dict[str, dict]:
    """The doc's YAML blocks, by the heading above them."""
    text = DOC.read_text()
    out, heading = {}, ""
    for m in re.finditer(r"^## (?P<h>[^\n]+)$|^```yaml\n(?P<body>.*?)^```$", text, re.MULTILINE | re.DOTALL):
        if m["h"]:
            heading = m["h"].strip()
        else:
            out[heading] = yaml.safe_load(m["body"])
    return out


def _env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_", "PYTEST_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A project with a tiny audit whose values were recorded (once for the module); the recording
    run's ``reports/audit.json`` serves as the main branch's last run where one is needed."""
    project = tmp_path_factory.mktemp("template") / "project"
    (project / "audits" / "scenes").mkdir(parents=True)
    for name in ("shortcut_striped_0.png", "shortcut_striped_0_object.png"):
        shutil.copy(SCENES / name, project / "audits" / "scenes" / name)
    (project / "audits" / "audit_ci.yaml").write_text(AUDIT)
    run = subprocess.run(["pytest", "audits/", "-p", "no:cacheprovider", "--audit-update-baselines"], cwd=project,
                         env=_env(project), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (project / "audits" / "baselines" / "audit_ci" / "values.json").is_file()
    return project


@pytest.fixture
def workspace(recorded, tmp_path):
    """A fresh copy of the recorded project (without reports), and ``pip`` replaced by a recorder."""
    project = tmp_path / "project"
    shutil.copytree(recorded, project, ignore=shutil.ignore_patterns("reports"))
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "pip").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/pip.log\n')
    (shim / "pip").chmod(0o755)
    return project, _env(shim), tmp_path


def use_shortcut_model(project: Path) -> None:
    audit = project / "audits" / "audit_ci.yaml"
    audit.write_text(audit.read_text().replace('fixture:resnet-scenes"', 'fixture:resnet-scenes-shortcut"'))


def bash(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------ GitHub Actions
def _condition(cond: str | None, ctx: dict, failed: bool) -> bool:
    """The few ``if:`` forms the workflow uses; anything else fails the test so the doc cannot drift."""
    if cond is None:
        return not failed
    terms = [t.strip() for t in cond.split("&&")]
    ok = "always()" in terms or not failed
    for t in terms:
        if t == "always()":
            continue
        m = re.fullmatch(r"github\.(event_name|ref) == '([^']+)'", t)
        assert m is not None, f"condition not simulated by this test: {t!r}"
        ok = ok and ctx[m[1]] == m[2]
    return ok


def run_workflow(workflow: dict, project: Path, env: dict, ctx: dict, store: Path) -> dict[str, object]:
    """Run the job's steps as GitHub would; returns step name -> return code (or 'skipped'/'done')."""
    results: dict[str, object] = {}
    failed = False
    for i, step in enumerate(workflow["jobs"]["audit"]["steps"]):
        name = step.get("name") or step.get("uses") or f"step {i}"
        if not _condition(step.get("if"), ctx, failed):
            results[name] = "skipped"
            continue
        if "run" in step:
            assert "${{" not in step["run"], "run steps use shell variables, not expressions"
            proc = bash(step["run"], project, {**env, "GITHUB_STEP_SUMMARY": str(ctx["summary"]),
                                               "GITHUB_EVENT_NAME": ctx["event_name"], "GITHUB_REF": ctx["ref"]})
            results[name] = proc.returncode
            results[name + ":out"] = proc.stdout + proc.stderr
            failed = failed or proc.returncode != 0
            continue
        uses, with_ = step["uses"], step.get("with", {})
        if uses.startswith("actions/cache/restore@"):
            keys = sorted(store.glob(with_["restore-keys"] + "*")) if store.is_dir() else []
            if keys:
                shutil.copytree(keys[-1], project / with_["path"], dirs_exist_ok=True)
        elif uses.startswith("actions/cache/save@"):
            key = with_["key"].replace("${{ github.sha }}", ctx["sha"])
            shutil.copytree(project / with_["path"], store / key)
        elif uses.startswith("actions/upload-artifact@"):
            assert (project / with_["path"]).is_dir()
        results[name] = "done"
    return results


def test_github_workflow(workspace):
    project, env, tmp = workspace
    workflow = yaml_blocks()["GitHub Actions"]
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    steps = workflow["jobs"]["audit"]["steps"]
    by_uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert by_uses["actions/setup-python"]["with"]["cache"] == "pip"
    cache_paths = by_uses["actions/cache"]["with"]["path"].split()
    assert cache_paths == ["~/.cache/huggingface", "~/.cache/torch"]
    assert by_uses["actions/upload-artifact"]["with"]["path"] == "reports/"
    assert by_uses["actions/upload-artifact"]["if"] == "always()"
    store = tmp / "actions-cache"

    # A push to main: the audit passes, and its audit.json is kept for pull requests.
    main_summary = tmp / "main-summary.md"
    ctx = {"event_name": "push", "ref": "refs/heads/main", "sha": "abc123", "summary": main_summary}
    main = run_workflow(workflow, project, env, ctx, store)
    assert main["Install"] == 0 and (tmp / "pip.log").read_text() == "install -e .\n"
    assert main["Run the audits"] == 0, main["Run the audits:out"]
    assert main["Compare with the main branch"] == "skipped"
    assert (store / "audit-main-abc123" / "audit.json").is_file()
    assert ":white_check_mark: passed" in main_summary.read_text()

    # A pull request that swaps in the shortcut model, in a fresh checkout.
    shutil.rmtree(project / "main-audit")
    shutil.rmtree(project / "reports")
    use_shortcut_model(project)
    pr_summary = tmp / "pr-summary.md"
    ctx = {"event_name": "pull_request", "ref": "refs/pull/1/merge", "sha": "def456", "summary": pr_summary}
    pr = run_workflow(workflow, project, env, ctx, store)
    assert pr["Run the audits"] == 1
    assert pr["Upload the report"] == "done"
    assert pr["Compare with the main branch"] == 1  # the gate
    assert pr["Keep this run for pull requests"] == "skipped"
    text = pr_summary.read_text()
    assert "## vitaudit: :x: failed" in text and "difference from the baseline" in text
    assert "### vitaudit: changes since the previous run" in text and "REGRESSED: 1 newly failing" in text
    assert "Changed since main-audit/audit.json" in (project / "reports" / "audit.html").read_text()
    props = {p.get("name") for p in ET.parse(project / "reports" / "junit.xml").getroot().iter("property")}
    assert {"kind", "metric", "value", "threshold"} <= props


# ------------------------------------------------------------------ GitLab CI
def test_gitlab_job(workspace, recorded):
    project, env, tmp = workspace
    job = yaml_blocks()["GitLab CI"]["audit"]
    variables = {k: v.replace("$CI_PROJECT_DIR", str(project)) for k, v in job["variables"].items()}
    assert variables["HF_HOME"] == f"{project}/.cache/huggingface" and variables["TORCH_HOME"] == f"{project}/.cache/torch"
    assert job["cache"]["paths"] == [".cache/pip", ".cache/huggingface", ".cache/torch"]
    assert job["artifacts"] == {"when": "always", "paths": ["reports/"], "reports": {"junit": "reports/junit.xml"}}
    api = tmp / "api"
    ci = {**env, **variables, "CI_PROJECT_DIR": str(project), "CI_API_V4_URL": f"file://{api}", "CI_PROJECT_ID": "7",
          "CI_DEFAULT_BRANCH": "main", "CI_JOB_NAME": "audit", "CI_JOB_TOKEN": "token"}
    install, mkdir, fetch, audit = job["script"]

    # No artifact on main yet: the fetch leaves nothing behind and the job goes on.
    first = bash("\n".join([install, mkdir, fetch]), project, ci)
    assert first.returncode == 0, first.stderr
    assert (tmp / "pip.log").read_text() == "install -e .\n"
    assert (project / "main-audit").is_dir() and not (project / "main-audit" / "audit.json").exists()

    # main's last audit.json as its artifact; a branch with the shortcut model fails the audit.
    artifact = api / "projects" / "7" / "jobs" / "artifacts" / "main" / "raw" / "reports" / "audit.json"
    artifact.parent.mkdir(parents=True)
    shutil.copy(recorded / "reports" / "audit.json", artifact)
    use_shortcut_model(project)
    branch = bash("\n".join(job["script"]), project, ci)
    assert branch.returncode == 1
    assert (project / "main-audit" / "audit.json").read_bytes() == artifact.read_bytes()
    assert "## vitaudit: :x: failed" in (project / "reports" / "summary.md").read_text()
    after = bash("\n".join(job["after_script"]), project, ci)
    assert after.returncode == 0, after.stderr
    changes = (project / "reports" / "changes.md").read_text()
    assert "REGRESSED: 1 newly failing" in changes and "resnet.gradcam mass in object" in changes
