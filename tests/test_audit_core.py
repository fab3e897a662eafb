"""The audit core (``vitaudit.audit``) runs without pytest: a distributed worker (a Ray actor) or a
script measures a dataset with it, in a process where ``import pytest`` fails."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCENES = Path(__file__).resolve().parent.parent / "audits" / "datasets" / "scenes"
ROOT = Path(__file__).resolve().parent.parent

AUDIT = f"""\
models:
  vit: {{name: "fixture:vit-scenes"}}
  cnn: {{name: "fixture:resnet-scenes"}}
datasets:
  scenes:
    folder: {SCENES}/clean
    labels: folders
    sample: 10
    regions:
      object: {{mask: "{SCENES}/masks/{{stem}}.png"}}
expect:
  - scenes: vit accuracy > 0.5
  - scenes: mean vit.attention mass in object > 0.1
  - scenes: cnn.gradcam pointing game hits object for 50% of images
"""

#: Run in the child: pytest (and the plugin) cannot be imported there, then one dataset pass.
CHILD = textwrap.dedent("""\
    import importlib.abc, json, sys

    class NoPytest(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("pytest", "_pytest", "pluggy") or name.startswith("vitaudit.plugin"):
                raise ImportError(f"{name} is blocked in this process")
            return None

    sys.meta_path.insert(0, NoPytest())
    try:
        import pytest  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not block pytest")

    from vitaudit.audit.dataset_pass import run_dataset
    from vitaudit.audit.evaluate import Evaluator
    from vitaudit.audit.session import AuditSession
    from vitaudit.spec import parse_audit_file

    spec = parse_audit_file(sys.argv[1])
    ev = Evaluator(spec, AuditSession(device="cpu", pictures=False))
    run = run_dataset(ev, spec.datasets["scenes"], list(spec.expectations), batch_size=4)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("pytest", "_pytest") or m.startswith("vitaudit.plugin"))
    print(json.dumps({"leaked": leaked, "problems": {k: str(v) for k, v in run.problems.items()},
                      "values": {k: [[v.index, v.image, v.value, v.passed, v.error] for v in vals]
                                 for k, vals in run.values.items()}}))
""")


def test_a_dataset_pass_runs_where_pytest_cannot_be_imported(tmp_path: Path) -> None:
    audit = tmp_path / "audit_core.yaml"
    audit.write_text(AUDIT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(audit)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["leaked"] == []
    assert child["problems"] == {}

    # The same pass in this process (pytest loaded) gives the very same per-image values.
    from vitaudit.audit.dataset_pass import run_dataset
    from vitaudit.audit.evaluate import Evaluator
    from vitaudit.audit.session import AuditSession
    from vitaudit.spec import parse_audit_file

    spec = parse_audit_file(audit)
    run = run_dataset(Evaluator(spec, AuditSession(device="cpu", pictures=False)), spec.datasets["scenes"],
                      list(spec.expectations), batch_size=4)
    here = {k: [[v.index, v.image, v.value, v.passed, v.error] for v in vals] for k, vals in run.values.items()}
    assert set(child["values"]) == {e.id for e in spec.expectations}
    assert all(len(vals) == 10 for vals in child["values"].values())
    assert child["values"] == here


def test_the_core_imports_neither_pytest_nor_the_plugin() -> None:
    """By its source: no module of ``vitaudit/audit`` names pytest or ``vitaudit.plugin`` in an import."""
    import ast

    for path in sorted((ROOT / "vitaudit" / "audit").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                assert name.split(".")[0] not in ("pytest", "_pytest"), f"{path.name} imports {name}"
                assert not name.startswith("vitaudit.plugin"), f"{path.name} imports {name}"
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                pytest.fail(f"{path.name} imports from outside the core relatively: {ast.unparse(node)}")
