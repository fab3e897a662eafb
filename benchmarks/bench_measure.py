"""Host-side cost of measuring a dataset, per image and expectation, apart from the models.

Writes N fixture scenes with object masks and ``bench_dataset.py``'s audit (six aggregate
expectations on ``fixture:vit-scenes`` + ``fixture:resnet-scenes``), runs ``pytest`` on it in
this process under cProfile (with the process's CPU time as its clock, steadier than wall time
on a shared machine; the pass decodes in threads only where torch leaves cores free), and reports the time of the dataset pass's measuring step
(``measure_shard`` less the models' ``run_batch``: making the working maps, masks and metrics and
recording the values), per image and expectation. On a GPU this host-side work is what the
device path (:mod:`vitaudit.device_metrics`) takes off the host.

Run: ``python benchmarks/bench_measure.py [--images 300] [--device cuda]``.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--device", default="cpu", help="passed to pytest as --audit-device (cuda: the GPU case)")
    args = parser.parse_args()
    import pytest

    from bench_dataset import AUDIT
    from fixtures import dataset_files

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "scenes"
        dataset_files.write_scene_dataset(root, args.images, shortcut=False, formats=("masks",))
        audit = Path(tmp) / "audit_measure.yaml"
        audit.write_text(AUDIT.format(root=root, vit="fixture:vit-scenes", cnn="fixture:resnet-scenes",
                                      accuracy="vit accuracy > 0.0", vit_extra="", cnn_extra=""))
        os.chdir(tmp)
        prof = cProfile.Profile(time.process_time)  # CPU time: steadier on a shared machine
        prof.enable()
        code = pytest.main(["-q", "-p", "no:cacheprovider", "--audit-no-report", f"--audit-device={args.device}", str(audit)])
        prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    cum = {}
    for (filename, _, name), (_, _, _, ct, _) in stats.items():
        if name in ("measure_shard", "run_batch") and "vitaudit" in filename:
            cum[name] = cum.get(name, 0.0) + ct
    host = cum.get("measure_shard", 0.0) - cum.get("run_batch", 0.0)
    per = host / (args.images * 6)
    print(f"pytest exit code {int(code)}; {args.images} images x 6 expectations; device {args.device}")
    print(f"measure_shard {cum.get('measure_shard', 0):.2f} s, of it run_batch (the models) {cum.get('run_batch', 0):.2f} s")
    print(f"host-side measuring {host:.2f} s: {per * 1e3:.3f} ms per image and expectation (CPU time under cProfile)")


if __name__ == "__main__":
    main()
