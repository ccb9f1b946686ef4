"""DistributedDataParallel: two CPU processes (gloo) under torchrun train one model; rank 0 exports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import OnnxRuntime
from training.data import Splits

REPO = Path(__file__).resolve().parents[3]


def test_torchrun_two_cpu_processes_train_and_export_once(registry: Path, digits: Splits) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    argv = [
        str(torchrun),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "training",
        "fit",
        "--model",
        "dense",
        "--dataset",
        "digits",
        "--name",
        "ddp",
        "--models-dir",
        str(registry),
        "--epochs",
        "3",
        "--hidden",
        "32",
        "--latent-dim",
        "8",
        "--batch-size",
        "32",
        "--device",
        "cpu",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    errors = [line for line in done.stderr.splitlines() if "INFO" not in line and line.strip()]
    assert done.returncode == 0, "\n".join(errors[:40])
    printed = [line for line in done.stdout.splitlines() if line.strip()]
    assert printed == [str(registry / "ddp" / "1")]  # one export, printed once (rank 0)
    assert sorted(p.name for p in (registry / "ddp").iterdir()) == ["1"]
    manifest = Manifest.read(registry / "ddp" / "1")
    assert manifest.hyperparameters["world_size"] == 2
    losses = [h.train_loss for h in manifest.metrics.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    runtime = OnnxRuntime.load(manifest, registry / "ddp" / "1")
    # the same seeded split: the served model scores validation rows as the trained one did
    rec = runtime.reconstruct(digits.X_val)
    np.testing.assert_allclose(rec.scores.mean(), manifest.metrics.validation_error, rtol=1e-4)
