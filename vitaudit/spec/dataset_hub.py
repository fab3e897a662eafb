"""``hf:`` naming a dataset on the Hugging Face hub (``hf: owner/name``, with ``split:``,
``config:`` and ``revision:``) rather than a ``save_to_disk`` folder: which one it is, and the
hub keys checked at their lines. Fetching is :mod:`vitaudit.datasets.hfhub`."""
from __future__ import annotations

import os

from vitaudit.datasets.base import DatasetError
from vitaudit.storage import is_uri

from .context import Ctx, scalar_str
from .errors import SentenceError
from .yamlload import YNode

#: Keys of a dataset that only a hub id under ``hf:`` takes.
HUB_KEYS = ("split", "config", "revision")


def check_hub_keys(kind: str, node: YNode) -> None:
    """``split``/``config``/``revision`` belong to ``hf:`` alone (the rest is checked when loading)."""
    for key in HUB_KEYS:
        if key in node.value and kind != "hf":
            raise SentenceError(f"'{key}' applies to hf: datasets named by hub id (hf: owner/name), not to {kind}:",
                                node.key_line(key))


def hub_request(ctx: Ctx, node: YNode):
    """The :class:`~vitaudit.datasets.hfhub.HubDataset` that ``hf:`` asks for when it names no
    local path and no URI but reads as a hub id; ``None`` for a folder (``split``, ``config``
    and ``revision`` are then refused at their line)."""
    from vitaudit.datasets.hfhub import HubDataset, looks_like_repo_id

    raw = node.value["hf"].raw
    if is_uri(raw) or os.path.exists(ctx.resolve(raw)) or not looks_like_repo_id(raw):
        for key in HUB_KEYS:
            if key in node.value:
                raise DatasetError(f"'{key}' applies to a hub dataset id; hf: {raw} is a folder (a save_to_disk "
                                   "folder holds one split: name that split's folder)", key)
        return None
    values = {}
    for key in HUB_KEYS:
        if key in node.value:
            try:
                values[key] = scalar_str(node.value[key], f"'{key}'")
            except SentenceError as exc:
                raise DatasetError(exc.message, key) from None
    return HubDataset(raw, **values)


def not_local(ctx: Ctx, raw: str) -> str:
    """The end of a message saying a hub id names nothing: nor is it a local folder."""
    return f" (and no folder {raw} exists here: looked for {ctx.resolve(raw)})"
