"""``explain`` / ``explain_batch``: prediction and every requested map from one forward pass.

Per batch of images the model runs once, with hooks that capture what the requested methods
need (attention rows, rollout products, a grad-requiring leaf at the CAM target layer). The
logits of that forward are the prediction; gradient methods then run one backward that stops
at the target layer. Results go into a bounded in-session cache keyed by (model, image
content, preprocessing, method, target), so no image is run twice.
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import torch

from .batching import ItemFailure, run_in_batches
from .cache import DEFAULT_CACHE, ExplanationCache, ImageEntry
from .capture import AttentionCapture, ClassRowGradient, LayerCapture
from .explainers import Explainer, ForwardContext, Needs, get_method, method_key, parse_method
from .explanation import Explanation
from .images import ImageLike, LoadedImage, load_image
from .labels import Label
from .layers import get_module, vit_grid
from .models import AuditModel
from .preprocess import Crop, Preprocessing

MethodLike = Union[str, tuple[str, dict]]


@dataclass(frozen=True)
class Request:
    """One map wanted for one image: a method with canonical options, and a target (None: top-1)."""

    explainer: Explainer
    options: tuple[tuple[str, Any], ...]
    target: int | None

    @property
    def key(self) -> str:
        return method_key(self.explainer.name, dict(self.options))


def resolve_method(model: AuditModel, method: MethodLike) -> tuple[Explainer, tuple[tuple[str, Any], ...]]:
    """Look a method up, check it applies to ``model``, and canonicalise its options."""
    if isinstance(method, tuple):
        name, given = method
    else:
        name, given = parse_method(method)
    explainer = get_method(name)
    explainer.check_model(model)
    options = explainer.options(dict(given))
    explainer.needs(model, options)  # raises early for options that do not fit this model
    return explainer, tuple(sorted(options.items()))


def default_batch_size(model: AuditModel) -> int:
    return 32 if model.device.type == "cuda" else 8


def _preprocessing(model: AuditModel, crop: Crop | None) -> Preprocessing:
    if crop is None or crop == model.crop:
        return model.preprocessing
    return Preprocessing.from_data_config(model.data_config, crop)


def _cache_key(model: AuditModel, image: LoadedImage, prep: Preprocessing) -> tuple:
    return (model.key, image.digest, prep)


def _map_key(req: Request, top1: int) -> tuple[str, int | None]:
    if not req.explainer.class_specific:
        return (req.key, None)
    return (req.key, top1 if req.target is None else req.target)


def prefetch(
    model: AuditModel,
    images: Sequence[ImageLike],
    requests: Sequence[Sequence[Request]],
    *,
    batch_size: int | None = None,
    crop: Crop | None = None,
    cache: ExplanationCache = DEFAULT_CACHE,
) -> list[ImageEntry]:
    """Make sure the cache holds every requested map of every image; one forward per batch.

    A batch that runs out of device memory is retried in halves (:mod:`vitaudit.batching`);
    images that do not fit even alone raise :class:`BatchFailed` once the others are done.
    """
    loaded = [load_image(im) for im in images]
    prep = _preprocessing(model, crop)
    keys = [_cache_key(model, im, prep) for im in loaded]
    found: dict[int, ImageEntry] = {}
    todo: list[int] = []
    for i, key in enumerate(keys):
        entry = cache.get(key)
        if entry is not None:
            top1 = int(np.argmax(entry.probs))
            if all(_map_key(r, top1) in entry.maps for r in requests[i]):
                cache.hits += 1
                found[i] = entry
                continue
        cache.misses += 1
        todo.append(i)
    if todo:
        run = run_in_batches(
            todo,
            lambda chunk: _run_batch(model, [loaded[i] for i in chunk], [requests[i] for i in chunk],
                                     [keys[i] for i in chunk], prep, cache),
            batch_size or default_batch_size(model),
            key=(model.key, str(model.device)),
        )
        if run.failures:
            raise BatchFailed([(loaded[todo[f.index]].source, f) for f in run.failures])
        found.update(zip(todo, run.results))
    return [found[i] for i in range(len(loaded))]


class BatchFailed(RuntimeError):
    """Images that did not fit on the device even one at a time (the others are in the cache)."""

    def __init__(self, failures: list[tuple[str, ItemFailure]]) -> None:
        self.failures = failures
        source, first = failures[0]
        more = f" (and {len(failures) - 1} more images)" if len(failures) > 1 else ""
        super().__init__(f"{first.message} [image {source}{more}]")


def run_batch(model: AuditModel, images: Sequence[LoadedImage], requests: Sequence[Sequence[Request]], *,
              crop: Crop | None = None, cls_rows: bool = False,
              prepared: dict | None = None) -> list[ImageEntry | ItemFailure]:
    """Every requested map of a batch, with no cache: one forward (and at most one backward per
    target round) per batch that fits.

    The dataset pass uses this: every image is new, and only per-image values are kept.
    ``cls_rows`` also keeps each ViT's per-layer CLS attention (for the report's mosaic). A batch
    that runs out of device memory is retried in halves (:mod:`vitaudit.batching`); an image that
    does not fit even alone gets its :class:`~vitaudit.batching.ItemFailure` in its place.
    ``prepared``: a dict that the calls for one batch's models share (and that lives no longer than
    the images), so each image is preprocessed once per distinct input transform (models with the
    same one share the tensor).
    """
    prep = _preprocessing(model, crop)
    images, requests = list(images), list(requests)
    run = run_in_batches(
        list(range(len(images))),
        lambda chunk: _run_batch(model, [images[i] for i in chunk], [requests[i] for i in chunk],
                                 [None] * len(chunk), prep, None, cls_rows=cls_rows, prepared=prepared),
        len(images),
        key=(model.key, str(model.device)),
    )
    out: list[ImageEntry | ItemFailure] = list(run.results)  # type: ignore[arg-type]
    for failure in run.failures:
        out[failure.index] = failure
    return out


def _run_batch(model: AuditModel, images: list[LoadedImage], requests: list[Sequence[Request]],
               keys: list[tuple | None], prep: Preprocessing, cache: ExplanationCache | None,
               cls_rows: bool = True, prepared: dict | None = None) -> list[ImageEntry]:
    if prepared is None:
        inputs, geometries = zip(*(prep(im) for im in images))
    else:
        inputs, geometries = zip(*(_prepared(prep, im, prepared) for im in images))
    x = torch.stack(inputs)
    if model.device.type == "cuda":  # page-locked, so the copy overlaps the host's work
        x = x.pin_memory().to(model.device, non_blocking=True)
    needs = Needs(cls_rows=cls_rows and model.anatomy.reads_attention and model.anatomy.class_token)
    for reqs in requests:
        for r in reqs:
            needs.merge(r.explainer.needs(model, dict(r.options)))
    ctx = forward(model, x, needs)
    probs = torch.softmax(ctx.logits.float(), dim=-1).cpu().numpy()
    top1 = probs.argmax(axis=1)
    cls_att = _cls_attention(ctx) if ctx.attention is not None else None

    entries: list[ImageEntry] = []
    sizes: list[int] = []
    for i, key in enumerate(keys):
        entry = cache.get(key) if cache is not None else None
        if entry is None:
            entry = ImageEntry(probs=probs[i], geometry=geometries[i])
        sizes.append(entry.nbytes())
        if cls_att is not None and entry.cls_attention is None:
            entry.cls_attention = cls_att[i]
        entries.append(entry)

    # Group the wanted maps by (method, options); each group is computed for the whole batch,
    # in rounds of one target per image (usually a single round).
    groups: dict[tuple, dict[int, list[int]]] = {}
    explainers: dict[tuple, Request] = {}
    for i, reqs in enumerate(requests):
        for r in reqs:
            mk = _map_key(r, int(top1[i]))
            if mk in entries[i].maps:
                continue
            gkey = (r.explainer.name, r.options)
            explainers.setdefault(gkey, r)
            wanted = groups.setdefault(gkey, {}).setdefault(i, [])
            target = mk[1] if mk[1] is not None else int(top1[i])  # class-agnostic: any target
            if target not in wanted:
                wanted.append(target)
    for gkey, per_image in groups.items():
        req = explainers[gkey]
        rounds = max(len(t) for t in per_image.values())
        for rnd in range(rounds):
            targets = torch.tensor([
                per_image[i][rnd] if i in per_image and rnd < len(per_image[i]) else int(top1[i])
                for i in range(len(images))
            ])
            maps = req.explainer.maps(ctx, targets, dict(req.options))
            for i, wanted in per_image.items():
                if rnd < len(wanted):
                    t = None if not req.explainer.class_specific else wanted[rnd]
                    entries[i].maps[(req.key, t)] = np.ascontiguousarray(maps[i], dtype=np.float32)
    if cache is None:
        return entries
    for key, entry, before in zip(keys, entries, sizes):
        if cache.get(key) is entry:
            cache.touch(key, entry, before)
        else:
            cache.put(key, entry)
    return entries


def _prepared(prep: Preprocessing, image: LoadedImage, memo: dict) -> tuple[torch.Tensor, Any]:
    """``prep(image)``, computed once per memo (keyed by the transform and the image object, which
    the memo holds, so the key cannot be taken by another image)."""
    key = (prep, id(image))
    got = memo.get(key)
    if got is None or got[0] is not image:
        got = memo[key] = (image, prep(image))
    return got[1]


def forward(model: AuditModel, x: torch.Tensor, needs: Needs) -> ForwardContext:
    """Run the model once with the hooks ``needs`` asks for; the logits are the plain model's."""
    module = model.module
    anatomy = model.anatomy
    tokens = anatomy.family == "vit"
    with ExitStack() as stack:
        attention = None
        if anatomy.reads_attention and (needs.cls_rows or needs.rollouts):
            attention = stack.enter_context(AttentionCapture(
                module, tuple(sorted(needs.rollouts, key=repr)), paths=anatomy.attention,
                class_attention=anatomy.class_attention))
        layers = {p: stack.enter_context(LayerCapture(get_module(module, p), p)) for p in sorted(needs.layers)}
        class_rows = anatomy.class_row_paths(needs.layers)
        if class_rows:
            stack.enter_context(ClassRowGradient(module, class_rows))
        with torch.no_grad():
            out = module(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return ForwardContext(
        model=model,
        x=x,
        logits=out.detach(),
        grid=vit_grid(module, tuple(x.shape[-2:]), anatomy.patch_size) if tokens else None,
        num_prefix=anatomy.num_prefix if tokens else 0,
        attention=attention.record if attention is not None else None,
        layers=layers,
        graph_logits=out if out.requires_grad else None,
        layouts={p: anatomy.feature_layout for p in layers},
    )


def _cls_attention(ctx: ForwardContext) -> np.ndarray:
    """(B, layers, heads, gh, gw) float16: the class token's attention to each patch."""
    rows = torch.stack(ctx.attention.cls_rows, dim=1)  # (B, L, H, N)
    gh, gw = ctx.grid  # type: ignore[misc]
    patches = rows[..., ctx.num_prefix :]
    return patches.reshape(*patches.shape[:3], gh, gw).to(torch.float16).cpu().numpy()


def _resolve_target(model: AuditModel, target: Label | None) -> int | None:
    return None if target is None else model.label_index(target)


def explain_batch(
    model: AuditModel,
    images: Sequence[ImageLike],
    methods: Sequence[MethodLike],
    *,
    targets: Sequence[Label | None] | None = None,
    batch_size: int | None = None,
    crop: Crop | None = None,
    cache: ExplanationCache = DEFAULT_CACHE,
) -> list[dict[str, Explanation]]:
    """Explain every image with every method; one forward per batch of images.

    Returns, per image, ``{method as given: Explanation}``. ``targets`` gives a class per
    image (label or index; None: the top-1).
    """
    if targets is not None and len(targets) != len(images):
        raise ValueError(f"{len(targets)} targets for {len(images)} images")
    resolved = [(m if isinstance(m, str) else m[0], *resolve_method(model, m)) for m in methods]
    target_idx = [_resolve_target(model, t) for t in (targets or [None] * len(images))]
    loaded = [load_image(im) for im in images]
    requests = [[Request(ex, opts, t) for _, ex, opts in resolved] for t in target_idx]
    entries = prefetch(model, loaded, requests, batch_size=batch_size, crop=crop, cache=cache)
    out = []
    for entry, reqs in zip(entries, requests):
        out.append({name: explanation_of(model, entry, req) for (name, _, _), req in zip(resolved, reqs)})
    return out


def raw_of(entry: ImageEntry, req: Request) -> np.ndarray:
    """The raw map of one request in an image's entry (which must hold it): ``explanation_of(...).raw``
    without the rest of the :class:`Explanation`."""
    return entry.maps[_map_key(req, int(np.argmax(entry.probs)))]


def explanation_of(model: AuditModel, entry: ImageEntry, req: Request) -> Explanation:
    """The :class:`Explanation` of one request from an image's entry (which must hold its map)."""
    top1 = int(np.argmax(entry.probs))
    target = top1 if req.target is None else req.target
    return Explanation(
        method=req.key,
        model_name=model.name,
        target=target,
        target_label=model.labels[target],
        probs=entry.probs,
        labels=model.labels,
        raw=entry.maps[_map_key(req, top1)],
        geometry=entry.geometry,
        cls_attention=None if entry.cls_attention is None else entry.cls_attention.astype(np.float32),
    )


def explain(
    model: AuditModel,
    image: ImageLike,
    method: MethodLike = "gradcam",
    *,
    target: Label | None = None,
    crop: Crop | None = None,
    cache: ExplanationCache = DEFAULT_CACHE,
) -> Explanation:
    """Explain one image with one method (see :func:`explain_batch`)."""
    key = method if isinstance(method, str) else method[0]
    return explain_batch(model, [image], [method], targets=[target], crop=crop, cache=cache)[0][key]


def predict(model: AuditModel, images: Sequence[ImageLike], *, crop: Crop | None = None,
            cache: ExplanationCache = DEFAULT_CACHE, batch_size: int | None = None) -> list[np.ndarray]:
    """Softmax probabilities per image (float32), from the cache when the image has been seen."""
    entries = prefetch(model, images, [[] for _ in images], batch_size=batch_size, crop=crop, cache=cache)
    return [e.probs for e in entries]
