"""``vitaudit init --images DIR`` without annotations: the models' predictions today and map baselines.

Each image (at most ``--max-images``, in sorted order) is declared under ``images:``; each model gets
``<image>: <model> top1 is "<its top-1 today>"``, and every map of every model a baseline
(``"*": <model>.<method> baseline similarity > 0.9``), written by one ``--audit-update-baselines``
run: drift tests from day one, with nothing annotated.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vitaudit.datasets.base import IMAGE_EXTENSIONS

from .source import InitError, InitOptions, relative_to

if TYPE_CHECKING:
    from .common import InitResult

#: Pearson similarity to the stored map a drift test asks for.
SIMILARITY = 0.9


def image_files(folder: Path, limit: int) -> tuple[list[Path], int]:
    """The image files below ``folder`` (sorted), at most ``limit`` of them, and how many there are."""
    if not folder.is_dir():
        raise InitError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InitError(f"--images {folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) below it")
    return files[:limit], len(files)


def _key(path: Path, taken: set[str]) -> str:
    base = "img_" + re.sub(r"[^0-9A-Za-z_]+", "_", path.stem).strip("_").lower()
    out, i = base, 2
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


def _label(text: str) -> str:
    if '"' in text:
        raise InitError(f"cannot write the class name {text!r} in a sentence (it contains a double quote)")
    return f'"{text}"'


def run_images_only(opts: InitOptions, say: Callable[[str], None]) -> "InitResult":
    import vitaudit
    from vitaudit.images import load_image

    from .common import InitResult, load_models, parse_text
    from .draft import Line, Section, render
    from .measure import run_probe

    if opts.images is None:
        raise InitError("give a dataset (--dataset, --folder, --coco, --voc, --csv) or --images DIR")
    files, total = image_files(opts.images, opts.max_images)
    say(f"vitaudit init: loading {', '.join(opts.models)}")
    models, model_decls = load_models(opts)
    taken: set[str] = set()
    keys = [_key(p, taken) for p in files]
    here = opts.out.parent
    images = {k: {"path": relative_to(p, here)} for k, p in zip(keys, files)}
    predictions = Section("prediction: each model's top-1 today")
    say(f"vitaudit init: predicting {len(files)} images")
    for info in models:
        model = vitaudit.load_model(info.name, pretrained=True if opts.pretrained else None)
        probs = vitaudit.predict(model, [load_image(p) for p in files])
        for k, p in zip(keys, probs):
            top = int(p.argmax())
            predictions.lines.append(Line(k, f"{info.key} top1 is {_label(model.labels[top])}",
                                          [f"{info.key}: {model.labels[top]} at {float(p[top]):.1%}"]))
    drift = Section(f"map baselines: each map of each image against the one stored today (Pearson > {SIMILARITY:g})")
    for info in models:
        for method in info.methods:
            drift.lines.append(Line('"*"', f"{info.key}.{method} baseline similarity > {SIMILARITY:g}"))
    header = [f"Drafted by `vitaudit init` from {len(files)} images of {opts.images}"
              + (f" (the first {len(files)} of {total})" if total > len(files) else "")
              + f" with {', '.join(f'{m.key} = {m.name}' for m in models)}, without annotations.",
              "Predictions as the models make them today, and a baseline of every map of every image",
              f"(stored under baselines/ beside this file by `pytest {opts.out.name} --audit-update-baselines`,",
              "which vitaudit init ran once): drift tests. Annotate regions to test where the maps look."]
    text = _render_images(render(header, model_decls, {}, []), images) + _lines([predictions, drift])
    parse_text(opts.out, text)
    say("vitaudit init: storing the map baselines")
    run_probe(opts.out, say)
    lines = predictions.lines + drift.lines
    return InitResult(opts.out, len(lines), 0, [], None)


def _render_images(head: str, images: dict[str, dict[str, str]]) -> str:
    from .draft import _flow

    text = head.replace("datasets:\nexpect:\n", "")
    return text + "images:\n" + "".join(f"  {k}: {_flow(v)}\n" for k, v in images.items()) + "expect:\n"


def _lines(sections) -> str:
    from .draft import render

    body = render([], {}, {}, sections)
    return body.split("expect:\n", 1)[1]
