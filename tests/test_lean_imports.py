"""What a run imports: grad-cam (which pulls in scikit-learn and matplotlib, seconds and over a
hundred MB) only when an audit asks for a CAM method, and scipy only for a metric that needs it
(a pointing game with a tolerance, Spearman, faithfulness blurs); importing vitaudit and its
pytest plugin, or running an attention-only audit with its HTML report, loads none of them. Each check runs in
a fresh interpreter, so nothing this test session imported counts."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("pytorch_grad_cam", "sklearn", "matplotlib", "scipy")
SCENES = Path(__file__).resolve().parent.parent / "audits" / "images" / "scenes"

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def _loaded(body: str, cwd: Path) -> list[str]:
    code = PROBE.format(body=textwrap.dedent(body), heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _audit(folder: Path, method: str) -> Path:
    path = folder / f"audit_{method}.yaml"
    path.write_text(textwrap.dedent(f"""\
        models:
          vit: {{name: "fixture:vit-scenes"}}
        images:
          a:
            path: {SCENES}/clean_striped_0.png
            regions:
              object: {{mask: {SCENES}/clean_striped_0_object.png}}
        expect:
          - a: vit.{method} mass in object > 0.0
          - a: vit.rollout pointing game hits object
        """))
    return path


def test_importing_vitaudit_and_the_plugin_loads_nothing_heavy(tmp_path):
    assert _loaded("""
        import vitaudit, vitaudit.plugin, vitaudit.engine, vitaudit.explainers, vitaudit.metrics
        import vitaudit.audit.evaluate, vitaudit.audit.dataset_pass, vitaudit.report
        """, tmp_path) == []


def test_an_attention_audit_with_its_report_loads_nothing_heavy(tmp_path):
    run = """
        import pytest
        code = pytest.main(["-q", "-p", "no:cacheprovider", "{audit}"])
        assert code in (0, 1), code  # ran (a failed expectation is fine here)
        from pathlib import Path
        assert Path("reports/audit.html").stat().st_size > 0
        from vitaudit.audit.session import finish_warm_imports
        finish_warm_imports()  # background imports count too
        """
    assert _loaded(run.format(audit=_audit(tmp_path, "attention")), tmp_path) == []
    # The same run asking for Grad-CAM does import it (the probe sees what it should), and still
    # not the scikit-learn and matplotlib it would load for tools vitaudit does not call.
    loaded = _loaded(run.format(audit=_audit(tmp_path, "gradcam")), tmp_path)
    assert "pytorch_grad_cam" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("sklearn", "matplotlib")], loaded


def test_grad_cams_own_tools_still_get_the_real_libraries(tmp_path):
    """What grad-cam took from the deferred libraries imports the real thing on first use."""
    loaded = _loaded("""
        from vitaudit.explainers.gradcam_lib import grad_cam
        import sys
        assert "sklearn" not in sys.modules and "matplotlib" not in sys.modules
        from pytorch_grad_cam.utils import image, svd_on_activations
        assert type(svd_on_activations.KernelPCA(n_components=1)).__module__.startswith("sklearn.")
        assert image.plt.get_backend()
        import sklearn.decomposition, matplotlib.pyplot
        assert sklearn.decomposition.KernelPCA.__module__.startswith("sklearn.")
        """, tmp_path)
    assert {"matplotlib", "pytorch_grad_cam", "sklearn"} <= {m.split(".")[0] for m in loaded}
