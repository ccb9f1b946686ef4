"""The rotation term's training loop and export (docs/score.md, step 7).

`fit_turn_term` trains a `TurnNet` on the training images to tell their four quarter turns apart
(Adam, lr 1e-3, batches of 128; an epoch is every row's four turns, shuffled), exports the
`TurnTerm` around it to ONNX (flat rows (n, d) -> the term (n,)) and checks onnxruntime against
PyTorch on the given rows before anything uses it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from latentserve_core.runtime.rotation import RotationTerm
from training.base import F32
from training.device import resolve_device
from training.nn.config import TURN_MIN_STEPS, TURN_ROWS, check_turn_settings, turn_pool
from training.nn.models import TurnNet, TurnTerm, turn
from training.nn.onnx_io import check_close, to_onnx

TURN_BATCH = 128
TURN_LR = 1e-3


def _train(term: TurnTerm, X: F32, epochs: int, seed: int, device: torch.device) -> None:
    """Fit term.net in place on flat rows X; ends on the CPU in eval mode."""
    net = term.net.to(device)
    with torch.no_grad():
        images = term.images(torch.from_numpy(np.ascontiguousarray(X)).to(device))
    opt = torch.optim.Adam(net.parameters(), lr=TURN_LR)
    shuffle = torch.Generator(device="cpu").manual_seed(seed)
    net.train()
    steps_per_epoch = -(-4 * len(images) // TURN_BATCH)
    for _ in range(max(epochs, -(-TURN_MIN_STEPS // steps_per_epoch))):  # few images: more epochs
        order = torch.randperm(4 * len(images), generator=shuffle).to(device)
        for i in range(0, len(order), TURN_BATCH):
            pick = order[i : i + TURN_BATCH]
            rows, turns = pick // 4, pick % 4
            loss = torch.zeros((), device=device)
            for k in range(4):  # a turn of a non-square image changes its shape: one pass per turn
                chosen = rows[turns == k]
                if len(chosen):
                    logits = net(turn(images[chosen], k))
                    target = torch.full((len(chosen),), k, device=device)
                    loss = loss + F.cross_entropy(logits, target, reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss / len(pick)).backward()  # type: ignore[no-untyped-call]
            opt.step()
    term.cpu().eval()


def fit_turn_term(
    X: F32,
    image_shape: tuple[int, int, int],
    *,
    size: int,
    epochs: int,
    seed: int,
    device: str,
    X_check: F32,
) -> tuple[RotationTerm, int]:
    """Train the rotation term on flat training rows X (n, d) of images `image_shape` (H, W, C);
    return it as a RotationTerm (its ONNX model) and the pool factor, once onnxruntime matches
    PyTorch on X_check (ExportError otherwise)."""
    check_turn_settings(image_shape, size, epochs)
    pool = turn_pool(image_shape, size)
    if len(X) > TURN_ROWS:
        X = X[np.sort(np.random.default_rng(seed).choice(len(X), TURN_ROWS, replace=False))]
    torch.manual_seed(seed)  # the network's initial weights, then its batches' order: both seeded
    term = TurnTerm(TurnNet(image_shape[2]), image_shape, pool)
    _train(term, np.asarray(X, dtype=np.float32), epochs, seed, torch.device(resolve_device(device)))
    check = torch.from_numpy(np.ascontiguousarray(X_check[:256], dtype=np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rotation.onnx"
        to_onnx(term, check, path, ["X"], ["term"])
        rotation = RotationTerm(path.read_bytes())
    with torch.no_grad():
        expected = term(check).numpy()
    check_close("the rotation term's ONNX model", rotation(check.numpy()), expected)
    return rotation, pool
