"""The HTML report and audit.json: escaping, offline-only, atomic writes, round trips, edge runs."""
from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vitaudit.report import render_html, strip_pictures, write_report
from vitaudit.report.context import PROBLEMS, build_context
from vitaudit.report.format import fmt_pair
from vitaudit.report.sample import sample_run
from vitaudit.results import ModelInfo, Panel, Prediction, RunResults

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }}",
    "</script><script>alert(2)</script>",
]
EVIL = " ".join(PAYLOADS)


class Page(HTMLParser):
    """Every start tag with its attributes, the text, and each <script>'s content."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "script":
            self._script = a
            self.scripts.append((a, ""))
        self._in_style = self._in_style or tag == "style"

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._script is not None:
            a, content = self.scripts[-1]
            self.scripts[-1] = (a, content + data)
        elif not self._in_style:
            self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]

    @property
    def alltext(self) -> str:
        return "".join(self.text)


@pytest.fixture(scope="module")
def run() -> RunResults:
    return sample_run(6, 10, layer_grids=2)


@pytest.fixture(scope="module")
def html(run) -> str:
    return render_html(run)


def evil_run() -> RunResults:
    """Every string that comes from an audit file carries markup, script and template syntax."""
    run = sample_run(2, 10, layer_grids=1)
    for i, r in enumerate(run.results):
        p = PAYLOADS[i % len(PAYLOADS)]
        r.file = f"audits/{PAYLOADS[i % 2]}.yaml"
        r.nodeid = f"{r.file}::{p}::{i}"
        r.image = f"{p}{r.image}"
        r.models = [f"{p}{m}" for m in r.models]
        r.methods = [f"{p}{m}" for m in r.methods]
        r.text, r.message = f"{EVIL} {r.text}", f"{EVIL} {r.message}"
        r.region, r.metric, r.op, r.kind = p, p, p, p
        for pan in r.panels:
            pan.title, pan.caption = p, p
        for t in r.topk or []:
            t.label = p
        r.map_stats = {**(r.map_stats or {}), p: p}
    for i, iv in enumerate(run.images):
        iv.file = f"audits/{PAYLOADS[(i * 10) % 2]}.yaml"
        iv.image = run.results[i * 10].image or ""
        for v in iv.views:
            v.model, v.method = f"{PAYLOADS[0]}{v.model}", PAYLOADS[1]
            if v.top1:
                v.top1.label = PAYLOADS[3]
    run.models.append(ModelInfo(key=EVIL, spec=EVIL, family=EVIL, checkpoint=EVIL, checkpoint_sha256=EVIL, error=EVIL))
    run.environment[EVIL] = EVIL
    run.command = f"pytest {EVIL}"
    # pictures that are not raster data: URIs must not reach an attribute
    run.results[0].panels.append(Panel("bad", "javascript:alert(3)"))
    run.results[0].panels.append(Panel("bad2", 'data:image/png;base64,AAAA" onerror="alert(4)'))
    return run


# ---------------------------------------------------------------- escaping and isolation

def test_no_markup_or_script_from_audit_strings_reaches_the_page():
    run = evil_run()
    html = render_html(run)
    low = html.lower()
    assert "<script>alert" not in low
    assert "alert(3)" not in html and "alert(4)" not in html  # bad picture URIs dropped
    page = Page(html)
    for tag, attrs in page.tags:
        on = [k for k in attrs if k.startswith("on")]
        assert not on, f"<{tag}> got event handler attributes {on}"
        for k in ("src", "href"):
            v = attrs.get(k)
            if v is not None and tag in ("img", "a", "link"):
                assert v.startswith(("data:", "#")), f"<{tag} {k}={v[:40]!r}>"
    assert not any(a.get("src") == "x" for a in page.all("img"))
    # only the report's two scripts, both with the CSP nonce
    csp = next(a["content"] for a in page.all("meta") if a.get("http-equiv") == "Content-Security-Policy")
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert [a.get("type") for a, _ in page.scripts] == ["application/json", None]
    assert all(a.get("nonce") == nonce for a, _ in page.scripts)
    assert "alert" not in page.scripts[1][1]
    # every payload is on the page as plain text, untouched ("{{ 7*7 }}" not evaluated)
    for p in PAYLOADS:
        assert p in page.alltext
    # the JSON data block parses and holds the payloads verbatim: it was not broken out of
    data = json.loads(page.scripts[0][1])
    searches = " ".join(c["search"] for c in data["cards"])
    for p in PAYLOADS:
        assert p.lower() in searches
    assert {c["file"] for c in data["cards"]} == {r.file for r in run.results}


def test_template_syntax_in_data_is_not_evaluated():
    run = evil_run()
    html = render_html(run)
    text = Page(html).alltext
    assert text.count("{{ 7*7 }}") >= 10  # shown as written: Jinja never renders data as a template


def test_csp_forbids_network_and_nonce_is_fresh_per_report(run):
    a, b = render_html(run), render_html(run)
    metas = [x for x in Page(a).all("meta") if x.get("http-equiv") == "Content-Security-Policy"]
    assert len(metas) == 1
    csp = metas[0]["content"]
    for directive in ("default-src 'none'", "img-src data:", "style-src 'unsafe-inline'", "base-uri 'none'"):
        assert directive in csp
    assert re.search(r"script-src 'nonce-[A-Za-z0-9_-]{16,}'", csp)
    nonce = lambda h: re.search(r"'nonce-([^']+)'", h).group(1)  # noqa: E731
    assert nonce(a) != nonce(b)
    # the CSP meta comes before any style or script
    assert a.index("Content-Security-Policy") < a.index("<style") < a.index("<script")


def test_report_is_self_contained(html):
    page = Page(html)
    assert not page.all("iframe") and not page.all("object") and not page.all("embed") and not page.all("base")
    for a in page.all("link"):
        assert a.get("rel") == "icon" and a.get("href", "").startswith("data:")
    for a, _ in page.scripts:
        assert "src" not in a
    for tag, attrs in page.tags:
        for k, v in attrs.items():
            if v and k in ("src", "href", "action", "poster", "srcset", "data"):
                assert not re.match(r"\s*(https?:|//|ftp:|file:)", v), (tag, k, v[:60])
    style = html[html.index("<style>") : html.index("</style>")]
    assert "url(" not in style and "@import" not in style and "@font-face" not in style


# ---------------------------------------------------------------- content

def test_summary_counts_per_file_and_model_match_the_results(run, html):
    ctx = build_context(run, "n")
    for file, counts in ctx["per_file"]:
        expected = Counter(r.outcome for r in run.results if r.file == file)
        assert {o: n for o, n in counts.by_outcome.items() if n} == dict(expected)
    for model, counts in ctx["per_model"]:
        expected = Counter(r.outcome for r in run.results if model in r.models)
        assert {o: n for o, n in counts.by_outcome.items() if n} == dict(expected)
    assert {f for f, _ in ctx["per_file"]} == {r.file for r in run.results}
    total = Counter(r.outcome for r in run.results)
    for outcome, n in total.items():
        assert f'<span class="chip o-{outcome}">{n} {outcome}</span>' in html


def test_summary_shows_environment_models_and_command(run, html):
    text = Page(html).alltext
    for k, v in run.environment.items():
        assert k in text and v in text
    for m in run.models:
        assert m.key in text and m.spec in text and m.family in text
    assert 'title="' + run.models[0].checkpoint_sha256 + '"' in html
    assert run.command in text
    assert "interrupted" not in text


def test_every_expectation_has_a_card_grouped_by_file_then_image(run, html):
    page = Page(html)
    cards = [a for t, a in page.tags if t == "article"]
    assert len(cards) == len(run.results)
    order = [int(a["id"][1:]) for a in cards]
    keys = [(run.results[i].file, run.results[i].line) for i in order]
    files = [k[0] for k in keys]
    assert files == sorted(files)  # files in order, each one contiguous
    for f in set(files):
        lines = [k[1] for k in keys if k[0] == f]
        images = [run.results[i].image for i in order if run.results[i].file == f]
        assert [im for n, im in enumerate(images) if n == 0 or images[n - 1] != im] == list(dict.fromkeys(images))
        assert len(lines) == len(set(lines))


def test_cards_show_value_threshold_message_topk_and_panels(run, html):
    text = Page(html).alltext
    failed = next(r for r in run.results if r.outcome == "failed" and r.kind != "prediction")
    assert failed.message in text and failed.text in text and f"{failed.file}:{failed.line}" in text
    v, t = fmt_pair(failed.value, failed.threshold)
    assert v in text and t in text
    pred = next(r for r in run.results if r.kind == "prediction")
    for p in pred.topk:
        assert p.label in text
    baseline = next(r for r in run.results if r.kind == "baseline" and r.panels)
    assert [p.title for p in baseline.panels] == ["baseline", "current", "difference"]
    assert all(t in text for t in ("baseline", "current", "difference"))


def test_value_and_threshold_get_enough_digits_to_differ():
    assert fmt_pair(0.4996, 0.5) == ("0.4996", "0.5")
    assert fmt_pair(0.61234, [0.2, 0.8]) == ("0.612", "[0.2, 0.8]")
    assert fmt_pair(None, 0.5) == ("—", "0.5")
    assert fmt_pair(float("nan"), 0.5)[0] == "NaN"


def test_models_side_by_side_and_layer_grid_labelled(run, html):
    page = Page(html)
    views = [a for t, a in page.tags if t == "figure" and "view" in (a.get("class") or "") and a.get("data-model")]
    assert len(views) == sum(len(iv.views) for iv in run.images)
    grids = [a for t, a in page.tags if t == "details" and "layer-grid" in (a.get("class") or "")]
    assert len(grids) == sum(1 for iv in run.images for v in iv.views if v.layer_grid)
    block = html[html.index('<details class="layer-grid"') :]
    block = block[: block.index("</details>")]
    for i in range(1, 13):
        assert f"<span>L{i}</span>" in block and f"<span>H{i}</span>" in block
    assert "<span>L13</span>" not in block


def test_pictures_used_many_times_are_stored_once(run, html):
    original = run.images[0].uri
    assert sum(r.image_uri == original for r in run.results) > 1
    assert html.count(original) == 1  # in the shared table, referenced by data-ref
    page = Page(html)
    data = json.loads(page.scripts[0][1])
    refs = {a["data-ref"] for a in page.all("img") if "data-ref" in a}
    assert refs == set(data["images"])
    inline = [a["src"] for a in page.all("img") if a.get("src")]
    assert len(inline) == len(set(inline))  # nothing inlined twice


def test_failures_only_set_is_failed_error_xpassed(run):
    data = build_context(run, "n")["data"]
    assert {c["outcome"] for c in data["cards"] if c["outcome"] in PROBLEMS} == {"failed", "error", "xpassed"}


# ---------------------------------------------------------------- edge runs

def test_empty_run_renders(tmp_path):
    run = RunResults(started_at="2025-11-26T10:00:00+00:00", duration=0.0, command="pytest audits/", environment={})
    out = write_report(run, tmp_path / "audit.html", tmp_path / "audit.json")
    html = out.read_text(encoding="utf-8")
    text = Page(html).alltext
    assert "No expectation ran." in text and "0 of 0 expectations shown" in text
    doc = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    assert doc["summary"]["total"] == 0 and doc["summary"]["status"] == "passed"
    assert RunResults.from_dict(doc["run"]) == run


def test_interrupted_run_has_a_banner(run):
    r = copy.deepcopy(run)
    r.interrupted = True
    page = Page(render_html(r))
    assert "interrupted: this report shows what ran" in " ".join(page.alltext.split())
    assert any(a.get("role") == "alert" for _, a in page.tags)
    assert "this report shows what ran" not in render_html(run)


def test_long_text_and_unicode_labels(tmp_path):
    run = sample_run(1, 2, layer_grids=0)
    long_text = "the cat's face holds most of the attention " * 24
    long_text = long_text[:1000]
    label = "chat tigré — 猫 🐈 Γάτα ñ"
    run.results[0].text = long_text
    run.results[0].topk = [Prediction(label, 281, 0.91)] + (run.results[0].topk or [])[1:]
    run.results[0].kind = "prediction"
    out = write_report(run, tmp_path / "r.html", tmp_path / "r.json")
    text = Page(out.read_text(encoding="utf-8")).alltext
    assert long_text in text and label in text
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert doc["expectations"][0]["text"] == long_text
    assert doc["run"]["results"][0]["topk"][0]["label"] == label


def test_missing_and_invalid_pictures_show_a_placeholder():
    run = sample_run(1, 2, layer_grids=0)
    run.results[0].panels = [Panel("overlay", "")]
    run.results[0].image_uri = "http://example.com/cat.jpg"
    html = render_html(run)
    assert "example.com" not in html
    assert html.count('class="pic-missing"') == 1  # the empty panel; the bad original is left out


# ---------------------------------------------------------------- files

def test_json_round_trip_and_dashboard_summary(run, tmp_path):
    html_path = write_report(run, tmp_path / "reports" / "audit.html", tmp_path / "reports" / "audit.json")
    doc = json.loads((tmp_path / "reports" / "audit.json").read_text(encoding="utf-8"))
    assert doc["format"] == "vitaudit-audit/1" and doc["pictures"] == "omitted"
    assert RunResults.from_dict(doc["run"]) == strip_pictures(run)
    assert "data:image" not in json.dumps(doc)
    assert doc["summary"]["total"] == len(run.results)
    for o, n in Counter(r.outcome for r in run.results).items():
        assert doc["summary"][o] == n
    rows = {e["nodeid"]: e for e in doc["expectations"]}
    for r in run.results:
        e = rows[r.nodeid]
        assert (e["value"], e["threshold"], e["outcome"], e["map_stats"]) == (r.value, r.threshold, r.outcome, r.map_stats)
    assert (tmp_path / "reports" / "audit.json").stat().st_size < html_path.stat().st_size / 10


def test_json_keeps_pictures_on_request_and_is_strict_json(run, tmp_path):
    r = copy.deepcopy(run)
    r.results[0].value = float("nan")
    r.results[1].map_stats = {"mean": float("inf")}
    write_report(r, tmp_path / "a.html", tmp_path / "a.json", json_pictures=True)
    text = (tmp_path / "a.json").read_text(encoding="utf-8")

    def bad_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")

    doc = json.loads(text, parse_constant=bad_constant)
    back = RunResults.from_dict(doc["run"])
    assert back.results[0].value is None and back.results[1].map_stats == {"mean": None}
    r.results[0].value, r.results[1].map_stats = None, {"mean": None}
    assert back == r  # pictures included: the whole run comes back


def test_write_creates_parents_and_returns_the_html_path(run, tmp_path):
    target = tmp_path / "a" / "b" / "audit.html"
    assert write_report(run, str(target)) == target
    assert target.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in target.parent.iterdir()) == ["audit.html"]  # no JSON unless asked


def _old_pair(tmp_path: Path, run: RunResults) -> tuple[Path, Path, bytes, bytes]:
    h, j = tmp_path / "audit.html", tmp_path / "audit.json"
    write_report(run, h, j)
    return h, j, h.read_bytes(), j.read_bytes()


def test_failed_render_leaves_old_report_intact(run, tmp_path, monkeypatch):
    h, j, old_h, old_j = _old_pair(tmp_path, run)
    import jinja2

    def boom(self, *a, **k):
        raise RuntimeError("template exploded")

    monkeypatch.setattr(jinja2.Template, "render", boom)
    with pytest.raises(RuntimeError, match="template exploded"):
        write_report(run, h, j)
    assert h.read_bytes() == old_h and j.read_bytes() == old_j
    assert sorted(os.listdir(tmp_path)) == ["audit.html", "audit.json"]


def test_failed_write_leaves_old_report_intact_and_no_temp_file(run, tmp_path, monkeypatch):
    h, j, old_h, old_j = _old_pair(tmp_path, run)
    import vitaudit.report.atomic as atomic

    calls = []

    def full_disk(fd):
        calls.append(fd)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    bigger = copy.deepcopy(run)
    bigger.results[0].text = "changed"
    with pytest.raises(OSError):
        write_report(bigger, h, j)
    assert calls, "the write path was not exercised"
    assert h.read_bytes() == old_h and j.read_bytes() == old_j
    assert sorted(os.listdir(tmp_path)) == ["audit.html", "audit.json"]


def test_rewrite_replaces_the_report(run, tmp_path):
    h, j, old_h, _ = _old_pair(tmp_path, run)
    r = copy.deepcopy(run)
    r.results[0].text = "a brand new expectation text"
    write_report(r, h, j)
    assert "a brand new expectation text" in h.read_text(encoding="utf-8")
    assert h.read_bytes() != old_h
    # readable like any other file (the umask's mode, not mkstemp's 0600)
    umask = os.umask(0)
    os.umask(umask)
    assert h.stat().st_mode & 0o777 == 0o666 & ~umask


def test_nan_values_render_as_text_not_a_broken_gauge(run):
    r = copy.deepcopy(run)

    def fraction(x):
        return x is not None and not isinstance(x, (list, tuple)) and 0 <= x <= 1

    target = next(x for x in r.results if fraction(x.value) and fraction(x.threshold) and x.op in (">", "<", ">=", "<="))
    gauges = render_html(run).count('class="gauge"')
    target.value = float("nan")
    html = render_html(r)
    assert '<b class="value">NaN</b>' in html and "NaN" in Page(html).alltext
    assert html.count('class="gauge"') == gauges - 1, "the NaN value's card must draw no gauge"
    assert not re.search(r'style="[^"]*nan', html, re.IGNORECASE), "no NaN position reaches a style"
