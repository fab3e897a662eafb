"""The ``vitaudit init`` sub-command: its flags, and turning them into :class:`~.source.InitOptions`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .source import InitError, InitOptions, guess_kind

KINDS = ("folder", "coco", "voc", "csv")


def add_parser(sub) -> argparse.ArgumentParser:
    """Add ``init`` to the ``vitaudit`` sub-commands."""
    p = sub.add_parser(
        "init", help="draft a first audit from one pass of the models over an annotated dataset",
        description="Run one dataset pass and write a commented, valid audit file (with the values it recorded "
                    "in baselines/<file>/values.json) that passes under pytest on this run: accuracy, mass in each "
                    "annotated region and pointing game per class, agreement, a sanity check, statements against "
                    "chance 'with 95%% confidence', and findings (maps no better than uniform, border regions "
                    "drawing more than their area) as xfail-marked expectations. See docs/first-audit.md.")
    p.add_argument("--model", action="append", required=True, metavar="NAME",
                   help="a model to audit (timm name, torchvision:NAME, fixture:NAME, hf:...); repeat for two")
    p.add_argument("--pretrained", action="store_true", help="load the models' pretrained weights")
    src = p.add_argument_group("the dataset (one of)")
    src.add_argument("--dataset", type=Path, metavar="PATH",
                     help="a folder of images (classes from sub-folders), a COCO .json, a folder of VOC .xml "
                          "files or a CSV manifest, told apart by what it is")
    for kind in KINDS:
        src.add_argument(f"--{kind}", type=Path, metavar="PATH", help=f"the dataset, as `{kind}:` in an audit file")
    p.add_argument("--images", type=Path, metavar="DIR",
                   help="COCO/VOC: the folder their file names are relative to; alone: a folder of images "
                        "without annotations (prediction expectations and map baselines)")
    p.add_argument("--labels", choices=("folders", "largest", "none"), default=None,
                   help="the images' classes (default: folders when a folder has one sub-folder per class)")
    p.add_argument("--masks", metavar="TEMPLATE", help='a mask file per image, e.g. "masks/{stem}.png"')
    p.add_argument("--mask-region", default="object", metavar="NAME", help="the region --masks draws (default: object)")
    p.add_argument("--sample", type=int, metavar="N", help="audit N images drawn at random (seeded)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    p.add_argument("--sanity-images", type=int, default=8, metavar="N",
                   help="images of the sanity check's small sample (default 8; 0: no sanity check)")
    p.add_argument("--max-images", type=int, default=50, metavar="N",
                   help="--images alone: at most N image declarations (default 50)")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="the audit file to write (default: audits/audit_<first model>.yaml)")
    return p


def options(args: argparse.Namespace) -> InitOptions:
    """The checked options of a parsed ``vitaudit init`` command line."""
    given = [(k, getattr(args, k)) for k in KINDS if getattr(args, k) is not None]
    if args.dataset is not None:
        given.append((guess_kind(args.dataset), args.dataset))
    if len(given) > 1:
        raise InitError("give one dataset (--dataset, --folder, --coco, --voc or --csv)")
    kind, source = given[0] if given else (None, None)
    if kind is None and args.images is None:
        raise InitError("give a dataset (--dataset, --folder, --coco, --voc, --csv) or --images DIR")
    if args.sample is not None and args.sample < 1:
        raise InitError(f"--sample must be >= 1, got {args.sample}")
    out = args.out
    if out is None:
        from .source import model_key

        out = Path("audits") / f"audit_{model_key(args.model[0], set())}.yaml"
    return InitOptions(models=list(args.model), out=out, kind=kind, source=source, images=args.images,
                       labels=args.labels, masks=args.masks, mask_region=args.mask_region, sample=args.sample,
                       seed=args.seed, pretrained=args.pretrained, max_images=args.max_images,
                       sanity_images=max(0, args.sanity_images))


def main(args: argparse.Namespace) -> int:
    """Run ``vitaudit init``; 0 when the audit is written, 1 with one line when it cannot be."""
    from . import run_init

    try:
        result = run_init(options(args))
    except InitError as exc:
        print(f"vitaudit init: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.path}: {result.expectations} expectations ({result.xfail} xfail-marked findings)"
          + (f"; values recorded in {result.values}" if result.values else ""))
    for f in result.findings:
        print(f"  finding: {f}")
    print(f"run it: pytest {result.path}")
    return 0
