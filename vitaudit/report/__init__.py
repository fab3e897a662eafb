"""The HTML audit report: pictures for it (:mod:`.visuals`) and the writer (:func:`write_report`).

The plugin encodes pictures with :mod:`vitaudit.report.visuals` while the audit runs (in the
workers) and hands a :class:`~vitaudit.results.RunResults` to :func:`write_report` at the end.
"""
from __future__ import annotations

from .jsondoc import audit_document, run_from_document, strip_pictures
from .render import render_html, render_json, write_report
from .visuals import diff_image, draw_outline, encode, layer_head_mosaic, overlay

__all__ = [
    "write_report", "render_html", "render_json", "audit_document", "run_from_document", "strip_pictures",
    "overlay", "draw_outline", "diff_image", "layer_head_mosaic", "encode",
]
