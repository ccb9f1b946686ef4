"""Hyper-parameters of the autoencoders, as frozen dataclasses (see `training.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from training.errors import UsageError

NN_KINDS = ("dense", "linear", "conv", "lstm", "denoising", "vae")
BASE_KINDS = ("dense", "linear", "conv", "lstm")  # what a denoising AE may wrap
ACTIVATIONS = ("selu", "relu", "leaky-relu", "tanh")

Layout = Literal["features", "image", "sequence"]


@dataclass(frozen=True)
class NetConfig:
    """The network: what it looks like and what it is trained to reconstruct."""

    kind: str = "dense"  # dense | linear | conv | lstm | denoising | vae
    latent_dim: int = 30  # size of the code z (`fit` takes min(this, d // 2) unless given one)
    hidden: tuple[int, ...] = (100,)  # dense / vae hidden widths (decoder mirrored); lstm: hidden[0] units
    channels: tuple[int, ...] = (16, 32, 64)  # conv: channels per level (fewer levels on small images)
    activation: str = "selu"  # hidden activation: selu | relu | leaky-relu | tanh
    loss: str | None = None  # mse | bce; None: bce for data in [0, 1], mse otherwise
    base: str = "dense"  # denoising: the architecture trained on corrupted inputs
    noise: float | None = None  # corruption strength (std, or drop probability); None: DENOISING_NOISE
    noise_kind: str = "gaussian"  # gaussian (std in units of each feature's scale) | dropout
    sparsity: float = 0.0  # weight of the L1 penalty mean |z| on the code
    beta: float = 1.0  # vae: weight of the KL term
    standardize: bool | None = None  # None: standardise feature data, leave images in [0, 1]
    layout: Layout | None = None  # features | image | sequence; None: 1-D rows features, else image

    DENOISING_NOISE: ClassVar[float] = 0.2  # the noise of a denoising AE when none is given (others: 0)

    @property
    def architecture(self) -> str:
        """The layer family: the base for denoising, the kind otherwise."""
        return self.base if self.kind == "denoising" else self.kind


@dataclass(frozen=True)
class TrainConfig:
    """The training loop."""

    epochs: int = 20  # passes over the training rows (fewer with early stopping)
    batch_size: int = 128  # rows per step (per process under DDP)
    lr: float = 1e-3  # Adam learning rate
    optimizer: str = "adam"  # adam | sgd
    patience: int = 10  # stop after this many epochs without a better validation loss
    seed: int = 0  # seeds initialisation, shuffling and noise
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # autocast the forward pass to bfloat16
    compile: bool = False  # torch.compile the network (CUDA: mode reduce-overhead, i.e. CUDA graphs)
    quiet: bool = False  # no progress bar
    cpu_threads: int = 0  # CPU intra-op threads; 0: 1 for small networks (< 100k weights), else the default


# ---- the rotation term of a score (docs/score.md, step 7; trained by training.nn.turns) ----
TURN_ROWS = 8192  # the network trains on at most this many training images (a seeded subset): its budget
TURN_MIN_STEPS = 256  # the network takes at least this many optimiser steps: more epochs on few images
MIN_SIDE = 4  # two 2x2 max pools need images of at least 4 x 4 after the pool


def turn_pool(image_shape: tuple[int, int, int], size: int) -> int:
    """The largest whole factor that keeps the image's shorter side at least `size` (at least 1)."""
    return max(1, min(image_shape[0], image_shape[1]) // size)


def check_turn_settings(image_shape: tuple[int, int, int], size: int, epochs: int) -> None:
    """Refuse rotation settings that cannot apply to images of this shape; the message names the flag."""
    if not 1 <= epochs <= 100:
        raise UsageError(f"--score-rotation-epochs must be in [1, 100], got {epochs}")
    if size < MIN_SIDE:
        raise UsageError(f"--score-rotation-size must be >= {MIN_SIDE}, got {size}")
    side = min(image_shape[0], image_shape[1]) // turn_pool(image_shape, size)
    if side < MIN_SIDE:
        raise UsageError(
            f"--score-rotation needs images of at least {MIN_SIDE} x {MIN_SIDE} pixels, got "
            f"{image_shape[0]} x {image_shape[1]}; train without the term: --preset one-class-images-pca"
        )
