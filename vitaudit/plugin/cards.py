"""Pictures for an expectation's card and for the per-image model strip, encoded in the worker.

Pictures are drawn at the report's size (longest side 384 px) rather than drawn full size and
shrunk, and each is encoded once per process: the cards of one map and region share one
overlay, and the report stores a picture used by many cards only once.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vitaudit.results import ModelView, Panel, Prediction

if TYPE_CHECKING:
    from vitaudit.explanation import Explanation

    from vitaudit.audit.evaluation import Evaluation
    from vitaudit.audit.session import AuditSession

MAX_SIDE = 384
QUALITY = 80


def _small_size(h: int, w: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SIDE / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def small_image(session: "AuditSession", key: tuple, rgb: np.ndarray) -> np.ndarray:
    """The image at report size (cached per process)."""
    import cv2

    cache = session.small_images
    small = cache.get(key)
    if small is None:
        h, w = _small_size(*rgb.shape[:2])
        small = rgb if (h, w) == rgb.shape[:2] else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        cache[key] = small
        while len(cache) > 64:  # the images at hand; items of one image run together
            cache.pop(next(iter(cache)))
    return small


def _fit(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from vitaudit.metrics import resize_map

    return m if m.shape == shape else resize_map(m.astype(np.float32), shape)


def image_uri(session: "AuditSession", key: tuple, rgb: np.ndarray) -> str:
    from vitaudit.report.visuals import encode

    return session.encoded(("image",) + key, lambda: encode(small_image(session, key, rgb), max_side=MAX_SIDE, quality=QUALITY))


def overlay_uri(session: "AuditSession", key: tuple, rgb: np.ndarray, heatmap: np.ndarray) -> str:
    """JET overlay of ``heatmap`` on the image (``key`` = (file, image, map title))."""
    from vitaudit.report.visuals import encode, overlay

    def make() -> str:
        small = small_image(session, key[:2], rgb)
        return encode(overlay(small, _fit(heatmap, small.shape[:2])), max_side=MAX_SIDE, quality=QUALITY)

    return session.encoded(("overlay",) + key, make)


def outline_uri(session: "AuditSession", key: tuple, rgb: np.ndarray, mask: np.ndarray, region_key: object) -> str:
    """The region's outline as a transparent layer for the overlays of one image (``key`` = (file, image))."""
    from vitaudit.report.visuals import outline_layer

    def make() -> str:
        small = small_image(session, key, rgb)
        return outline_layer(_fit(mask.astype(np.float32), small.shape[:2]) >= 0.5, small.shape[:2])

    return session.encoded(("outline",) + key + (region_key,), make)


def _caption(e: "Explanation") -> str:
    label, _, p = e.top1
    text = f"explains {e.target_label!r} ({e.target}); top-1 {label!r} {p:.2f}"
    if e.no_signal:
        text += "; no signal"
    return text


def panels(session: "AuditSession", file: str, image: str, rgb: np.ndarray, ev: "Evaluation",
           region_key: object) -> list[Panel]:
    """The card's pictures: each map's overlay (with the region), then any extra panels."""
    from vitaudit.report.visuals import diff_image, encode, overlay

    out = []
    for i, (title, e) in enumerate(ev.maps):
        outline = outline_uri(session, (file, image), rgb, ev.mask, region_key) if i == 0 and ev.mask is not None else None
        uri = overlay_uri(session, (file, image, title), rgb, e.working)
        out.append(Panel(title=title, uri=uri, caption=_caption(e), outline=outline))
    small = small_image(session, (file, image), rgb) if ev.extra_panels else None
    for title, data, kind in ev.extra_panels:
        if kind == "diff":
            pic = diff_image(_fit(np.nan_to_num(data), small.shape[:2]), np.zeros(small.shape[:2], np.float32))
        else:
            pic = overlay(small, _fit(data, small.shape[:2]))
        out.append(Panel(title=title, uri=encode(pic, max_side=MAX_SIDE, quality=QUALITY)))
    return out


def topk(items: list[tuple[str, int, float]] | None) -> list[Prediction] | None:
    return None if items is None else [Prediction(label=lab, index=i, prob=p) for lab, i, p in items]


def model_view(session: "AuditSession", file: str, image: str, rgb: np.ndarray, title: str, model_key: str,
               e: "Explanation") -> ModelView:
    """One model's map of one image, for the side-by-side strip (and the ViT layer x head grid)."""
    from vitaudit.report.visuals import encode, layer_head_mosaic

    label, index, p = e.top1
    grid = None
    shape = None
    shown = session.grids_shown
    if e.cls_attention is not None and (file, image, model_key) not in shown:  # one grid per image and model
        shown.add((file, image, model_key))
        grid = session.encoded(("grid", file, image, model_key),
                               lambda: encode(layer_head_mosaic(e.cls_attention), max_side=None, quality=90))
        shape = tuple(int(v) for v in e.cls_attention.shape[:2])
    return ModelView(
        model=model_key,
        method=title,
        top1=Prediction(label=label, index=index, prob=p),
        overlay=overlay_uri(session, (file, image, title), rgb, e.working),
        layer_grid=grid,
        layer_grid_shape=shape,
    )
