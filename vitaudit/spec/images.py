"""``images:`` section -> :class:`ImageDecl` with their :class:`~vitaudit.regions.Region` objects.

A problem with an image (missing file, bad key) breaks the image; a problem with one region
breaks only that region. Both are recorded in :class:`~vitaudit.spec.build.Declarations` so the
expectations that need them can say why they were dropped.
"""
from __future__ import annotations

import os
from functools import lru_cache

from vitaudit.regions import Region

from .build import Declarations
from .context import Ctx, check_keys, scalar_number, scalar_str
from .draft import NAME_RE
from .errors import SentenceError, SpecError, did_you_mean, one_of
from .model import ImageDecl
from .yamlload import YNode

IMAGE_KEYS = ("path", "skimage", "regions", "storage_options", "cache", "retry_for")
REGION_KEYS = ("box", "polygon", "mask", "units")
UNITS = ("px", "fraction")
#: Image keys that would be confused with the keys of an expectation item.
RESERVED_IMAGE_KEYS = ("image", "metric", "xfail", "skip", "marks", "id", "not")
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp", ".webp")
_SKIMAGE_HELPERS = ("data_dir", "download_all", "file_hash", "lbp_frontal_face_cascade_filename")


def parse_images(ctx: Ctx, node: YNode | None, decls: Declarations) -> None:
    """Fill ``decls.images``/``bad_images``/``image_order``/``regions``/``bad_regions``."""
    if node is None:
        return
    if not node.is_map:
        ctx.error(node.line, f"'images' must be a mapping of image keys to {{path: ...}}, got {node.describe()}")
        return
    for key, value in node.value.items():
        key_line = node.keys[key].line
        decls.image_order.append(key)
        before = len(ctx.errors)
        region_errors: list[SpecError] = []  # these break a region, not the image
        decl = _image(ctx, key, key_line, value, decls, region_errors)
        image_errors = [e for e in ctx.errors[before:] if not any(e is r for r in region_errors)]
        if decl is not None and not image_errors:
            decls.images[key] = decl
        else:
            first = image_errors[0] if image_errors else None
            decls.bad_images[key] = f"line {first.line}: {first.message}" if first else f"line {key_line}"


def _image(ctx: Ctx, key: str, key_line: int, node: YNode, decls: Declarations,
           region_errors: list[SpecError]) -> ImageDecl | None:
    if not NAME_RE.match(key) or key in RESERVED_IMAGE_KEYS:
        why = "is reserved" if key in RESERVED_IMAGE_KEYS else "must be a name of letters, digits, '_' and '-'"
        ctx.error(key_line, f"image key '{key}' {why}")
        return None
    if not node.is_map:
        ctx.error(node.line, f"image '{key}' must be a mapping like {{path: images/x.jpg}}, got {node.describe()}")
        return None
    check_keys(ctx, node, IMAGE_KEYS, f"image '{key}'")
    sources = [k for k in ("path", "skimage") if k in node.value]
    path = skimage = store = None
    size: tuple[int, int] | None = None
    if not sources:
        ctx.error(key_line, f"image '{key}' needs 'path' (a file, relative to the audit file) "
                            "or 'skimage' (a scikit-image sample such as chelsea)")
    elif len(sources) == 2:
        ctx.error(node.key_line("skimage") if node.key_line("skimage") > node.key_line("path") else
                  node.key_line("path"), f"image '{key}' has both 'path' and 'skimage'; keep one")
    elif sources == ["path"]:
        try:
            from .storage_decl import store_of

            store = store_of(ctx, node)
            path, size = _image_file(ctx, node.value["path"], store=store)
        except SentenceError as exc:
            ctx.error(exc.line or key_line, exc.message)
    else:
        try:
            skimage = _skimage_name(node.value["skimage"])
        except SentenceError as exc:
            ctx.error(exc.line or key_line, exc.message)
    regions = _regions(ctx, key, node.value.get("regions"), size, decls, region_errors, store)
    if path is None and skimage is None:
        return None
    return ImageDecl(key=key, path=path, skimage=skimage, regions=regions, file=ctx.file, line=key_line,
                     store=store)


def _image_file(ctx: Ctx, node: YNode, what: str = "image", store=None) -> tuple[str, tuple[int, int] | None]:
    """The absolute path of an existing image file (or a URI, checked to exist with one metadata
    request and read when the image is used), and its (width, height) when known for sure."""
    from vitaudit.storage import Store, is_uri

    rel = scalar_str(node, f"'{what}' path")
    if is_uri(rel):
        try:
            found = (store or Store()).kind(rel)
        except OSError as exc:
            raise SentenceError(f"{what} {rel}: {exc}", node.line) from None
        if found != "file":
            raise SentenceError(f"{what} {'not found' if found is None else 'is a folder, not a file'}: {rel}",
                                node.line)
        return rel, None
    path = ctx.resolve(rel)
    if not os.path.isfile(path):
        missing = "is a folder, not a file" if os.path.isdir(path) else "not found"
        raise SentenceError(f"{what} file {missing}: {rel} (looked for {path})", node.line)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return path, None
    try:
        with Image.open(path) as img:
            size = img.size
            orientation = img.getexif().get(0x0112, 1)
    except Image.DecompressionBombError as exc:
        from vitaudit.images import too_many_pixels

        raise SentenceError(f"{what} file {rel}: {too_many_pixels(exc)}", node.line) from None
    except Exception as exc:  # noqa: BLE001 - any decoding problem means "not an image"
        raise SentenceError(f"{what} file is not a readable image: {rel} ({type(exc).__name__})", node.line) from None
    return path, (size if orientation in (1, None) else None)


@lru_cache(maxsize=1)
def skimage_names() -> tuple[str, ...]:
    """Sample names scikit-image offers: ``skimage.data`` loaders and image files in ``data_dir``."""
    try:
        import skimage.data as data
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        return ()
    names = [n for n in getattr(data, "__all__", ()) if n not in _SKIMAGE_HELPERS]
    try:
        names += sorted(f for f in os.listdir(data.data_dir) if f.lower().endswith(_IMAGE_EXTENSIONS))
    except OSError:  # pragma: no cover
        pass
    return tuple(names)


def _skimage_name(node: YNode) -> str:
    name = scalar_str(node, "'skimage'")
    known = skimage_names()
    if known and name not in known:
        raise SentenceError(f"unknown scikit-image sample '{name}'{did_you_mean(name, known)}; "
                            "e.g. astronaut, camera, cat, chelsea, coffee, horse, rocket", node.line)
    return name


def _regions(ctx: Ctx, image: str, node: YNode | None, size: tuple[int, int] | None,
             decls: Declarations, region_errors: list[SpecError], store=None) -> dict[str, Region]:
    """The image's regions; a mask at a URI is checked and later read with ``store``, the image's
    own (its ``storage_options`` and ``cache``), as the image itself is."""
    regions: dict[str, Region] = {}
    bad: dict[str, str] = {}
    decls.regions[image] = regions
    decls.bad_regions[image] = bad
    if node is None:
        return regions
    if not node.is_map:
        ctx.error(node.line, f"'regions' of image '{image}' must map region names to shapes, got {node.describe()}")
        return regions
    for name, value in node.value.items():
        key_line = node.keys[name].line
        errors: list[tuple[int, str]] = []
        region = _region(name, key_line, value, size, errors, ctx, store)
        for line, message in errors:
            region_errors.append(ctx.error(line, message))
        if errors:
            bad[name] = f"line {errors[0][0]}: {errors[0][1]}"
        elif region is not None:
            regions[name] = region
    return regions


def _region(name: str, key_line: int, node: YNode, size: tuple[int, int] | None,
            errors: list[tuple[int, str]], ctx: Ctx, store=None) -> Region | None:
    if not NAME_RE.match(name) or name.lower() == "not":
        why = "is reserved" if name.lower() == "not" else "must be a name of letters, digits, '_' and '-'"
        errors.append((key_line, f"region name '{name}' {why}"))
        return None
    if not node.is_map:
        errors.append((node.line, f"region '{name}' must be a mapping like {{box: [x0, y0, x1, y1]}}, "
                                  f"got {node.describe()}"))
        return None
    for key, key_node in node.keys.items():
        if key not in REGION_KEYS:
            errors.append((key_node.line, f"unknown key '{key}' in region '{name}'"
                                          f"{did_you_mean(key, REGION_KEYS)}; keys: {', '.join(REGION_KEYS)}"))
    shapes = [k for k in ("box", "polygon", "mask") if k in node.value]
    if not shapes:
        errors.append((key_line, f"region '{name}' needs one of box, polygon or mask"))
        return None
    if len(shapes) > 1:
        errors.append((node.key_line(shapes[1]), f"region '{name}' has both {shapes[0]} and {shapes[1]}; keep one"))
        return None
    kind = shapes[0]
    units = "px"
    try:
        if "units" in node.value:
            units = scalar_str(node.value["units"], "'units'")
            if units not in UNITS:
                raise SentenceError(f"'units' must be {one_of(UNITS)}, got '{units}'{did_you_mean(units, UNITS)}",
                                    node.value["units"].line)
            if kind == "mask":
                raise SentenceError("'units' does not apply to a mask", node.value["units"].line)
        shape = node.value[kind]
        if kind == "mask":
            mask_path, mask_size = _image_file(ctx, shape, "mask", store=store)
            if size is not None and mask_size is not None and mask_size != size:
                raise SentenceError(f"mask is {mask_size[0]}x{mask_size[1]} px but the image is "
                                    f"{size[0]}x{size[1]}; a mask must have the image's size", shape.line)
            from vitaudit.storage import is_uri

            return Region(name, "mask", (), "px", mask_path, ctx.file, key_line,
                          store=store if is_uri(mask_path) else None)
        points = _box(shape) if kind == "box" else _polygon(shape)
        _check_points(kind, points, units, size, shape)
    except SentenceError as exc:
        errors.append((exc.line or key_line, f"region '{name}': {exc.message}"))
        return None
    return Region(name, kind, points, units, None, ctx.file, key_line)  # type: ignore[arg-type]


def _numbers(node: YNode, what: str) -> list[float]:
    if not node.is_seq:
        raise SentenceError(f"{what} must be a list of numbers, got {node.describe()}", node.line)
    return [scalar_number(item, f"{what} coordinate") for item in node.value]


def _box(node: YNode) -> tuple[tuple[float, float], ...]:
    values = _numbers(node, "box")
    if len(values) != 4:
        raise SentenceError(f"box needs 4 numbers [x0, y0, x1, y1], got {len(values)}", node.line)
    x0, y0, x1, y1 = values
    if x1 <= x0:
        raise SentenceError(f"box x1 ({x1:g}) must be greater than x0 ({x0:g})", node.line)
    if y1 <= y0:
        raise SentenceError(f"box y1 ({y1:g}) must be greater than y0 ({y0:g})", node.line)
    return ((x0, y0), (x1, y1))


def _polygon(node: YNode) -> tuple[tuple[float, float], ...]:
    if not node.is_seq:
        raise SentenceError(f"polygon must be a list of [x, y] points, got {node.describe()}", node.line)
    points = []
    for item in node.value:
        xy = _numbers(item, "polygon point")
        if len(xy) != 2:
            raise SentenceError(f"a polygon point is [x, y], got {len(xy)} numbers", item.line)
        points.append((xy[0], xy[1]))
    if len(points) < 3:
        raise SentenceError(f"polygon needs at least 3 points, got {len(points)}", node.line)
    return tuple(points)


def _check_points(kind: str, points: tuple[tuple[float, float], ...], units: str,
                  size: tuple[int, int] | None, node: YNode) -> None:
    for x, y in points:
        for v in (x, y):
            if units == "fraction" and not 0.0 <= v <= 1.0:
                raise SentenceError(f"{kind} coordinate {v:g} is outside [0, 1] (units: fraction)", node.line)
            if units == "px" and v < 0:
                raise SentenceError(f"{kind} coordinate {v:g} is negative", node.line)
        if units == "px" and size is not None and (x > size[0] or y > size[1]):
            raise SentenceError(f"{kind} point ({x:g}, {y:g}) lies outside the {size[0]}x{size[1]} px image "
                                "(use units: fraction for fractions)", node.line)
