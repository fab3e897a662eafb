"""``storage_options:``, ``cache:`` and ``retry_for:`` of a dataset or image declaration -> a
:class:`~vitaudit.storage.Store`."""
from __future__ import annotations

from vitaudit.storage import RETRY_FOR, Store

from .context import Ctx, scalar_str
from .errors import SentenceError
from .yamlload import YNode


def store_of(ctx: Ctx, node: YNode) -> Store:
    """The :class:`Store` of a declaration: its ``storage_options`` (a mapping passed to fsspec as
    written), ``cache`` (a folder, relative to the audit file) and ``retry_for`` (seconds an
    unreachable endpoint is retried before its images fail; 0 fails at once)."""
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
    retry_for = RETRY_FOR
    if "retry_for" in node.value:
        n = node.value["retry_for"]
        if not n.is_scalar or isinstance(n.value, bool) or not isinstance(n.value, (int, float)) \
                or not 0 <= n.value <= 3600:
            raise SentenceError("'retry_for' must be a number of seconds from 0 to 3600 (how long an unreachable "
                                f"endpoint is retried), got {n.describe()}", n.line)
        retry_for = float(n.value)
    return Store(options, cache, retry_for)


def plain(node: YNode):
    """A YAML node as plain Python values (mappings, lists, scalars)."""
    if node.is_map:
        return {k: plain(v) for k, v in node.value.items()}
    if node.is_seq:
        return [plain(v) for v in node.value]
    return node.value
