"""CLI glue: map `python -m training fit` flags onto the configs, train, export (rank 0 only)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.config import FitConfig
from training.data import Dataset
from training.export import TrainingRun, export
from training.nn.config import NN_KINDS, NetConfig, TrainConfig
from training.nn.estimator import Autoencoder
from training.nn.export import ATOL, RTOL, picture_writer, write_onnx

log = logging.getLogger("latentserve.training")

# What the README's main command trains after the PCA defaults: (name, kind, dataset, extra flags)
DEFAULT_NETWORKS: list[tuple[str, str, str, list[str]]] = [
    (
        "digits-dense",
        "dense",
        "digits",
        ["--hidden", "64", "--latent-dim", "16", "--epochs", "60", "--batch-size", "64", "--quiet"],
    ),
    (
        "breast-cancer-dense",
        "dense",
        "breast-cancer",
        [
            "--hidden",
            "16",
            "--latent-dim",
            "6",
            "--epochs",
            "100",
            "--batch-size",
            "32",
            "--activation",
            "tanh",
            "--quiet",
        ],
    ),
]


def _ints(flag: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers like 256,64, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag}: expected positive integers like 256,64, got {text!r}")
    return values


def net_config(kind: str, args: argparse.Namespace, ds: Dataset, standardize: bool | None) -> NetConfig:
    """The network flags of `args` (missing ones take the defaults)."""
    names = (
        "activation",
        "loss",
        "base",
        "noise",
        "noise_kind",
        "sparsity",
        "beta",
        "score_reduction",
        "score_topk",
        "score_pool",
    )
    opt: dict[str, Any] = {k: getattr(args, k, None) for k in names}
    opt["hidden"] = _ints("--hidden", getattr(args, "hidden", None))
    opt["channels"] = _ints("--channels", getattr(args, "channels", None))
    opt["score_relative"] = bool(getattr(args, "score_relative", False))
    d = int(np.prod(ds.row_shape))
    latent = getattr(args, "latent_dim", None) or min(30, max(1, d // 2))
    given = {k: v for k, v in opt.items() if v is not None}
    return NetConfig(kind=kind, latent_dim=latent, standardize=standardize, layout=ds.layout, **given)


def train_config(cfg: FitConfig, args: argparse.Namespace) -> TrainConfig:
    opt: dict[str, Any] = {
        k: getattr(args, k, None) for k in ("epochs", "batch_size", "lr", "patience", "optimizer")
    }
    opt.update({k: bool(getattr(args, k, False)) for k in ("bf16", "compile", "quiet")})
    return TrainConfig(seed=cfg.seed, device=cfg.device, **{k: v for k, v in opt.items() if v is not None})


def fit_network(cfg: FitConfig, args: argparse.Namespace, ds: Dataset, run: TrainingRun) -> Path:
    """Train an autoencoder on run.splits and publish it; under torchrun only rank 0 exports."""
    import torch.distributed as dist

    est = Autoencoder(net_config(cfg.model, args, ds, cfg.standardize), train_config(cfg, args))
    est.fit(run.splits.X_train, run.splits.X_val)
    rank = dist.get_rank() if dist.is_initialized() else 0
    folder: list[Path | None] = [None]
    try:
        if rank == 0:
            vals = [h.validation_loss for h in est.history_ if h.validation_loss is not None]
            best = min(vals) if vals else None
            log.info(
                "trained %s (%s) for %d epochs; best validation loss %s",
                cfg.name,
                cfg.model,
                len(est.history_),
                f"{best:.4g}" if best is not None else "n/a",
            )
            run.history = est.history_
            run.hyperparameters["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
            extra: dict[str, Any] = {"latent_distribution": "standard-normal"} if cfg.model == "vae" else {}
            folder[0] = export(
                est,
                run,
                cfg.models_dir,
                cfg.name,
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
        raise RuntimeError(f"rank 0 failed to export {cfg.name!r}; see its error")
    return folder[0]


def register(fitters: dict[str, Any]) -> None:
    """Add every autoencoder kind to the CLI's FITTERS."""
    for kind in NN_KINDS:
        fitters[kind] = fit_network
