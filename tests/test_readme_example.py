"""README.md's first example, run as written: its YAML block saved as ``audit_pets.yaml`` fails with the
lines the README quotes "verbatim" (file:line included)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_failure_output_is_what_its_audit_prints(tmp_path: Path) -> None:
    text = README.read_text()
    audit = re.search(r"```yaml\n(# audit_pets\.yaml\n.*?)```", text, re.DOTALL)[1]
    quoted = re.search(r"this run, verbatim\):\n\n```\n(.*?)```", text, re.DOTALL)[1]
    lines = [x for x in quoted.splitlines() if x.startswith("audit_pets.yaml:")]
    assert len(lines) == 2
    (tmp_path / "audit_pets.yaml").write_text(audit)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--audit-no-report", "audit_pets.yaml"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    assert quoted.splitlines()[0] in run.stdout  # "audit_pets.yaml .F.F"
    for line in lines:
        assert line in run.stdout.splitlines(), f"{line}\n--- printed:\n{run.stdout}"
