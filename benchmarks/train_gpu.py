"""Train the lecture's stacked AE two ways and compare: the tutorial loop vs `training.nn.trainer`.

784-100-30-100-784, SELU, sigmoid output, BCE, Adam 1e-3, batch 128, 55,000 MNIST training images
(the other 5,000 validate). The tutorial loop keeps the data on the CPU in a DataLoader, copies each
batch to the device and calls `loss.item()` every step; ours keeps the rows on the device, shuffles
there and syncs once per epoch. Both compute the validation BCE after every epoch.

    python benchmarks/train_gpu.py                       # 10 epochs, CUDA when present
    python benchmarks/train_gpu.py --epochs 1 --rows 5000 --device cpu   # quick check on a CPU
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.data import load_dataset  # noqa: E402
from training.device import resolve_device  # noqa: E402
from training.nn.config import NetConfig, TrainConfig  # noqa: E402
from training.nn.models import Autoencoder, build_network  # noqa: E402
from training.nn.trainer import Objective, train  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"


def lecture_net(seed: int) -> Autoencoder:
    torch.manual_seed(seed)
    cfg = NetConfig(kind="dense", hidden=(100,), latent_dim=30, activation="selu")
    return build_network(cfg, (28, 28), torch.zeros(28, 28), torch.ones(28, 28), sigmoid=True)


@torch.no_grad()
def validation_bce(net: Autoencoder, X_val: torch.Tensor, device: torch.device) -> float:
    net.eval()
    X = X_val.to(device)
    return float(F.binary_cross_entropy_with_logits(net(X).y, X.reshape(len(X), -1)))


def tutorial_loop(
    X: torch.Tensor, X_val: torch.Tensor, epochs: int, batch: int, device: torch.device, seed: int
) -> tuple[float, float]:
    """The loop most tutorials show; returns (seconds per epoch, validation BCE)."""
    net = lecture_net(seed).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(X), batch_size=batch, shuffle=True)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        running = 0.0
        for (xb,) in loader:
            xb = xb.to(device)
            loss = F.binary_cross_entropy_with_logits(net(xb).y, xb.reshape(len(xb), -1))
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            running += loss.item()
        validation_bce(net, X_val, device)
    _sync(device)
    return (time.perf_counter() - start) / epochs, validation_bce(net, X_val, device)


def our_trainer(
    X: torch.Tensor,
    X_val: torch.Tensor,
    epochs: int,
    batch: int,
    device: torch.device,
    seed: int,
    compile: bool,
    bf16: bool,
) -> tuple[float, float]:
    net = lecture_net(seed)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch,
        lr=1e-3,
        patience=epochs + 1,
        seed=seed,
        device=device.type,
        compile=compile,
        bf16=bf16,
        quiet=True,
    )
    start = time.perf_counter()
    train(net, X, X_val, cfg, Objective(loss="bce"))
    seconds = (time.perf_counter() - start) / epochs
    return seconds, validation_bce(net.to(device), X_val, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--rows", type=int, default=55_000, help="training rows (the next 5000 validate)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="also time our trainer with torch.compile")
    p.add_argument("--bf16", action="store_true", help="also time our trainer with bf16 autocast")
    args = p.parse_args()
    device = torch.device(resolve_device(args.device))
    ds = load_dataset("mnist", data_dir=args.data_dir, download=False)
    X_all = torch.from_numpy(ds.X)
    X, X_val = X_all[: args.rows], X_all[55_000:60_000]
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {device} ({card}), {len(X)} training rows, {len(X_val)} validation rows, "
        f"{args.epochs} epochs, batch {args.batch_size}"
    )
    rows = [
        (
            "tutorial loop (DataLoader, .to per batch, .item per step)",
            *tutorial_loop(X, X_val, args.epochs, args.batch_size, device, args.seed),
        )
    ]
    rows.append(
        (
            "training.nn.trainer (resident, 1 sync/epoch)",
            *our_trainer(X, X_val, args.epochs, args.batch_size, device, args.seed, False, False),
        )
    )
    if args.compile:
        rows.append(
            (
                "training.nn.trainer --compile",
                *our_trainer(X, X_val, args.epochs, args.batch_size, device, args.seed, True, False),
            )
        )
    if args.bf16:
        rows.append(
            (
                "training.nn.trainer --bf16",
                *our_trainer(X, X_val, args.epochs, args.batch_size, device, args.seed, False, True),
            )
        )
    print(f"| {'loop':<60} | s/epoch | val BCE |")
    print(f"|{'-' * 62}|---------|---------|")
    for name, seconds, bce in rows:
        print(f"| {name:<60} | {seconds:7.3f} | {bce:7.4f} |")


if __name__ == "__main__":
    main()
