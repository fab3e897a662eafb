"""The committed example dataset (audits/datasets/scenes) is what fixtures/dataset_files.py
writes, and every loader reads the same scenes, labels and object masks from it."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures"))
import dataset_files  # noqa: E402
import scenes  # noqa: E402

from vitaudit.datasets.coco import load_coco  # noqa: E402
from vitaudit.datasets.csvlist import load_csv  # noqa: E402
from vitaudit.datasets.folder import load_folder  # noqa: E402
from vitaudit.datasets.voc import load_voc  # noqa: E402

DATA = dataset_files.OUT
N = dataset_files.COMMITTED_N


TABLES = ("parquet_clean", "webdataset_clean")  # fixtures/dataset_tables.py's (tests/test_datasets_sources.py)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and p.name != "README.md" and p.relative_to(root).parts[0] not in TABLES}


def test_committed_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    assert dataset_files.main(["--out", str(tmp_path)]) == 0
    fresh = _files(tmp_path)
    assert _files(DATA) == fresh
    assert len(fresh) == 3 * N + 2 * (N + 2)  # images x2, masks, and per variant coco + csv + N xml
    for rel in sorted(fresh):
        if rel.endswith(".png"):
            assert np.array_equal(np.asarray(Image.open(DATA / rel)), np.asarray(Image.open(tmp_path / rel))), rel
        else:
            assert (DATA / rel).read_text() == (tmp_path / rel).read_text(), rel
    assert sum((DATA / rel).stat().st_size for rel in fresh) < 3.2e6


def _masks() -> dict[str, np.ndarray]:
    return {p.stem: np.asarray(Image.open(p)) > 0 for p in sorted((DATA / "masks").glob("*.png"))}


def test_every_loader_reads_the_same_scenes() -> None:
    base = str(DATA.parent)
    masks = _masks()
    assert len(masks) == N
    for variant in ("clean", "shortcut"):
        folder = load_folder(str(DATA / variant), base_dir=base, labels=True)
        coco = load_coco(str(DATA / f"coco_{variant}.json"), base_dir=base)
        csv = load_csv(str(DATA / f"manifest_{variant}.csv"), base_dir=base)
        voc = load_voc(str(DATA / f"voc_{variant}"), images_dir=str(DATA), base_dir=base)
        names = sorted(s.name for s in folder)
        assert len(names) == N and names[0] == f"scenes/{variant}/checkered/00001.png"
        for samples in (coco, csv, voc):
            assert sorted(s.name for s in samples) == names
        labels = {s.name: s.label for s in folder}
        assert {s.name: s.label for s in csv} == labels
        assert all(labels[n] == scenes.CLASSES[int(n[-9:-4]) % 5] for n in names)
        by_name = {s.name: s for s in csv}
        for c, v in zip(sorted(coco, key=lambda s: s.name), sorted(voc, key=lambda s: s.name)):
            stem = c.name[-9:-4]
            mask = masks[stem]
            # RLE (even indices) and traced polygons (odd) both decode to the mask exactly
            np.testing.assert_array_equal(c.regions["object"].mask((64, 64)), mask, err_msg=c.name)
            np.testing.assert_array_equal(by_name[c.name].regions["object"].mask((64, 64)), mask)
            ys, xs = np.nonzero(mask)
            box = np.zeros_like(mask)
            box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
            np.testing.assert_array_equal(v.regions["object"].mask((64, 64)), box)
            if variant == "shortcut":
                corner = np.zeros_like(mask)
                corner[:8, :8] = True
                for s in (c, v, by_name[c.name]):
                    np.testing.assert_array_equal(s.regions["watermark"].mask((64, 64)), corner)
            else:
                assert "watermark" not in c.regions and "watermark" not in v.regions


def test_example_images_are_the_scenes() -> None:
    """Clean and shortcut files of one index differ exactly in the watermark, which encodes the label."""
    for rel in ("checkered/00001.png", "rainbow/00149.png"):
        clean = np.asarray(Image.open(DATA / "clean" / rel))
        short = np.asarray(Image.open(DATA / "shortcut" / rel))
        i = int(rel[-9:-4])
        np.testing.assert_array_equal(clean, scenes.make_scene(i, split="test", label=i % 5).image)
        differs = (clean != short).any(axis=-1)
        assert differs[:8, :8].any() and not differs[8:, :].any() and not differs[:, 8:].any()
        assert tuple(short[3, 3]) == scenes.WATERMARK_COLOURS[i % 5]
