"""Rasterisation of boxes, polygons and mask files, checked pixel by pixel on tiny images."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vitaudit.regions import Region, RegionError, RegionRef, outline, rasterize, rasterize_ref


def box(x0, y0, x1, y1, units="px", **kw) -> Region:
    return Region(name=kw.pop("name", "r"), kind="box", points=((x0, y0), (x1, y1)), units=units, **kw)


def grid(rows: list[str]) -> np.ndarray:
    """A bool mask drawn as strings: '#' inside, '.' outside."""
    return np.array([[c == "#" for c in r] for r in rows], dtype=bool)


# ---------------------------------------------------------------- boxes

def test_box_pixels_half_open():
    m = rasterize(box(1, 2, 4, 4), (5, 6))
    assert m.dtype == bool and m.shape == (5, 6)
    assert np.array_equal(m, grid([
        "......",
        "......",
        ".###..",
        ".###..",
        "......",
    ]))


def test_box_whole_image():
    assert rasterize(box(0, 0, 6, 5), (5, 6)).all()


def test_box_fractions_round_to_nearest_edge():
    # W=6, H=5: x 0.25*6=1.5 -> 2 (halves up), 0.75*6=4.5 -> 5; y 0.3*5=1.5 -> 2, 0.9*5=4.5 -> 5
    m = rasterize(box(0.25, 0.3, 0.75, 0.9, units="fraction"), (5, 6))
    expected = np.zeros((5, 6), bool)
    expected[2:5, 2:5] = True
    assert np.array_equal(m, expected)


def test_box_fractions_full_image():
    assert rasterize(box(0, 0, 1, 1, units="fraction"), (5, 6)).all()


def test_box_float_pixels_round():
    m = rasterize(box(0.4, 0.6, 2.5, 3.49), (4, 4))
    expected = np.zeros((4, 4), bool)
    expected[1:3, 0:3] = True
    assert np.array_equal(m, expected)


def test_box_past_right_edge_message():
    r = box(40, 60, 380, 210, name="goat", file="audits/audit_pets.yaml", line=12)
    with pytest.raises(RegionError) as e:
        rasterize(r, (250, 300))
    assert str(e.value) == ("audits/audit_pets.yaml:12: region 'goat' box [40, 60, 380, 210] "
                            "extends past the image's right edge (width 300)")


@pytest.mark.parametrize("coords, words", [
    ((-1, 0, 3, 3), "left edge (x = -1 < 0)"),
    ((0, -2, 3, 3), "top edge (y = -2 < 0)"),
    ((0, 0, 3, 6), "bottom edge (height 5)"),
    ((0, 0, 7, 3), "right edge (width 6)"),
])
def test_box_outside_each_edge(coords, words):
    with pytest.raises(RegionError, match=r"extends past the image's " + words.replace("(", r"\(").replace(")", r"\)")):
        rasterize(box(*coords), (5, 6))


def test_box_fraction_outside_unit_square():
    with pytest.raises(RegionError, match=r"box \[0.1, 0.2, 1.2, 0.5\] \(fractions\) extends past the image's "
                                          r"right edge \(fractions must lie in \[0, 1\]\)"):
        rasterize(box(0.1, 0.2, 1.2, 0.5, units="fraction"), (5, 6))


@pytest.mark.parametrize("coords, word", [((3, 0, 3, 2), "x1 <= x0"), ((0, 4, 3, 1), "y1 <= y0")])
def test_box_inverted_or_flat(coords, word):
    with pytest.raises(RegionError, match=word):
        rasterize(box(*coords), (5, 6))


def test_box_fraction_empty_after_rounding():
    # 0.1*6 = 0.6 -> 1 and 0.15*6 = 0.9 -> 1: no column left
    with pytest.raises(RegionError, match=r"covers no pixel once rounded to pixel edges \[1, 0, 1, 5\] on a 6x5 image"):
        rasterize(box(0.1, 0, 0.15, 1, units="fraction"), (5, 6))


def test_box_wrong_point_count_and_nan():
    with pytest.raises(RegionError, match="needs 2 corners"):
        rasterize(Region("r", "box", points=((0, 0), (1, 1), (2, 2))), (5, 6))
    with pytest.raises(RegionError, match="non-finite"):
        rasterize(box(0, 0, float("nan"), 2), (5, 6))


def test_error_without_file_has_no_prefix_and_one_line():
    with pytest.raises(RegionError) as e:
        rasterize(box(0, 0, 9, 2, name="cat"), (5, 6))
    assert str(e.value).startswith("region 'cat' box [0, 0, 9, 2]")
    assert "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


def test_unknown_kind_and_units():
    with pytest.raises(RegionError, match="unknown kind 'circle'"):
        rasterize(Region("r", "circle", points=((0, 0),)), (5, 6))  # type: ignore[arg-type]
    with pytest.raises(RegionError, match="unknown units 'percent'"):
        rasterize(Region("r", "box", points=((0, 0), (1, 1)), units="percent"), (5, 6))  # type: ignore[arg-type]


# ---------------------------------------------------------------- polygons

def test_polygon_square_matches_box():
    poly = Region("p", "polygon", points=((1, 2), (4, 2), (4, 4), (1, 4)))
    assert np.array_equal(rasterize(poly, (5, 6)), rasterize(box(1, 2, 4, 4), (5, 6)))


def test_polygon_full_image_in_fractions():
    poly = Region("p", "polygon", points=((0, 0), (1, 0), (1, 1), (0, 1)), units="fraction")
    assert rasterize(poly, (5, 6)).all()


def test_polygon_triangle_x_y_order():
    # right triangle with the right angle at the top-left; pixel centres on the hypotenuse count.
    # Asymmetric image (4 rows, 6 cols) so a (row, col) mix-up would show.
    tri = Region("t", "polygon", points=((0, 0), (6, 0), (0, 4)))
    # hypotenuse: x/6 + y/4 = 1; centre (c+.5, r+.5) inside iff (c+.5)/6 + (r+.5)/4 <= 1
    assert np.array_equal(rasterize(tri, (4, 6)), grid([
        "#####.",
        "####..",
        "##....",
        "#.....",
    ]))


def test_polygon_fraction_triangle():
    tri = Region("t", "polygon", points=((0, 0), (1, 0), (0, 1)), units="fraction")
    tri_px = Region("t", "polygon", points=((0, 0), (6, 0), (0, 4)))
    assert np.array_equal(rasterize(tri, (4, 6)), rasterize(tri_px, (4, 6)))


def test_polygon_too_few_vertices():
    with pytest.raises(RegionError, match="polygon needs at least 3 vertices, got 2"):
        rasterize(Region("p", "polygon", points=((0, 0), (3, 3))), (5, 6))


def test_polygon_vertex_outside():
    p = Region("p", "polygon", points=((0, 0), (3, 0), (3, 7)), file="a.yaml", line=3)
    with pytest.raises(RegionError) as e:
        rasterize(p, (5, 6))
    assert str(e.value) == "a.yaml:3: region 'p' polygon vertex (3, 7) extends past the image's bottom edge (height 5)"


def test_polygon_covering_no_pixel_centre():
    sliver = Region("p", "polygon", points=((1, 1), (1.2, 1), (1.2, 1.2)))
    with pytest.raises(RegionError, match="covers no pixel centre on a 6x5 image"):
        rasterize(sliver, (5, 6))


# ---------------------------------------------------------------- complements, outline

def test_complement():
    r = box(1, 1, 3, 3)
    m, c = rasterize(r, (4, 4)), rasterize_ref(RegionRef(r, negate=True), (4, 4))
    assert np.array_equal(c, ~m)
    assert c.sum() == 12
    assert np.array_equal(rasterize_ref(RegionRef(r), (4, 4)), m)


def test_complement_of_whole_image_is_error():
    with pytest.raises(RegionError, match="'not r' is empty"):
        rasterize_ref(RegionRef(box(0, 0, 4, 4), negate=True), (4, 4))


def test_outline_inner_ring_and_image_border():
    m = grid([
        "......",
        ".####.",
        ".####.",
        ".####.",
        "......",
    ])
    assert np.array_equal(outline(m), grid([
        "......",
        ".####.",
        ".#..#.",
        ".####.",
        "......",
    ]))
    full = np.ones((3, 4), bool)  # touches every edge: its outline is the image border
    assert np.array_equal(outline(full), grid(["####", "#..#", "####"]))


# ---------------------------------------------------------------- mask files

MASK = grid([
    "......",
    ".##...",
    ".###..",
    "......",
])


def _mask_region(path, **kw) -> Region:
    return Region("m", "mask", mask_path=str(path), **kw)


def test_mask_png_8bit(tmp_path):
    p = tmp_path / "m.png"
    Image.fromarray(MASK.astype(np.uint8) * 255).save(p)
    assert np.array_equal(rasterize(_mask_region(p), (4, 6)), MASK)


def test_mask_png_16bit_small_values(tmp_path):
    p = tmp_path / "m16.png"
    a = MASK.astype(np.uint16) * 300
    a[1, 1] = 1  # a value that would vanish if the file were squeezed to 8 bits
    Image.fromarray(a).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    assert np.array_equal(rasterize(_mask_region(p), (4, 6)), MASK)


def test_mask_rgba_alpha_zero_is_outside(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black background: outside
    rgba[MASK] = (255, 0, 0, 255)  # opaque red: inside
    rgba[0, 0] = (255, 255, 255, 0)  # fully transparent white: outside
    p = tmp_path / "m.png"
    Image.fromarray(rgba, mode="RGBA").save(p)
    assert np.array_equal(rasterize(_mask_region(p), (4, 6)), MASK)


def test_mask_palette_and_bilevel(tmp_path):
    p = tmp_path / "p.png"
    Image.fromarray(MASK.astype(np.uint8) * 255).convert("P").save(p)
    assert np.array_equal(rasterize(_mask_region(p), (4, 6)), MASK)
    q = tmp_path / "b.png"
    Image.fromarray(MASK).save(q)
    with Image.open(q) as im:
        assert im.mode == "1"
    assert np.array_equal(rasterize(_mask_region(q), (4, 6)), MASK)


def test_mask_wrong_size_names_both(tmp_path):
    p = tmp_path / "m.png"
    Image.fromarray(MASK.astype(np.uint8) * 255).save(p)
    with pytest.raises(RegionError, match=r"is 6x4 \(WxH\) but the image is 7x4"):
        rasterize(_mask_region(p), (4, 7))


def _exif(orientation: int) -> Image.Exif:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex


def test_mask_exif_rotated_png(tmp_path):
    # Stored 6 wide x 4 high; orientation 6 means "rotate 90 degrees clockwise to display".
    p = tmp_path / "rot.png"
    Image.fromarray(MASK.astype(np.uint8) * 255).save(p, exif=_exif(6))
    m = rasterize(_mask_region(p), (6, 4))
    assert np.array_equal(m, np.rot90(MASK, k=-1))
    with pytest.raises(RegionError, match=r"is 4x6 \(WxH\) but the image is 6x4"):
        rasterize(_mask_region(p), (4, 6))


def test_mask_exif_rotated_jpeg(tmp_path):
    # 8x8-aligned blocks of pure 0/255 survive JPEG at quality 100 without ringing.
    a = np.zeros((16, 24), np.uint8)
    a[0:8, 8:16] = 255
    p = tmp_path / "rot.jpg"
    Image.fromarray(a).save(p, quality=100, subsampling=0, exif=_exif(8))  # 8: rotate 90 counter-clockwise
    m = rasterize(_mask_region(p), (24, 16))
    assert np.array_equal(m, np.rot90(a != 0, k=1))


def test_mask_missing_unreadable_empty(tmp_path):
    with pytest.raises(RegionError, match="does not exist"):
        rasterize(_mask_region(tmp_path / "nope.png", file="x.yaml", line=4), (4, 6))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(RegionError, match="cannot be read as an image"):
        rasterize(_mask_region(bad), (4, 6))
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(empty)
    with pytest.raises(RegionError, match="has no non-zero pixel"):
        rasterize(_mask_region(empty), (4, 6))
    with pytest.raises(RegionError, match="has no mask file"):
        rasterize(Region("m", "mask"), (4, 6))


def test_mask_path_relative_to_audit_file(tmp_path):
    (tmp_path / "masks").mkdir()
    Image.fromarray(MASK.astype(np.uint8) * 255).save(tmp_path / "masks" / "m.png")
    r = Region("m", "mask", mask_path="masks/m.png", file=str(tmp_path / "audit.yaml"), line=2)
    assert np.array_equal(rasterize(r, (4, 6)), MASK)


def test_mask_black_shape_on_transparency_is_its_opaque_part(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[MASK] = (0, 0, 0, 255)  # opaque black shape, the rest fully transparent
    p = tmp_path / "cutout.png"
    Image.fromarray(rgba, mode="RGBA").save(p)
    assert np.array_equal(rasterize(_mask_region(p), (4, 6)), MASK)
