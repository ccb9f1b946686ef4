"""The training loop: Adam, early stopping on the validation loss with the best weights restored.

On a GPU the rows stay resident on the device when they fit, shuffling runs there, and losses are
summed on the device with one host sync per epoch. Under `torchrun` (WORLD_SIZE > 1) each process
takes every world-th row of the shared permutation and DDP averages the gradients.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from latentserve_core.manifest import EpochRecord
from training.device import resolve_device
from training.nn.config import TrainConfig
from training.nn.models import Autoencoder, Pass


@dataclass(frozen=True)
class Objective:
    """What the network is trained to minimise, besides the architecture."""

    loss: str = "mse"  # bce (on logits) | mse (after the output activation), in normalised units
    noise: float = 0.0  # input corruption strength (0: none)
    noise_kind: str = "gaussian"  # gaussian: x + noise * scale * N(0, 1); dropout: zero with p = noise
    sparsity: float = 0.0  # weight of mean |z|
    beta: float = 1.0  # weight of the VAE's KL term


def objective_loss(net: Autoencoder, p: Pass, target: Tensor, obj: Objective) -> Tensor:
    """Mean reconstruction loss per value, plus the KL and sparsity terms."""
    if obj.loss == "bce":
        rec = F.binary_cross_entropy_with_logits(p.y.float(), target)
    else:
        rec = F.mse_loss(net.activate(p.y.float()), target)
    return rec + obj.beta * p.kl + obj.sparsity * p.z.float().abs().mean()


def corrupt(X: Tensor, net: Autoencoder, obj: Objective, gen: torch.Generator) -> Tensor:
    """The noisy input a denoising AE sees (raw units); X itself when noise is 0."""
    if obj.noise <= 0:
        return X
    if obj.noise_kind == "dropout":
        keep = torch.rand(X.shape, generator=gen, device=X.device) >= obj.noise
        return X * keep
    noise = torch.randn(X.shape, generator=gen, device=X.device) * obj.noise
    return X + noise * net.scale.reshape(X.shape[1:]) if net.standardized else X + noise


def process_group(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


@contextlib.contextmanager
def cpu_settings(net: Autoencoder, device: torch.device, threads: int) -> Iterator[None]:
    """Deterministic kernels on CPU for the duration (CUDA would need CUBLAS_WORKSPACE_CONFIG), and
    one thread for small networks: their kernels are too short to split, and waiting threads cost
    up to 10x on a busy machine."""
    before, threads_before = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        small = sum(p.numel() for p in net.parameters()) < 100_000
        torch.set_num_threads(threads or (1 if small else threads_before))
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        torch.set_num_threads(threads_before)


def _resident(X: Tensor, device: torch.device) -> Tensor:
    """X on the device when it takes under half the free memory, else X where it is. (Pinning the
    whole set would not help: a batch gathered by index from it is a new, unpinned tensor.)"""
    if device.type != "cuda":
        return X
    free, _ = torch.cuda.mem_get_info(device)
    return X.to(device) if X.numel() * 4 < free // 2 else X


@torch.no_grad()
def validation_loss(
    net: Autoencoder, X: Tensor, obj: Objective, device: torch.device, batch: int = 4096
) -> Tensor:
    """The objective on clean rows, averaged over rows, as a device scalar."""
    net.eval()
    total = torch.zeros((), device=device)
    for i in range(0, len(X), batch):
        xb = X[i : i + batch].to(device, non_blocking=True)
        total += objective_loss(net, net(xb), net.normalise(xb), obj) * len(xb)
    return total / max(len(X), 1)


def train(
    net: Autoencoder, X: Tensor, X_val: Tensor | None, cfg: TrainConfig, obj: Objective
) -> list[EpochRecord]:
    """Fit `net` in place on rows X (n, *shape); returns the per-epoch history. Ends on the CPU."""
    device = torch.device(resolve_device(cfg.device))
    rank, world, device = process_group(device)
    torch.manual_seed(cfg.seed)
    net.to(device)
    model: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(net) if world > 1 else net
    if cfg.compile:
        model = torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None)  # type: ignore[assignment]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr)
    else:  # one fused kernel per step on a GPU instead of one per parameter tensor
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    Xt, Xv = _resident(X, device), (_resident(X_val, device) if X_val is not None else None)
    shuffle = torch.Generator(device=Xt.device).manual_seed(cfg.seed)
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    n_local = len(Xt) // world
    best, best_state, waited, history = math.inf, None, 0, []
    show = not cfg.quiet and rank == 0 and sys.stderr.isatty()
    bar = tqdm(range(1, cfg.epochs + 1), unit="epoch", disable=not show, leave=False)
    with cpu_settings(net, device, cfg.cpu_threads):
        for epoch in bar:
            net.train()
            order = torch.randperm(len(Xt), generator=shuffle, device=Xt.device)[rank::world][:n_local]
            total = torch.zeros((), device=device)
            for i in range(0, n_local, cfg.batch_size):
                xb = Xt[order[i : i + cfg.batch_size]].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    loss = objective_loss(net, model(corrupt(xb, net, obj, noise)), net.normalise(xb), obj)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += loss.detach() * len(xb)
            val = validation_loss(net, Xv, obj, device) if Xv is not None else total / n_local
            stats = torch.stack([total / n_local, val])
            if world > 1:
                dist.all_reduce(stats)
                stats /= world
            train_loss, val_loss = stats.tolist()  # the one host sync of the epoch
            history.append(
                EpochRecord(
                    epoch=epoch, train_loss=train_loss, validation_loss=val_loss if Xv is not None else None
                )
            )
            bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{val_loss:.4g}")
            if val_loss < best:
                best, waited = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.cpu().eval()
    return history
