"""Train every autoencoder kind briefly on MNIST, export each with the ONNX parity checks, print a table.

Run through `scripts/gpu-check.sh` (its header lists the options); exits non-zero when any kind fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from latentserve_core.manifest import Manifest
from training.data import Splits, load_dataset
from training.device import resolve_device
from training.export import TrainingRun, export, verify
from training.nn.config import NetConfig, TrainConfig
from training.nn.estimator import AutoencoderEstimator
from training.nn.export import picture_writer, write_onnx
from training.nn.onnx_io import ATOL

p = argparse.ArgumentParser(prog="scripts/gpu-check.sh")
p.add_argument("--cpu", action="store_true", help="run on the CPU, 1 epoch on 1000 images")
p.add_argument("--data-dir", type=Path, default=Path("..") / "shared" / "data" / "mnist")
p.add_argument("--epochs", type=int, default=None)
p.add_argument("--rows", type=int, default=None, help="training rows (default 55000, --cpu 2000)")
p.add_argument("--compile", action="store_true")
p.add_argument("--bf16", action="store_true")
args = p.parse_args(sys.argv[1:])
device = "cpu" if args.cpu else resolve_device("cuda")
epochs = args.epochs or (1 if args.cpu else 2)
rows = args.rows or (1000 if args.cpu else 55_000)

ds = load_dataset("mnist", data_dir=args.data_dir, download=False)
n_hold = 300 if args.cpu else 5000
splits = Splits(
    ds.X[:rows],
    ds.X[55_000 : 55_000 + n_hold],
    ds.X_test[:n_hold],
    ds.y[:rows],
    ds.y[55_000 : 55_000 + n_hold],
    ds.y_test[:n_hold],
)
name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
print(f"device {device} ({name}), torch {torch.__version__}, {rows} training rows, {epochs} epoch(s)")

KINDS = {
    "dense": NetConfig(kind="dense", hidden=(100,), latent_dim=30, layout="image"),
    "linear": NetConfig(kind="linear", latent_dim=30, layout="image"),
    "conv": NetConfig(kind="conv", channels=(16, 32, 64), latent_dim=30, layout="image"),
    "lstm": NetConfig(kind="lstm", hidden=(64,), latent_dim=30, layout="image"),
    "denoising": NetConfig(
        kind="denoising", base="dense", hidden=(100,), latent_dim=30, noise=0.2, layout="image"
    ),
    "vae": NetConfig(kind="vae", hidden=(100,), latent_dim=16, layout="image"),
}
# warm-up (CUDA context, cuBLAS handles, thread pools) so that the first kind's epoch time is fair
AutoencoderEstimator(KINDS["dense"], TrainConfig(epochs=1, device=device, quiet=True)).fit(
    splits.X_train[:256]
)
results, failed = [], False
with tempfile.TemporaryDirectory() as tmp:
    for kind, net in KINDS.items():
        try:
            train = TrainConfig(
                epochs=epochs, batch_size=128, device=device, compile=args.compile, bf16=args.bf16, quiet=True
            )
            start = time.perf_counter()
            est = AutoencoderEstimator(net, train).fit(splits.X_train, splits.X_val)
            per_epoch = (time.perf_counter() - start) / len(est.history_)
            run = TrainingRun(dataset=ds, splits=splits, seed=0, history=est.history_)
            start = time.perf_counter()
            extra = {"latent_distribution": "standard-normal"} if kind == "vae" else {}
            folder = export(
                est,
                run,
                Path(tmp),
                f"check-{kind}",
                [write_onnx, picture_writer(run)],
                primary_format="onnx",
                rtol=0.0,
                atol=ATOL,
                **extra,
            )
            export_s = time.perf_counter() - start
            diffs = verify(Manifest.read(folder), folder, est, splits.X_val[:256], rtol=0.0, atol=ATOL)
            rows_diff = max(diffs.values())
            random_diff = max(est.parity_.values())
            results.append(
                (kind, "ok", per_epoch, est.history_[-1].validation_loss, rows_diff, random_diff, export_s)
            )
        except Exception as exc:  # report every kind, then fail
            failed = True
            traceback.print_exc()
            results.append(
                (
                    kind,
                    f"FAIL {type(exc).__name__}",
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    float("nan"),
                )
            )

print(f"| {'kind':<10} | {'status':<14} | s/epoch | val loss | parity rows | parity random | export s |")
print(f"|{'-' * 12}|{'-' * 16}|---------|----------|-------------|---------------|----------|")
for kind, status, sec, val, d_rows, d_rand, exp_s in results:
    print(
        f"| {kind:<10} | {status:<14} | {sec:7.3f} | {val:8.4f} | {d_rows:11.2e} | {d_rand:13.2e} "
        f"| {exp_s:8.2f} |"
    )
sys.exit(1 if failed else 0)
