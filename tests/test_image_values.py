"""Per-image values kept as columns on the driver (``vitaudit.image_values``, ``vitaudit.per_image``):
what they cost, and that they read exactly as the records and dicts they replace."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vitaudit.aggregate import histogram, ranked, verdict, worst_and_best
from vitaudit.datasets.base import Dataset, Sample
from vitaudit.image_values import ImageValue, ImageValues, ValuesBuilder
from vitaudit.per_image import PerImage
from vitaudit.results import ExpectationResult, RunResults


def _records(n: int, seed: int = 0, checks: bool = True) -> list[ImageValue]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = float(rng.random())
        if i % 11 == 3:  # no value, with the cause
            out.append(ImageValue(i, f"s/{i}.png", None, False if checks else None, f"c{i % 3}", "no signal"))
        else:
            out.append(ImageValue(i, f"s/{i}.png", x, (x > 0.4) if checks else None, f"c{i % 3}" if i % 7 else None))
    return out


def _samples(records: list[ImageValue]) -> tuple[Sample, ...]:
    return tuple(Sample(v.index, f"/d/{v.image}", v.image, v.label) for v in records)


def _old_dicts(records: list[ImageValue]) -> list[dict]:
    """What dataset_results.fill wrote before: a dict per image."""
    return [{"image": x.image, "value": x.value, "passed": x.passed} for x in records]


# ------------------------------------------------------------------ the same values as before


def test_the_sequence_views_equal_the_records_and_dicts_they_replace() -> None:
    records = _records(60)
    b = ValuesBuilder()
    for lo in (40, 0, 20):  # shards in any order
        b.add_records(records[lo:lo + 20])
    values = b.build(_samples(records))
    assert list(values) == records and values == records
    assert values[5] == records[5] and values[-1] == records[-1] and list(values[10:14]) == records[10:14]
    assert values.errors == ("no signal",) and values.n_errors == sum(v.error is not None for v in records)
    view = values.per_image()
    old = _old_dicts(records)
    assert len(view) == len(old) and list(view) == old and view == old
    assert view[3] == old[3] and view[-1] == old[-1] and list(view[7:9]) == old[7:9]
    with pytest.raises(IndexError):
        view[len(old)]
    assert list(view.images) == [r.image for r in records]  # looked up in the samples by index
    assert view.images.samples is values.samples


def test_a_pass_keeps_columns_not_a_python_object_per_value() -> None:
    """200,000 values of one expectation, gathered as the Ray driver gathers them (Collected, in
    32-image batches) and handed to the report (per_image): traced memory stays under 64 bytes a
    value; the old shape, a dict per value, takes several times that (measured here too)."""
    from vitaudit.audit.ray_pass import Collected, Rows

    n = 200_000
    samples = tuple(Sample(i, f"/d/{i}.png", f"{i}.png", "cat") for i in range(n))
    dataset = Dataset("d", "folder", samples, classes=("cat",))
    exp = SimpleNamespace(id="e", region=None)
    rng = np.random.default_rng(1)
    batches = []
    for a in range(0, n, 32):
        rows = Rows()
        for i in range(a, min(a + 32, n)):
            rows.add(i, -1, None, None, None, "w")
            rows.add(i, 0, float(rng.random()), bool(i % 2), None)
        batches.append(rows.arrays())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        got = Collected(dataset, [exp])
        for batch in batches:
            got.add(batch)
        values = got.image_values(0)
        result = ExpectationResult(nodeid="x", file="a.yaml", line=1, text="t", kind="localisation",
                                   outcome="passed", per_image=values.per_image())
        held, peak = (m - base for m in tracemalloc.get_traced_memory())
        assert len(result.per_image) == n and result.per_image[n - 1]["image"] == f"{n - 1}.png"
        old_base = tracemalloc.get_traced_memory()[0]
        old = _old_dicts(list(values[:20_000]))  # a tenth of them, the old way
        old_cost = (tracemalloc.get_traced_memory()[0] - old_base) * (n / len(old))
    finally:
        tracemalloc.stop()
    bound = 64 * n
    assert held < bound and peak < bound, (held / n, peak / n)
    assert old_cost > 2 * bound, old_cost / n  # the bound is one a dict per value would not meet


def test_the_aggregates_on_columns_match_a_record_by_record_reference() -> None:
    """verdict, histogram, ranked and worst/best read columns: checked against the record-wise
    arithmetic they replaced (kept here as the reference)."""
    records = _records(300, seed=3)
    values = ImageValues.of(records)
    measured = [v.value for v in records if v.value is not None and math.isfinite(v.value)]
    for kind in ("mean", "median", "p90", "min", "max"):
        v = verdict(kind, values, ">", 0.5)
        ref = {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max,
               "p90": lambda x: np.percentile(x, 90)}[kind](measured)
        assert v.value == pytest.approx(float(ref), abs=1e-12) and v.n_images == 300
        assert v.n_missing == 300 - len(measured)
        assert v == verdict(kind, records, ">", 0.5)
    share = verdict("share", values, ">", 0.4, share=0.5)
    assert share.share_passing == sum(1 for v in records if v.passed) / 300
    edges, counts = histogram(values, marks=[0.4])
    assert counts == np.histogram(measured, bins=20, range=(0.0, 1.0))[0].tolist()

    def badness(v: ImageValue, sign: float) -> tuple:
        return (0 if v.passed is False else 1, 0 if v.value is None else 1,
                sign * v.value if v.value is not None else 0.0, v.index)

    for op in (">", "<"):
        sign = 1.0 if op == ">" else -1.0
        reference = sorted(records, key=lambda v: badness(v, sign))
        assert ranked(values, op) == reference
        low = reference[:6]
        high = [v for v in reversed(reference) if v not in low and v.passed is not False and v.value is not None][:3]
        assert worst_and_best(values, op, 6, 3) == (low, high)


def test_by_label_and_of_label_look_labels_up_by_index() -> None:
    records = _records(50)
    values = ValuesBuilder()
    values.add_records(records)
    values = values.build(_samples(records))
    groups = values.by_label()
    assert list(groups) == ["c0", "c1", "c2"]  # unlabelled images are left out
    for label, group in groups.items():
        assert list(group) == [v for v in records if v.label == label] == list(values.of_label(label))
    assert len(values.of_label("nobody")) == 0


# ------------------------------------------------------------------ where per_image travels


def _result(per_image) -> ExpectationResult:
    return ExpectationResult(nodeid="audit_d.yaml::scenes::m", file="audit_d.yaml", line=3, text="scenes: mean m > 0",
                             kind="localisation", outcome="passed", dataset="scenes", aggregate="mean",
                             n_images=len(per_image), value=0.5, op=">", threshold=0.0, per_image=per_image)


def test_per_image_is_shared_by_copies_and_carried_plain_through_xdist() -> None:
    from vitaudit.plugin import _plain_payload

    records = _records(40)
    view = ImageValues.of(records).per_image()
    r = _result(view)
    assert copy.deepcopy(view) is view and r.to_dict()["per_image"] is view  # immutable: not copied
    with pytest.raises(ValueError):
        view.value[0] = 1.0
    payload = {"results": [r.to_dict()]}
    plain = _plain_payload(payload)
    json.dumps(plain)  # what pytest-xdist can send
    assert payload["results"][0]["per_image"] is view  # the worker's own payload is left as it was
    back = ExpectationResult.from_dict(plain["results"][0])
    assert isinstance(back.per_image, PerImage) and back.per_image == _old_dicts(records)


def test_audit_json_and_the_parquet_file_read_the_columns_as_they_read_dicts(tmp_path: Path) -> None:
    from vitaudit.compare import load
    from vitaudit.report import write_report
    from vitaudit.report.values_file import LIMIT

    for n in (30, LIMIT + 3):  # in audit.json, and in audit.values.parquet
        records = _records(n, seed=n)
        records[1] = dataclasses.replace(records[1], value=float("nan"))  # JSON has no NaN: null, as before
        columns = RunResults(started_at="", duration=0.0, command="", environment={},
                             results=[_result(ImageValues.of(records).per_image())])
        dicts = RunResults(started_at="", duration=0.0, command="", environment={},
                           results=[_result(_old_dicts(records))])
        docs = []
        for name, run in (("columns", columns), ("dicts", dicts)):
            out = tmp_path / f"{name}{n}"
            write_report(run, out / "audit.html", out / "audit.json")
            docs.append((json.loads((out / "audit.json").read_text()), load(out / "audit.json")[0].per_image))
        (doc_c, back_c), (doc_d, back_d) = docs
        assert doc_c == doc_d
        assert list(back_c) == list(back_d)
        assert back_c[1]["value"] is None and back_c[3] == {"image": "s/3.png", "value": None, "passed": False}
