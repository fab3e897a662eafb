"""Audit files: parse ``audit_*.yaml`` / ``*.audit.yaml`` into a validated :class:`AuditSpec`.

The format is described in ``docs/audit-format.md``. :func:`parse_audit_file` never raises for bad
content; every problem becomes a :class:`SpecError` with the file and line.
"""
from vitaudit.regions import Region, RegionRef

from .errors import SpecError
from .model import (CROPS, METHODS, METRIC_OPTIONS, METRICS, OPS, OPTION_CHOICES, POINTING_OPS, RELATIVE_OPS,
                    AuditSpec, Expectation, ImageDecl, Label, MapRef, Mark, ModelDecl, Relative)
from .parse import parse_audit_file


def is_audit_file(name: str) -> bool:
    """Whether a file name is an audit file: ``audit_*.yaml`` or ``*.audit.yaml``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return (base.startswith("audit_") and base.endswith(".yaml")) or base.endswith(".audit.yaml")


__all__ = [
    "AuditSpec", "CROPS", "Expectation", "ImageDecl", "Label", "METHODS", "METRICS", "METRIC_OPTIONS",
    "MapRef", "Mark", "ModelDecl", "OPS", "OPTION_CHOICES", "POINTING_OPS", "RELATIVE_OPS", "Region", "Relative",
    "RegionRef", "SpecError",
    "is_audit_file", "parse_audit_file",
]
