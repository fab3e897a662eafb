"""Benchmark of the HTML report on a realistic 500-expectation run.

50 images (scikit-image photos at their real sizes) x 10 expectations across 5 audit files,
3 model views per image (ViT attention, ViT rollout, ResNet Grad-CAM), 5 ViT per-layer x
per-head mosaics. Prints the time to make the pictures (what the plugin spends in its
workers), the time to render + write the report and audit.json, and their sizes, against
the goals: render+write <= 3 s, HTML < 25 MB.

Then a dataset audit's report: six aggregate expectations (accuracy, a mean, three shares, one
share per class: 9 cards) over a 10,000-image labelled dataset (``--dataset-images``), each
card with its histogram, 9 example overlays and per-class rows; the per-image lists go to
audit.json only. Goal: HTML <= 5 MB.

    python benchmarks/bench_report.py            # the default picture settings
    python benchmarks/bench_report.py --sweep    # compare encodings (slower)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from vitaudit.report import sample, visuals, write_report
from vitaudit.results import RunResults

GOAL_RENDER_S = 3.0
GOAL_HTML_MB = 25.0
GOAL_DATASET_HTML_MB = 5.0


def _timed(fn: Callable, totals: dict[str, list[float]]) -> Callable:
    def wrapper(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            totals[fn.__name__].append(time.perf_counter() - t0)
    return wrapper


def build(n_images: int, per_image: int, grids: int, card: dict[str, Any]) -> tuple[Any, dict[str, list[float]]]:
    """The run, with every visuals call timed (the synthetic maps themselves are not counted)."""
    totals: dict[str, list[float]] = defaultdict(list)
    names = ("overlay", "draw_outline", "outline_layer", "diff_image", "layer_head_mosaic", "encode")
    proxy = SimpleNamespace(**{n: _timed(getattr(visuals, n), totals) for n in names})
    original = sample.visuals
    sample.visuals = proxy  # type: ignore[assignment]
    try:
        run = sample.sample_run(n_images, per_image, layer_grids=grids, card=card, encode=proxy.encode)
    finally:
        sample.visuals = original
    return run, totals


def measure(card: dict[str, Any], n_images: int, per_image: int, grids: int, repeats: int, verbose: bool) -> dict[str, float]:
    run, totals = build(n_images, per_image, grids, card)
    vis_s = sum(sum(v) for v in totals.values())
    with tempfile.TemporaryDirectory() as d:
        html, js = Path(d) / "reports" / "audit.html", Path(d) / "reports" / "audit.json"
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            write_report(run, html, js)
            times.append(time.perf_counter() - t0)
        html_mb, json_kb = html.stat().st_size / 1e6, js.stat().st_size / 1e3
    render_s = statistics.median(times)
    if verbose:
        n_pics = len(totals["encode"])
        print(f"run: {len(run.results)} expectations, {len(run.images)} images, {n_pics} pictures encoded")
        print(f"visuals: {vis_s:.2f} s in all, {1e3 * vis_s / max(1, len(run.results)):.1f} ms per expectation")
        for name, ts in sorted(totals.items()):
            print(f"  {name:18s} {len(ts):4d} calls  median {1e3 * statistics.median(ts):6.2f} ms  total {sum(ts):5.2f} s")
        print(f"render + write (HTML and JSON, median of {repeats}): {render_s:.2f} s")
        print(f"HTML: {html_mb:.1f} MB   JSON: {json_kb:.0f} kB")
    return {"visuals_s": vis_s, "render_s": render_s, "html_mb": html_mb, "json_kb": json_kb}


def measure_dataset(n_images: int) -> dict[str, float]:
    """Render the report of :func:`sample.dataset_results` over ``n_images`` images; sizes and time."""
    t0 = time.perf_counter()
    results = sample.dataset_results(n_images)
    build_s = time.perf_counter() - t0
    run = RunResults(started_at="2025-11-26T10:00:00+00:00", duration=0.0, command="pytest audits/",
                     environment={}, results=results)
    with tempfile.TemporaryDirectory() as d:
        html, js = Path(d) / "audit.html", Path(d) / "audit.json"
        t0 = time.perf_counter()
        write_report(run, html, js)
        render_s = time.perf_counter() - t0
        html_mb, json_mb = html.stat().st_size / 1e6, js.stat().st_size / 1e6
    n_per_image = sum(len(r.per_image or []) for r in results)
    print(f"dataset run: {n_images} images, {len(results)} aggregate cards, {n_per_image} per-image values "
          f"(sample built in {build_s:.2f} s)")
    print(f"render + write: {render_s:.2f} s   HTML: {html_mb:.2f} MB   JSON: {json_mb:.1f} MB")
    return {"render_s": render_s, "html_mb": html_mb, "json_mb": json_mb}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--per-image", type=int, default=10)
    ap.add_argument("--grids", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dataset-images", type=int, default=10_000, help="images of the dataset audit (0: skip it)")
    ap.add_argument("--sweep", action="store_true", help="also compare other encodings")
    args = ap.parse_args(argv)
    print(f"picture settings: {sample.CARD} (mosaics: {sample.GRID})")
    m = measure(sample.CARD, args.images, args.per_image, args.grids, args.repeats, verbose=True)
    ok_render, ok_size = m["render_s"] <= GOAL_RENDER_S, m["html_mb"] < GOAL_HTML_MB
    print(f"goal render+write <= {GOAL_RENDER_S:.0f} s: {'met' if ok_render else 'NOT met'} ({m['render_s']:.2f} s)")
    print(f"goal HTML < {GOAL_HTML_MB:.0f} MB: {'met' if ok_size else 'NOT met'} ({m['html_mb']:.1f} MB)")
    ok_dataset = True
    if args.dataset_images > 0:
        print()
        dm = measure_dataset(args.dataset_images)
        ok_dataset = dm["html_mb"] <= GOAL_DATASET_HTML_MB
        print(f"goal dataset HTML <= {GOAL_DATASET_HTML_MB:.0f} MB at {args.dataset_images} images: "
              f"{'met' if ok_dataset else 'NOT met'} ({dm['html_mb']:.2f} MB)")
    if args.sweep:
        print("\nencoding sweep (card and strip pictures):")
        print(f"  {'settings':44s} {'visuals s':>9s} {'render s':>9s} {'HTML MB':>8s}")
        for card in ({"fmt": "jpeg", "quality": 85, "max_side": 384}, {"fmt": "jpeg", "quality": 80, "max_side": 384},
                     {"fmt": "jpeg", "quality": 75, "max_side": 320}, {"fmt": "webp", "quality": 80, "max_side": 384},
                     {"fmt": "webp", "quality": 70, "max_side": 320}):
            s = measure(card, args.images, args.per_image, args.grids, 1, verbose=False)
            print(f"  {str(card):44s} {s['visuals_s']:9.2f} {s['render_s']:9.2f} {s['html_mb']:8.1f}")
    return 0 if ok_render and ok_size and ok_dataset else 1


if __name__ == "__main__":
    sys.exit(main())
