"""``vitaudit explain``: a quick look at one image from the shell; ``vitaudit compare``: what changed
between two audit runs; ``vitaudit init``: a first audit drafted from a model and a dataset
(:mod:`vitaudit.init`).

Bad arguments, unreadable images, unknown models and unknown labels get one line saying what
is wrong (with close matches for names) and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2
EXIT_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vitaudit", description="Audit image classifiers' explanations.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ex = sub.add_parser("explain", help="explain one image with one method and print the top-5")
    ex.add_argument("image", help="image file (JPEG, PNG, WebP, ...) or skimage:NAME for a bundled photo")
    ex.add_argument("--model", required=True, help="timm name, torchvision:NAME or fixture:NAME")
    ex.add_argument("--pretrained", action="store_true", help="load the model's pretrained weights")
    ex.add_argument("--checkpoint", help="a .safetensors or state-dict file to load instead")
    ex.add_argument("--method", default="gradcam", help="attention, rollout, gradcam, gradcam++, hirescam, scorecam, eigencam, layercam; options as name(option=value)")
    ex.add_argument("--target", help="class to explain (name, synonym or index); default: the top-1")
    ex.add_argument("--crop", choices=("resize", "center"), default="resize", help="input geometry (default: resize the whole image)")
    ex.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    ex.add_argument("--out", help="write the heat-map overlay (JET over the image) to this file")
    ex.add_argument("--save-map", help="write the raw heat map as float32 .npy at the image's size")
    ex.add_argument("--json", action="store_true", help="print the result as JSON")
    cmp = sub.add_parser("compare", help="compare two audit.json files; exit 1 when an expectation newly fails",
                         description="Compare two audit runs (audit.json files), matching expectations by node id. "
                                     "Exit status: 0 no regression, 1 an expectation newly fails, 2 bad input.")
    cmp.add_argument("old", help="the earlier run's audit.json (e.g. the main branch's)")
    cmp.add_argument("new", help="the later run's audit.json")
    cmp.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                     help="output format (default: text)")
    cmp.add_argument("--tolerance", type=_tolerance, default=None, metavar="X",
                     help="list values that moved by more than X (default: 0.01)")
    cmp.add_argument("--significance", type=_level, default=0.05, metavar="ALPHA",
                     help="level of the paired test on dataset aggregates' per-image values (default: 0.05)")
    cmp.add_argument("--fail-on", choices=("regression", "significant-worse"), default="regression",
                     help="exit 1 on a newly failing expectation (regression, the default), or also on a "
                          "dataset aggregate that got significantly worse while its threshold still passes")
    from .init.command import add_parser as add_init

    add_init(sub)
    return parser


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), e.g. 0.05, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "compare":
        return _compare(args)
    if args.command == "init":
        from .init.command import main as init_main

        return init_main(args)
    try:
        return _explain(args)
    except KeyboardInterrupt:
        print("vitaudit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every library error is a one-line ValueError subclass
        if not isinstance(exc, (ValueError, OSError, TypeError)):
            raise
        print(f"vitaudit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _compare(args: argparse.Namespace) -> int:
    from .compare import DEFAULT_TOLERANCE, CompareError, compare_files
    from .compare_formats import render

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    try:
        cmp = compare_files(args.old, args.new, tolerance, args.significance)
    except CompareError as exc:
        print(f"vitaudit compare: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(render(cmp, args.format))
    return EXIT_ERROR if cmp.failed(args.fail_on) else 0


def _explain(args: argparse.Namespace) -> int:
    import numpy as np

    from .engine import explain
    from .images import load_image, skimage_image
    from .models import load_model

    image = skimage_image(args.image[len("skimage:"):]) if args.image.startswith("skimage:") else load_image(args.image)
    model = load_model(
        args.model,
        pretrained=True if args.pretrained else None,
        checkpoint=args.checkpoint,
        device=args.device,
        crop=args.crop,
    )
    target = args.target
    if target is not None and target.strip().lstrip("-").isdigit():
        target = int(target)
    e = explain(model, image, args.method, target=target)
    if args.out:
        from .report.visuals import overlay

        import cv2

        picture = overlay(image.to_uint8(), e.heatmap)
        if not cv2.imwrite(args.out, picture[:, :, ::-1]):
            raise OSError(f"cannot write overlay to {args.out} (unknown extension or unwritable folder)")
    if args.save_map:
        np.save(args.save_map, e.heatmap.astype(np.float32))
    topk = e.topk(5)
    if args.json:
        doc = {
            "model": model.name,
            "method": e.method,
            "target": {"label": e.target_label, "index": e.target},
            "topk": [{"label": lab, "index": i, "prob": p} for lab, i, p in topk],
            "map_shape": list(e.heatmap.shape),
            "no_signal": e.no_signal,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"{model.describe()}  method={e.method}  target={e.target_label!r} ({e.target})")
        for rank, (lab, i, p) in enumerate(topk, 1):
            print(f"  {rank}. {p:7.2%}  {lab} ({i})")
        if e.no_signal:
            print("  note: the map has no signal (all zeros)")
        for what, path in (("overlay", args.out), ("map", args.save_map)):
            if path:
                print(f"  {what}: {Path(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
