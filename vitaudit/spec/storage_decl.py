"""``storage_options:`` and ``cache:`` of a dataset or image declaration -> a :class:`~vitaudit.storage.Store`."""
from __future__ import annotations

from vitaudit.storage import Store

from .context import Ctx, scalar_str
from .errors import SentenceError
from .yamlload import YNode


def store_of(ctx: Ctx, node: YNode) -> Store:
    """The :class:`Store` of a declaration: its ``storage_options`` (a mapping passed to fsspec as
    written) and ``cache`` (a folder, relative to the audit file)."""
    options: dict = {}
    cache = None
    if "storage_options" in node.value:
        opts = node.value["storage_options"]
        if not opts.is_map:
            raise SentenceError("'storage_options' must be a mapping of fsspec options (endpoint_url, anon, "
                                f"profile...), got {opts.describe()}", opts.line)
        options = plain(opts)
    if "cache" in node.value:
        cache = ctx.resolve(scalar_str(node.value["cache"], "'cache'"))
    return Store(options, cache)


def plain(node: YNode):
    """A YAML node as plain Python values (mappings, lists, scalars)."""
    if node.is_map:
        return {k: plain(v) for k, v in node.value.items()}
    if node.is_seq:
        return [plain(v) for v in node.value]
    return node.value
