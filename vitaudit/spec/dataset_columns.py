"""``columns:``, ``classes:`` and ``box_format:`` of a table-like dataset (``parquet:``, ``hf:``,
``webdataset:``) -> :class:`~vitaudit.datasets.tables.Columns`, errors at their line."""
from __future__ import annotations

from vitaudit.datasets.tables import BOX_FORMATS, Columns

from .context import scalar_str
from .draft import NAME_RE
from .errors import SentenceError, did_you_mean, one_of
from .yamlload import YNode

COLUMN_KEYS = ("image", "label", "masks", "boxes", "objects", "key")


def parse_columns(node: YNode, kind: str) -> Columns:
    """The column mapping a dataset declaration states (defaults where it states none)."""
    values = node.value
    fields: dict = {}
    if "columns" in values:
        cols = values["columns"]
        if not cols.is_map:
            raise SentenceError(f"'columns' must map {', '.join(COLUMN_KEYS)} to column names, got "
                                f"{cols.describe()}", cols.line)
        for key, value in cols.value.items():
            if key not in COLUMN_KEYS:
                raise SentenceError(f"unknown key '{key}' in columns{did_you_mean(key, COLUMN_KEYS)}; keys: "
                                    f"{', '.join(COLUMN_KEYS)}", cols.keys[key].line)
            if key in ("masks", "boxes"):
                if kind == "webdataset" and key == "boxes":
                    raise SentenceError("a webdataset: dataset takes regions from mask members (columns: {masks: "
                                        "{object: mask.png}}), not boxes", value.line)
                if not value.is_map:
                    raise SentenceError(f"columns '{key}' must map region names to columns, e.g. "
                                        f"{{object: {'mask' if key == 'masks' else 'bbox'}}}", value.line)
                out = {}
                for region, col in value.value.items():
                    if not NAME_RE.match(region) or region.lower() == "not":
                        raise SentenceError(f"region name '{region}' must be a name of letters, digits, '_' and '-'",
                                            value.keys[region].line)
                    out[region] = scalar_str(col, f"the column of region '{region}'")
                fields[key] = out
            else:
                if kind == "webdataset" and key in ("objects", "key"):
                    raise SentenceError(f"columns '{key}' does not apply to a webdataset: dataset (samples are keyed "
                                        "by __key__)", value.line)
                fields[key] = scalar_str(value, f"columns '{key}'")
    if "classes" in values:
        classes = values["classes"]
        if not classes.is_seq or not classes.value:
            raise SentenceError(f"'classes' must list class names (index 0 first), got {classes.describe()}",
                                classes.line)
        fields["classes"] = tuple(scalar_str(c, "a class name") for c in classes.value)
    if "box_format" in values:
        word = scalar_str(values["box_format"], "'box_format'")
        if word not in BOX_FORMATS:
            raise SentenceError(f"'box_format' must be {one_of(BOX_FORMATS)} (xywh: COCO [x, y, width, height]; "
                                f"xyxy: [x0, y0, x1, y1]), got '{word}'{did_you_mean(word, BOX_FORMATS)}",
                                values["box_format"].line)
        fields["box_format"] = word
    return Columns(**fields)
