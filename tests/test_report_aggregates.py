"""Aggregate (dataset) cards in the HTML report and their rows in audit.json."""
from __future__ import annotations

import copy
import functools
import json
import re

import pytest

from test_report_render import EVIL, PAYLOADS, Page
from vitaudit.report import render_html, run_from_document, strip_pictures, write_report
from vitaudit.report.aggregates import HIST_H, HIST_W, MAX_BEST, MAX_WORST, build_histogram, histogram
from vitaudit.report.context import build_context
from vitaudit.report.sample import DATASET_CLASSES, dataset_results, sample_run
from vitaudit.results import AggregateView, ExpectationResult, RunResults

PAGE_LIMIT = 5_000_000  # bytes, for a 10,000-image dataset (issue 8)


def _run(results: list[ExpectationResult]) -> RunResults:
    return RunResults(started_at="2025-11-26T10:00:00+00:00", duration=1.0, command="pytest audits/",
                      environment={}, results=results)


@pytest.fixture(scope="module")
def ds_results() -> list[ExpectationResult]:
    return dataset_results(400, seed=3)


@functools.lru_cache(maxsize=1)
def _small() -> tuple[ExpectationResult, ...]:
    return tuple(dataset_results(40))


def small() -> list[ExpectationResult]:
    """A fresh copy of a 40-image dataset's results, to change at will."""
    return copy.deepcopy(list(_small()))


@pytest.fixture(scope="module")
def mixed() -> RunResults:
    """Single-image cards and aggregate cards in one run."""
    return sample_run(4, 10, layer_grids=0, dataset_images=400)


@pytest.fixture(scope="module")
def mixed_html(mixed) -> str:
    return render_html(mixed)


def _card(html: str, card_id: str) -> str:
    start = html.index(f'id="{card_id}"')
    return html[start: html.index("</article>", start)]


def _bars(card_html: str) -> list[dict[str, float]]:
    out = []
    for tag in re.findall(r"<rect class=\"bar[^>]*>", card_html):
        a = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        out.append({k: float(a[k]) for k in ("x", "y", "width", "height", "data-count")} | {"class": a["class"]})
    return out


# ---------------------------------------------------------------- histogram

def test_histogram_helper_counts_finite_values_in_fixed_unit_bins():
    edges, counts = histogram([0.05, 0.05, 0.5, 0.95, None, float("nan"), 1.0], bins=10)
    assert edges[0] == 0.0 and edges[-1] == 1.0 and len(edges) == 11
    assert counts == [2, 0, 0, 0, 0, 1, 0, 0, 0, 2]  # 1.0 falls in the last, closed bin
    edges, counts = histogram([2.0, 4.0, 3.0], bins=2)  # outside [0, 1]: min..max
    assert (edges, counts) == ([2.0, 3.0, 4.0], [1, 2])
    assert histogram([None, float("inf")]) == ([], [])
    assert histogram([7.0, 7.0], bins=1) == ([6.5, 7.5], [2])


def test_histogram_bars_match_the_counts(mixed, mixed_html):
    ids = {id(r): f"c{i}" for i, r in enumerate(mixed.results)}
    aggs = [r for r in mixed.results if r.dataset is not None]
    assert len(aggs) == 5 + len(DATASET_CLASSES)
    for r in aggs:
        view = r.aggregate_view
        bars = _bars(_card(mixed_html, ids[id(r)]))
        assert [int(b["data-count"]) for b in bars] == view.counts
        assert sum(view.counts) == len(r.per_image) == r.n_images
        tallest = max(view.counts)
        base = max(b["y"] + b["height"] for b in bars)
        for b, c in zip(bars, view.counts):
            assert b["height"] == pytest.approx((base - 14.0) * c / tallest, abs=0.02)  # heights in proportion
            assert b["y"] + b["height"] == pytest.approx(base, abs=0.02)  # all standing on the axis
        lefts = [b["x"] for b in bars]
        assert lefts == sorted(lefts) and 0 <= lefts[0] and lefts[-1] + bars[-1]["width"] <= HIST_W
        widths = {round(b["width"], 1) for b in bars}
        assert len(widths) == 1  # equal bins, equal bars


def test_share_form_marks_the_per_image_threshold_and_colours_bins():
    view = AggregateView(per_image_op=">", per_image_threshold=0.3, share_passing=0.7,
                         edges=[i / 10 for i in range(11)], counts=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    r = ExpectationResult(nodeid="n", file="f.yaml", line=1, text="t", kind="localisation", outcome="failed",
                          dataset="d", aggregate="share", op=">=", threshold=0.9, value=0.7, aggregate_view=view)
    hist, note = build_histogram(r, view)
    assert note == "" and hist is not None
    assert [b.zone for b in hist.bars] == ["fail"] * 3 + ["pass"] * 7
    (mark,) = hist.marks
    first = hist.bars[0]
    x_lo, x_hi = first.x, hist.axis[-1][0]
    assert mark.kind == "threshold" and mark.x == pytest.approx(x_lo + 0.3 * (x_hi - x_lo), abs=0.05)
    assert not mark.off_scale and "0.3" in mark.label
    # between: the straddling bins are mixed
    view2 = copy.deepcopy(view)
    view2.per_image_op, view2.per_image_threshold = "between", [0.25, 0.75]
    zones = [b.zone for b in build_histogram(r, view2)[0].bars]
    assert zones == ["fail", "fail", "mixed", "pass", "pass", "pass", "pass", "mixed", "fail", "fail"]


def test_aggregate_form_marks_the_value_and_the_threshold():
    view = AggregateView(edges=[0.0, 0.5, 1.0], counts=[3, 1])
    r = ExpectationResult(nodeid="n", file="f.yaml", line=1, text="t", kind="localisation", outcome="failed",
                          dataset="d", aggregate="mean", op=">", threshold=0.5, value=0.25, aggregate_view=view)
    hist, _ = build_histogram(r, view)
    marks = {m.kind: m for m in hist.marks}
    x_lo, x_hi = hist.axis[0][0], hist.axis[-1][0]
    assert marks["threshold"].x == pytest.approx((x_lo + x_hi) / 2, abs=0.05)
    assert marks["value"].x == pytest.approx(x_lo + 0.25 * (x_hi - x_lo), abs=0.05)
    assert {b.zone for b in hist.bars} == {"plain"}
    r.threshold = 2.0  # off the drawn range: clamped to the edge, and said so
    off = {m.kind: m for m in build_histogram(r, view)[0].marks}["threshold"]
    assert off.off_scale and off.x == pytest.approx(x_hi, abs=0.05)


@pytest.mark.parametrize("edges, counts", [([0.0, 1.0], [1, 2]), ([0.0, float("nan"), 1.0], [1, 2]),
                                           ([1.0, 0.0, 2.0], [1, 2]), ([0.0, 0.5, 1.0], [1, -2])])
def test_malformed_histogram_is_reported_not_drawn(edges, counts):
    run = _run(small()[:1])
    run.results[0].aggregate_view.edges, run.results[0].aggregate_view.counts = edges, counts
    html = render_html(run)
    assert "<svg" not in html and "histogram data is malformed" in Page(html).alltext


def test_histogram_needs_no_script_or_network(mixed_html):
    svgs = re.findall(r"<svg.*?</svg>", mixed_html, flags=re.S)
    assert svgs and all("<script" not in s and "href" not in s and "url(" not in s for s in svgs)
    assert all('role="img"' in s and "<title>" in s for s in svgs)
    assert all(f'viewBox="0 0 {HIST_W:g} {HIST_H:g}"' in s for s in svgs)


# ---------------------------------------------------------------- card content

def test_aggregate_card_shows_verdict_n_share_examples_and_classes(mixed, mixed_html):
    ids = {id(r): f"c{i}" for i, r in enumerate(mixed.results)}
    share = next(r for r in mixed.results if r.aggregate == "share" and r.group is None and r.outcome == "failed")
    card = _card(mixed_html, ids[id(share)])
    text = " ".join(Page(card).alltext.split())
    assert f"N = {share.n_images} images" in text
    assert f"{100 * share.aggregate_view.share_passing:.1f} % of {share.n_images} images pass" in text
    big = copy.deepcopy(share)
    big.n_images = 12345
    assert "N = 12,345 images" in " ".join(Page(render_html(_run([big]))).alltext.split())
    assert 'class="badge o-failed"' in card and share.message in Page(card).alltext
    assert 'class="gauge"' in card
    worst = [e for e in share.aggregate_view.examples if e.role == "worst"]
    best = [e for e in share.aggregate_view.examples if e.role == "best"]
    assert len(worst) == MAX_WORST and len(best) == MAX_BEST
    for e in worst + best:
        assert e.image in text
    assert card.count('class="outline"') == MAX_WORST + MAX_BEST  # every example has its region outlined
    per_class = [r for r in mixed.results if r.group is not None]
    assert {r.group for r in per_class} == set(DATASET_CLASSES)
    for r in per_class:
        card = _card(mixed_html, ids[id(r)])
        assert f"dataset scenes · class {r.group}" in Page(card).alltext
        rows = re.findall(r'<tr class="(current )?v-\w+"><th scope="row" class="name">([^<]*)</th>', card)
        assert [g for _, g in rows] == list(DATASET_CLASSES)
        assert [g for cur, g in rows if cur] == [r.group]  # its own class is highlighted


def test_per_image_lists_stay_out_of_the_html(mixed, mixed_html):
    shown = {e.image for r in mixed.results if r.aggregate_view for e in r.aggregate_view.examples}
    listed = {p["image"] for r in mixed.results for p in r.per_image or []}
    assert len(listed) == 400 and shown < listed
    for path in listed - shown:
        assert path not in mixed_html


def test_examples_are_capped_at_six_worst_and_three_best():
    r = small()[1]
    ex = r.aggregate_view.examples
    r.aggregate_view.examples = [copy.deepcopy(ex[0]) for _ in range(20)] + [copy.deepcopy(ex[-1]) for _ in range(20)]
    for i, e in enumerate(r.aggregate_view.examples):
        e.image = f"data/x_{i:02d}.png"
    card = render_html(_run([r]))
    assert len(re.findall(r'<figure class="ex', card)) == MAX_WORST + MAX_BEST
    assert "data/x_05.png" in card and "data/x_06.png" not in card and "data/x_22.png" in card and "data/x_23.png" not in card


def test_not_counted_and_images_without_the_region_are_listed():
    r = small()[1]
    r.aggregate_view.not_counted = ["data/bad_1.png: cannot identify image file", "data/bad_2.png: truncated"]
    r.aggregate_view.n_not_counted = 7
    r.aggregate_view.n_without_region = 12
    text = " ".join(Page(render_html(_run([r]))).alltext.split())
    assert "7 unreadable images skipped (on_error: skip)" in text
    assert "data/bad_1.png: cannot identify image file" in text and "… and 5 more" in text
    assert "12 images of the dataset without region object: not counted" in text


def test_dataset_group_and_class_summary(mixed, mixed_html):
    ctx = build_context(mixed, "n")
    groups = [g for f in ctx["files"] for g in f.images if g.dataset]
    assert [g.key for g in groups] == ["scenes"]
    (g,) = groups
    assert {c.r.nodeid for c in g.cards} == {r.nodeid for r in mixed.results if r.dataset}
    assert [row[0] for row in g.classes.rows] == list(DATASET_CLASSES) and len(g.classes.columns) == 1
    for group, (cell,) in g.classes.rows:
        r = next(r for r in mixed.results if r.group == group)
        assert cell.outcome == r.outcome and mixed.results[int(cell.card_id[1:])] is r
    assert '<span class="dlabel">dataset</span> <span class="iname">scenes</span>' in mixed_html


# ---------------------------------------------------------------- needs attention, filters

def test_needs_attention_names_the_image_or_dataset_and_class(mixed, mixed_html):
    box = mixed_html[mixed_html.index('class="box problems-box'):]
    box = box[: box.index("</ol>")]
    items = re.findall(r'<li><a href="#(c\d+)">(.*?)</a></li>', box, flags=re.S)
    problems = [r for r in mixed.results if r.outcome in ("failed", "error", "xpassed")]
    assert len(items) == len(problems) and any(r.dataset for r in problems) and any(r.image for r in problems)
    for cid, inner in items:
        r = mixed.results[int(cid[1:])]
        subject = re.search(r'<span class="subject">(.*?)</span>', inner).group(1)
        if r.dataset is not None:
            assert subject == f"dataset {r.dataset}" + (f" · class {r.group}" if r.group else "")
        else:
            assert subject == f"image {r.image}"


def test_dataset_is_a_filter_and_search_facet(mixed, mixed_html):
    page = Page(mixed_html)
    options = [a.get("value") for t, a in page.tags if t == "option"]
    assert "scenes" in options
    data = json.loads(page.scripts[0][1])
    for c in data["cards"]:
        r = mixed.results[int(c["id"][1:])]
        assert c["dataset"] == r.dataset
        if r.dataset:
            assert "scenes" in c["search"] and (r.group or "") in c["search"]
    assert '<select id="f-dataset">' not in render_html(sample_run(1, 2, layer_grids=0))  # no dataset: no facet


# ---------------------------------------------------------------- escaping

def test_user_written_dataset_strings_are_escaped():
    results = small()
    for i, r in enumerate(results):
        p = PAYLOADS[i % len(PAYLOADS)]
        r.dataset, r.region, r.metric, r.aggregate = f"{p}ds", p, p, p
        if r.group is not None:
            r.group = f"{p}{r.group}"
        r.text, r.message = f"{EVIL} {r.text}", f"{EVIL} {r.message}"
        v = r.aggregate_view
        v.per_image_op = p
        v.not_counted, v.n_not_counted = [f"data/{p}.png: {p}"], 1
        for e in v.examples:
            e.image, e.label = f"data/{p}/{e.image}", p
            for pan in e.panels:
                pan.title = p
        for row in v.per_class:
            row.group = f"{p}{row.group}"
    results[0].aggregate_view.examples[0].panels[0].uri = 'data:image/png;base64,AA" onerror="alert(5)'
    results[0].aggregate_view.examples[1].panels[0].outline = "javascript:alert(6)"
    html = render_html(_run(results))
    assert "<script>alert" not in html.lower() and "alert(5)" not in html and "alert(6)" not in html
    page = Page(html)
    for tag, attrs in page.tags:
        assert not [k for k in attrs if k.startswith("on")], tag
        if tag == "img" and attrs.get("src") is not None:
            assert attrs["src"].startswith("data:image/")
    assert [a.get("type") for a, _ in page.scripts] == ["application/json", None]
    text = page.alltext
    for p in PAYLOADS:
        assert f"dataset {p}ds" in text and f"data/{p}.png: {p}" in text and f"data/{p}/data/scenes" in text
    assert json.loads(page.scripts[0][1])["cards"][0]["dataset"] == f"{PAYLOADS[0]}ds"


# ---------------------------------------------------------------- audit.json

def test_json_rows_carry_the_aggregate_fields_and_every_image(ds_results, tmp_path):
    run = _run(copy.deepcopy(ds_results))
    write_report(run, tmp_path / "a.html", tmp_path / "a.json")
    doc = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert "data:image" not in json.dumps(doc)
    for row, r in zip(doc["expectations"], run.results):
        assert row["nodeid"] == r.nodeid
        assert (row["dataset"], row["aggregate"], row["group"]) == ("scenes", r.aggregate, r.group)
        assert (row["value"], row["threshold"], row["n_images"]) == (r.value, r.threshold, r.n_images)
        assert len(row["per_image"]) == r.n_images and row["per_image"] == r.per_image
        assert set(row["per_image"][0]) == {"image", "value", "passed"}
        assert all(p["image"].startswith("data/scenes/") for p in row["per_image"])
        if r.group is not None:
            assert {p["image"].split("/")[2] for p in row["per_image"]} == {r.group}
    per_class = [row for row in doc["expectations"] if row["group"] is not None]
    assert sorted(row["group"] for row in per_class) == sorted(DATASET_CLASSES)
    # each per-image list is written once, in its row; the run comes back whole all the same
    assert all(r["per_image"] is None for r in doc["run"]["results"])
    assert run_from_document(doc) == strip_pictures(run)


def test_json_rows_of_single_image_expectations_have_null_aggregate_fields(tmp_path):
    run = sample_run(1, 3, layer_grids=0)
    write_report(run, tmp_path / "a.html", tmp_path / "a.json")
    doc = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    for row in doc["expectations"]:
        assert all(row[k] is None for k in ("dataset", "aggregate", "n_images", "group", "per_image"))
        assert row["image"] is not None


def test_json_with_pictures_keeps_example_pictures(ds_results, tmp_path):
    run = _run(copy.deepcopy(ds_results[:2]))
    write_report(run, tmp_path / "a.html", tmp_path / "a.json", json_pictures=True)
    doc = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert run_from_document(doc) == run


# ---------------------------------------------------------------- page size

def test_page_stays_under_5_mb_for_a_10000_image_dataset(tmp_path):
    small = render_html(_run(dataset_results(1_000)))
    run = _run(dataset_results(10_000))
    assert sum(len(r.per_image) for r in run.results) == 5 * 10_000 + 10_000  # 5 over all, 4 classes of 2,500
    html_path = write_report(run, tmp_path / "audit.html", tmp_path / "audit.json")
    size = html_path.stat().st_size
    assert size <= PAGE_LIMIT, f"{size / 1e6:.1f} MB"
    # and it does not grow with the number of images: no per-image list is on the page
    assert size < 1.1 * len(small.encode("utf-8"))
    n_cards = len(run.results)
    assert len(re.findall(r'<figure class="ex', html_path.read_text(encoding="utf-8"))) == n_cards * (MAX_WORST + MAX_BEST)
    print(f"HTML for 10,000 images: {size / 1e6:.2f} MB")


def test_an_example_picture_shown_on_several_cards_is_stored_once():
    results = small()
    shared = results[0].aggregate_view.examples[0].panels[0]
    results[1].aggregate_view.examples[0].panels[0] = copy.deepcopy(shared)
    html = render_html(_run(results))
    assert html.count(shared.uri) == 1 and html.count(shared.outline) == 1
    page = Page(html)
    data = json.loads(page.scripts[0][1])
    assert shared.uri in data["images"].values()
    refs = [a["data-ref"] for a in page.all("img") if a.get("data-ref")]
    ref = next(k for k, v in data["images"].items() if v == shared.uri)
    uses = sum(p.uri == shared.uri for r in results for e in r.aggregate_view.examples for p in e.panels)
    assert uses >= 2 and refs.count(ref) == uses


def test_measure_names_the_aggregate():
    from vitaudit.report.aggregates import measure_text

    def text(agg, op=None, thr=None):
        r = ExpectationResult(nodeid="n", file="f", line=1, text="t", kind="localisation", outcome="passed",
                              metric="mass_in", dataset="d", aggregate=agg)
        return measure_text(r, AggregateView(per_image_op=op, per_image_threshold=thr))

    assert [text(a) for a in ("mean", "median", "min", "max")] == [f"{a} mass_in" for a in ("mean", "median", "min", "max")]
    assert text("p90") == "90th percentile of mass_in"
    assert [text(p).split()[0] for p in ("p1", "p2", "p3", "p11", "p21", "p99.5")] == ["1st", "2nd", "3rd", "11th", "21st", "99.5th"]
    assert text("share", ">", 0.3) == "share of images with mass_in > 0.3"
    assert text("share", "between", [0.2, 0.8]) == "share of images with mass_in ∈ [0.2, 0.8]"
    assert text("share", "hits") == "share of images with mass_in hits"
    assert text("accuracy") == "accuracy"


def test_dataset_error_without_a_view_and_the_by_dataset_table(mixed):
    run = copy.deepcopy(mixed)
    run.results.append(ExpectationResult(
        nodeid="audits/datasets.yaml::scenes::20", file="audits/datasets.yaml", line=20, kind="error",
        text="scenes: mean vit.attention mass in nowhere > 0.5", outcome="error", dataset="scenes",
        message="audits/datasets.yaml:20: unknown region 'nowhere'"))
    html = render_html(run)
    card = _card(html, f"c{len(run.results) - 1}")
    assert "unknown region" in card and "dataset scenes" in card and "<svg" not in card and 'class="agg"' not in card
    ctx = build_context(run, "n")
    ((name, counts),) = ctx["per_dataset"]
    expected = {o: sum(r.outcome == o for r in run.results if r.dataset == "scenes") for o in ("passed", "failed", "error")}
    assert name == "scenes" and {o: counts.by_outcome[o] for o in expected} == expected and expected["error"] == 1
    assert "<h2>By dataset</h2>" in html and "<h2>By dataset</h2>" not in render_html(sample_run(1, 2, layer_grids=0))
