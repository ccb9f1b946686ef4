"""What the image default's rotation term costs: training and scoring time of the image default
(`one-class-images`) beside the same score without the term (`one-class-images-pca`), in one run.

For one class of an image set, each preset is fitted through `training.fit` (export and parity
check included) into a temporary registry; its training is timed in CPU seconds (this process and
its threads) and wall seconds. Then the published model is loaded through the service's ONNX
runtime (one thread, as the service runs each model call) and scores test images: rows per second
for batches of 1 and 256 rows (the best of `--repeats` timed loops of at least 0.2 s each).

    .venv/bin/python benchmarks/image_default_cost.py --data-dir ../shared/data/mnist --class 3
    .venv/bin/python benchmarks/image_default_cost.py --dataset images.npz --class 0
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentserve_core.manifest import Manifest  # noqa: E402
from latentserve_core.runtime import OnnxRuntime  # noqa: E402
from training.api import fit  # noqa: E402
from training.config import DataConfig  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.presets import PRESETS  # noqa: E402

PRESET_NAMES = ["one-class-images", "one-class-images-pca"]


def rows_per_second(runtime: OnnxRuntime, X: np.ndarray, batch: int, repeats: int) -> float:
    rows = np.ascontiguousarray(X[:batch], dtype=np.float32)
    runtime.compute("scores", rows)  # warm
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < 0.2:
            runtime.compute("scores", rows)
            n += len(rows)
        best = max(best, n / elapsed)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or a labelled .npz image set")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--class", dest="cls", type=int, default=0, help="the normal class")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    ds = load_dataset(args.dataset, data_dir=args.data_dir)
    X_test = ds.X_test if ds.X_test is not None else ds.X
    print("| preset | train CPU s | train wall s | scores 1 row: rows/s | scores 256 rows: rows/s |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in PRESET_NAMES:
            data = DataConfig(args.dataset, data_dir=args.data_dir, classes=(args.cls,))
            cpu, wall = time.process_time(), time.perf_counter()
            folder = fit(PRESETS[name].config, data, name=name, models_dir=Path(tmp))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            runtime = OnnxRuntime.load(Manifest.read(folder), folder)
            one, many = (rows_per_second(runtime, X_test, b, args.repeats) for b in (1, 256))
            print(f"| {name} | {cpu:.1f} | {wall:.1f} | {one:,.0f} | {many:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
