"""The network kinds of `training.fit`: build the estimator from the configs, train, export (rank 0 only).

`training.api` calls `fit_network` for every kind of `training.nn.config.NN_KINDS`; this module
does not import `training.api` (imports in `training` run one way: tests/training/test_imports.py).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from training.config import DataConfig, Default, FitConfig
from training.data import Dataset
from training.export import TrainingRun, export
from training.nn.config import NetConfig, TrainConfig
from training.nn.estimator import AutoencoderEstimator
from training.nn.export import picture_writer, write_onnx
from training.nn.onnx_io import ATOL, RTOL

log = logging.getLogger("latentserve.training")


# What `bootstrap` trains after the PCA defaults
DEFAULT_NETWORKS: list[Default] = [
    Default(
        "digits-dense",
        FitConfig(
            "dense",
            latent_dim=16,
            net=NetConfig(hidden=(64,)),
            train=TrainConfig(epochs=60, batch_size=64, quiet=True),
        ),
        DataConfig("digits"),
    ),
    Default(
        "breast-cancer-dense",
        FitConfig(
            "dense",
            latent_dim=6,
            net=NetConfig(hidden=(16,), activation="tanh"),
            train=TrainConfig(epochs=100, batch_size=32, quiet=True),
        ),
        DataConfig("breast-cancer"),
    ),
]


def network_estimator(cfg: FitConfig, ds: Dataset) -> AutoencoderEstimator:
    """The unfitted estimator: cfg.net with the kind, code size, standardisation and layout of this
    fit (latent_dim default: min(NetConfig.latent_dim, d // 2)), cfg.train with its seed and device."""
    d = int(np.prod(ds.row_shape))
    latent = cfg.latent_dim or min(NetConfig.latent_dim, max(1, d // 2))
    net = replace(cfg.net, kind=cfg.kind, latent_dim=latent, standardize=cfg.standardize, layout=ds.layout)
    return AutoencoderEstimator(net, replace(cfg.train, seed=cfg.seed, device=cfg.device), cfg.score)


def fit_network(cfg: FitConfig, run: TrainingRun, models_dir: Path, name: str) -> Path:
    """Train an autoencoder on run.splits and publish it; under torchrun only rank 0 exports."""
    import torch.distributed as dist

    est = network_estimator(cfg, run.dataset)
    est.fit(run.splits.X_train, run.splits.X_val)
    rank = dist.get_rank() if dist.is_initialized() else 0
    folder: list[Path | None] = [None]
    try:
        if rank == 0:
            vals = [h.validation_loss for h in est.history_ if h.validation_loss is not None]
            best = min(vals) if vals else None
            log.info(
                "trained %s (%s) for %d epochs; best validation loss %s",
                name,
                cfg.kind,
                len(est.history_),
                f"{best:.4g}" if best is not None else "n/a",
            )
            run.history = est.history_
            run.hyperparameters["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
            extra: dict[str, Any] = {"latent_distribution": "standard-normal"} if cfg.kind == "vae" else {}
            folder[0] = export(
                est,
                run,
                models_dir,
                name,
                [write_onnx, picture_writer(run)],
                primary_format="onnx",
                # validation rows in raw units, with the bound of the random-input checks
                atol=ATOL,
                rtol=RTOL,
                **extra,
            )
    finally:
        if dist.is_initialized():  # the other ranks wait for rank 0's folder (None when it failed)
            dist.broadcast_object_list(folder, src=0)
            dist.barrier()  # nobody closes its connections while a peer still sends
            dist.destroy_process_group()
    if folder[0] is None:
        raise RuntimeError(f"rank 0 failed to export {name!r}; see its error")
    return folder[0]
