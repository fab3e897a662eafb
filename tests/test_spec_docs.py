"""docs/audit-format.md stays true: its complete example is the tested example file, and it names
every metric, method and option."""
from __future__ import annotations

import re
from pathlib import Path

from vitaudit.spec import METHODS, METRIC_OPTIONS, METRICS, parse_audit_file
from vitaudit.spec.sentences import PREDICTION_FORMS

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "audit-format.md").read_text()
EXAMPLE = ROOT / "tests" / "data" / "audits_good" / "example.yaml"


def test_complete_example_is_the_example_file() -> None:
    section = DOC.split("## Complete example", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)[1]
    body = "".join(line for line in EXAMPLE.read_text().splitlines(True) if not line.startswith("#"))
    assert block == body
    assert parse_audit_file(EXAMPLE).errors == ()


def test_docs_name_every_metric_method_and_option() -> None:
    for metric in METRICS:
        assert f"| `{metric}` |" in DOC, metric
    for method in METHODS:
        assert f"`{method}`" in DOC, method
    for options in METRIC_OPTIONS.values():
        for name in options:
            assert f"| `{name}` |" in DOC, name


def test_docs_examples_parse(tmp_path: Path) -> None:
    """Every example sentence of the sentence table parses, against a file declaring what it uses."""
    table = DOC.split("### Sentences", 1)[1].split("Kinds:", 1)[0]
    rows = [(m[1], m[2]) for m in re.finditer(r"^\| `(\w+)` \|.*\| `([^`]+)` \|$", table, re.M)]
    assert len(rows) == 16
    img = EXAMPLE.parent / "images" / "cutegoat.jpg"
    items = "".join(f"  - goat: {example}\n" for _, example in rows)
    path = tmp_path / "audit_doc.yaml"
    path.write_text(f"""\
models: {{vit: {{name: v}}, resnet: {{name: r}}}}
images:
  goat:
    path: {img}
    regions: {{goat: {{box: [40, 60, 180, 210]}}, cat: {{box: [0, 0, 10, 10]}}, sky: {{box: [0, 0, 300, 40]}}}}
expect:
{items}""")
    spec = parse_audit_file(path)
    assert spec.errors == ()
    assert [e.metric for e in spec.expectations] == [metric for metric, _ in rows]
    assert len(PREDICTION_FORMS) == 5
