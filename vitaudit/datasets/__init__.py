"""Annotated image sets for dataset audits: a declaration (``datasets:`` in an audit file) read
into a :class:`~vitaudit.datasets.base.Dataset` of samples, each with its class and regions.

One module per source format (:mod:`.folder`, :mod:`.coco`, :mod:`.voc`, :mod:`.csvlist`);
:mod:`.regions` holds the region sources that rasterise on demand, :mod:`.assemble` the
declared regions, mask templates and seeded subsets shared by every format. The audit-file
side (keys, lines, messages) is :mod:`vitaudit.spec.datasets`.
"""
from .base import IMAGE_EXTENSIONS, Dataset, DatasetError, RegionSource, Sample

__all__ = ["IMAGE_EXTENSIONS", "Dataset", "DatasetError", "RegionSource", "Sample"]
