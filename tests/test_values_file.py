"""Beyond 10,000 images per expectation, per-image values go to ``audit.values.parquet`` beside
``audit.json``; ``vitaudit compare`` (and ``--audit-compare``) read them back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

from vitaudit.compare import compare, load  # noqa: E402
from vitaudit.report import write_report  # noqa: E402
from vitaudit.report.values_file import LIMIT  # noqa: E402
from vitaudit.results import ExpectationResult, RunResults  # noqa: E402


def _run(n: int, shift: float = 0.0, flipped: tuple[int, ...] = ()) -> RunResults:
    per_image = [{"image": f"img/{i:06d}.png", "value": None if i == 7 else (i % 100) / 100 + shift,
                  "passed": None if i == 7 else (i % 3 == 0) != (i in flipped)} for i in range(n)]
    big = ExpectationResult(nodeid="audit_d.yaml::scenes::vit.attention-mass_in[object,mean]", file="audit_d.yaml",
                            line=9, text="scenes: mean vit.attention mass in object > 0.1", kind="localisation",
                            outcome="passed", dataset="scenes", aggregate="mean", n_images=n, value=0.5 + shift,
                            op=">", threshold=0.1, per_image=per_image)
    small = ExpectationResult(nodeid="audit_d.yaml::scenes::vit-accuracy", file="audit_d.yaml", line=8,
                              text="scenes: vit accuracy > 0.9", kind="prediction", outcome="passed",
                              dataset="scenes", aggregate="accuracy", n_images=3, value=1.0, op=">", threshold=0.9,
                              per_image=[{"image": "a.png", "value": 0.9, "passed": True}] * 3)
    return RunResults(started_at="2026-01-01T00:00:00", duration=1.0, command="pytest", environment={},
                      results=[small, big])


def test_long_per_image_lists_go_to_parquet_and_come_back(tmp_path: Path) -> None:
    n = LIMIT + 5
    write_report(_run(n), tmp_path / "audit.html", tmp_path / "audit.json")
    doc = json.loads((tmp_path / "audit.json").read_text())
    small, big = doc["expectations"]
    assert small["per_image"] == [{"image": "a.png", "value": 0.9, "passed": True}] * 3 and "per_image_file" not in small
    assert big["per_image"] is None
    assert big["per_image_file"] == "audit.values.parquet" and big["per_image_count"] == n
    assert (tmp_path / "audit.values.parquet").is_file()
    assert (tmp_path / "audit.json").stat().st_size < 20_000  # the JSON stays small

    rows = {r.nodeid: r for r in load(tmp_path / "audit.json")}
    back = rows[big["nodeid"]].per_image
    assert back == _run(n).results[1].per_image  # values, missing values and checks, in order

    # compare reads both sides' files: the images whose check flipped, found among 10,005
    newer = tmp_path / "new"
    write_report(_run(n, shift=0.001, flipped=(3, n - 2)), newer / "audit.html", newer / "audit.json")
    result = compare(load(tmp_path / "audit.json"), load(newer / "audit.json"))
    assert sorted((f.image, f.old_passed, f.new_passed) for f in result.flips) == [
        ("img/000003.png", True, False), (f"img/{n - 2:06d}.png", (n - 2) % 3 == 0, (n - 2) % 3 != 0)]


def test_a_short_run_leaves_no_stale_values_file(tmp_path: Path) -> None:
    write_report(_run(LIMIT + 1), tmp_path / "audit.html", tmp_path / "audit.json")
    assert (tmp_path / "audit.values.parquet").is_file()
    write_report(_run(LIMIT), tmp_path / "audit.html", tmp_path / "audit.json")  # exactly the limit: inline
    assert not (tmp_path / "audit.values.parquet").exists()
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert len(doc["expectations"][1]["per_image"]) == LIMIT
