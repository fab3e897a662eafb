"""docs/ci.md: both CI configurations are parsed, and every shell step runs against a small project,
the way the service runs it.

GitHub writes each ``run:`` script to a file and runs it with the step's shell: ``bash -e {0}`` when the
step (and the job's and workflow's ``defaults.run``) names none, ``bash --noprofile --norc -eo pipefail
{0}`` for ``shell: bash``. GitLab Runner runs a job's ``script`` lines in one bash with
``set -eo pipefail``; ``after_script`` in a new shell whose status never fails the job.

The GitHub workflow runs three times: a push to main, a pull request that swaps in the shortcut model
(the job must fail, and its comparison step on its own), and a pull request with the clean models (the
job must pass). Its ``uses:`` steps are checked (what they cache, restore, upload) and the cache ones
simulated with a folder. The GitLab job runs as a branch against the main branch's artifact, served by
``file://`` URLs to curl. The one command not run for real is ``pip install`` (it needs the network): a
stand-in on ``PATH`` records it. Both files are linted too: actionlint with shellcheck, and
check-jsonschema's vendored GitHub-workflow and GitLab-CI schemas (all in the ``test`` extra).
"""
from __future__ import annotations

import os
import re
import shutil
import shlex
import subprocess
import sys
import tempfile
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


def yaml_texts() -> dict[str, str]:
    """The doc's YAML blocks as written, by the heading above them."""
    text = DOC.read_text()
    out, heading = {}, ""
    for m in re.finditer(r"^## (?P<h>[^\n]+)$|^```yaml\n(?P<body>.*?)^```$", text, re.MULTILINE | re.DOTALL):
        if m["h"]:
            heading = m["h"].strip()
        else:
            out[heading] = m["body"]
    return out


def yaml_blocks() -> dict[str, dict]:
    """The doc's YAML blocks, parsed, by the heading above them."""
    return {k: yaml.safe_load(v) for k, v in yaml_texts().items()}


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


def gitlab_shell(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """GitLab Runner's bash: the lines in one shell with ``set -eo pipefail``."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-c", "set -eo pipefail\n" + script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


#: GitHub's built-in shells on Linux (``{0}``: the file the step's script is written to).
GITHUB_SHELLS = {
    None: "bash -e {0}",
    "bash": "bash --noprofile --norc -eo pipefail {0}",
    "sh": "sh -e {0}",
}


def github_shell(step: dict, workflow: dict, job: str = "audit") -> str:
    """The command GitHub runs a step's script with: the step's ``shell``, else the job's and then the
    workflow's ``defaults.run.shell``, else bash without pipefail."""
    shell = step.get("shell")
    for scope in (workflow["jobs"][job], workflow):
        shell = shell or (scope.get("defaults") or {}).get("run", {}).get("shell")
    return GITHUB_SHELLS.get(shell, shell)  # a custom shell is its own template


def github_run(script: str, shell: str, cwd: Path, env: dict, tmp: Path) -> subprocess.CompletedProcess:
    fd, path = tempfile.mkstemp(suffix=".sh", dir=tmp)
    with os.fdopen(fd, "w") as f:
        f.write(script)
    argv = [path if a == "{0}" else a for a in shlex.split(shell)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


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
            proc = github_run(step["run"], github_shell(step, workflow), project,
                              {**env, "GITHUB_STEP_SUMMARY": str(ctx["summary"]), "GITHUB_EVENT_NAME": ctx["event_name"],
                               "GITHUB_REF": ctx["ref"]}, store.parent)
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


def job_failed(results: dict[str, object]) -> bool:
    """A job fails when any step it ran failed."""
    return any(isinstance(v, int) and v != 0 for k, v in results.items() if not k.endswith(":out"))


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
    assert job_failed(pr)
    # The gate is the step's shell: the same script under GitHub's default (bash -e, no pipefail)
    # would exit with tee's 0 and let the regression through.
    compare_step = next(s for s in steps if s.get("name") == "Compare with the main branch")
    assert github_shell(compare_step, workflow) == GITHUB_SHELLS["bash"]
    unguarded = github_run(compare_step["run"], GITHUB_SHELLS[None], project,
                           {**env, "GITHUB_STEP_SUMMARY": str(tmp / "unguarded.md")}, tmp)
    assert unguarded.returncode == 0 and "REGRESSED" in (tmp / "unguarded.md").read_text()

    # A pull request with the clean models, in a fresh checkout: the job passes, compare included.
    shutil.rmtree(project / "main-audit")
    shutil.rmtree(project / "reports")
    audit = project / "audits" / "audit_ci.yaml"
    audit.write_text(audit.read_text().replace('fixture:resnet-scenes-shortcut"', 'fixture:resnet-scenes"'))
    ctx = {"event_name": "pull_request", "ref": "refs/pull/2/merge", "sha": "0a1b2c", "summary": tmp / "clean-pr.md"}
    clean = run_workflow(workflow, project, env, ctx, store)
    assert clean["Run the audits"] == 0, clean["Run the audits:out"]
    assert clean["Compare with the main branch"] == 0, clean["Compare with the main branch:out"]
    assert not job_failed(clean)
    assert "REGRESSED" not in (tmp / "clean-pr.md").read_text()


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
    first = gitlab_shell("\n".join([install, mkdir, fetch]), project, ci)
    assert first.returncode == 0, first.stderr
    assert (tmp / "pip.log").read_text() == "install -e .\n"
    assert (project / "main-audit").is_dir() and not (project / "main-audit" / "audit.json").exists()

    # main's last audit.json as its artifact; a branch with the shortcut model fails the audit.
    artifact = api / "projects" / "7" / "jobs" / "artifacts" / "main" / "raw" / "reports" / "audit.json"
    artifact.parent.mkdir(parents=True)
    shutil.copy(recorded / "reports" / "audit.json", artifact)
    use_shortcut_model(project)
    branch = gitlab_shell("\n".join(job["script"]), project, ci)
    assert branch.returncode == 1
    assert (project / "main-audit" / "audit.json").read_bytes() == artifact.read_bytes()
    assert "## vitaudit: :x: failed" in (project / "reports" / "summary.md").read_text()
    after = gitlab_shell("\n".join(job["after_script"]), project, ci)
    assert after.returncode == 0, after.stderr
    changes = (project / "reports" / "changes.md").read_text()
    assert "REGRESSED: 1 newly failing" in changes and "resnet.gradcam mass in object" in changes


# ------------------------------------------------------------------ linters
def _tool(name: str) -> str:
    """A linter from the ``test`` extra (installed beside this Python), or the test fails saying so."""
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' (it ships the binary)")
    return path


@pytest.fixture
def ci_files(tmp_path) -> dict[str, Path]:
    """docs/ci.md's two files, written where each service reads them."""
    texts = yaml_texts()
    github = tmp_path / ".github" / "workflows" / "audit.yml"
    github.parent.mkdir(parents=True)
    github.write_text(texts["GitHub Actions"])
    gitlab = tmp_path / ".gitlab-ci.yml"
    gitlab.write_text(texts["GitLab CI"])
    return {"github": github, "gitlab": gitlab}


def _actionlint(workflow: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("actionlint"), "-no-color", "-shellcheck", _tool("shellcheck"), str(workflow)],
                          cwd=workflow.parent.parent.parent, capture_output=True, text=True, timeout=120)


def test_actionlint_with_shellcheck_passes_the_workflow(ci_files):
    lint = _actionlint(ci_files["github"])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # ...and would catch what it is there for: the unquoted $COMPARE the workflow once had (SC2086).
    bad = ci_files["github"]
    bad.write_text(bad.read_text().replace('"${COMPARE[@]}"', "$COMPARE")
                   .replace("COMPARE=(--audit-compare=main-audit/audit.json)", 'COMPARE="--audit-compare main-audit/audit.json"')
                   .replace("COMPARE=()", 'COMPARE=""'))
    lint = _actionlint(bad)
    assert lint.returncode == 1 and "SC2086" in lint.stdout, lint.stdout + lint.stderr


@pytest.mark.parametrize("which,schema", [("github", "vendor.github-workflows"), ("gitlab", "vendor.gitlab-ci")])
def test_ci_files_match_the_services_schemas(ci_files, which, schema):
    check = [_tool("check-jsonschema"), "--builtin-schema", schema]
    result = subprocess.run(check + [str(ci_files[which])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # A misspelt key is caught, so a pass means something.
    broken = ci_files[which].with_name("broken-" + ci_files[which].name)
    text = ci_files[which].read_text()
    broken.write_text(text.replace("runs-on:", "runs_on:") if which == "github" else text.replace("script:", "scripts:", 1))
    result = subprocess.run(check + [str(broken)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
