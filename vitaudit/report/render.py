"""Render a :class:`~vitaudit.results.RunResults` to the self-contained HTML report (+ audit.json).

Jinja2 with ``autoescape=True`` set explicitly (``select_autoescape`` would not recognise
``.html.j2``), so every name, label and message from audit files is escaped; data reaches
the page's script only through ``|tojson`` inside ``<script type="application/json">``. A
fresh random nonce per report is the only way a script may run (Content-Security-Policy), and
the policy forbids every network load.
"""
from __future__ import annotations

import functools
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined

from vitaudit.results import RunResults

from .atomic import atomic_write_text
from .context import build_context
from .format import fmt_duration, fmt_num
from .jsondoc import audit_document

if TYPE_CHECKING:
    from vitaudit.compare import Comparison


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment of the report templates (built once per process)."""
    env = Environment(
        loader=PackageLoader("vitaudit.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = fmt_duration
    env.filters["num"] = fmt_num
    return env


def render_html(run: RunResults, nonce: str | None = None, comparison: "Comparison | None" = None) -> str:
    """The report as one HTML string (no file is touched); with ``comparison`` (an earlier run against
    this one, :mod:`vitaudit.compare`), a "changed since" section and a delta on each card."""
    nonce = nonce or secrets.token_urlsafe(18)
    return environment().get_template("report.html.j2").render(build_context(run, nonce, comparison))


def render_json(run: RunResults, pictures: bool = False) -> str:
    """``audit.json``'s text (see :mod:`vitaudit.report.jsondoc` for the layout)."""
    doc = audit_document(run, pictures=pictures)
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


def write_report(
    run: RunResults,
    html_path: str | Path,
    json_path: str | Path | None = None,
    *,
    json_pictures: bool = False,
    comparison: "Comparison | None" = None,
) -> Path:
    """Write the HTML report to ``html_path`` and, when given, ``audit.json`` to ``json_path``.

    Both are rendered in memory first, then each is written atomically (temporary file in the
    same directory + ``os.replace``; parent directories created), so a failure at any point
    leaves the previous files as they were. ``json_pictures`` keeps the data: URIs in the JSON
    (off by default: dashboards want it small). Returns the HTML path.
    """
    html = render_html(run, comparison=comparison)
    text = None
    if json_path is not None:  # long per-image lists go to audit.values.parquet beside it
        from .values_file import mark, split

        small, moved = split(run, json_path)
        doc = mark(audit_document(small, pictures=json_pictures), moved, json_path)
        text = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
    if json_path is not None and text is not None:
        atomic_write_text(json_path, text)
    return atomic_write_text(html_path, html)
