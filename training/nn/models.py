"""The networks. Modules only build layers and define `encode`, `decode` and `forward`.

Every network takes rows in the data's own shape (n, *row_shape) in raw units, or flat (n, d):
    encode(X) -> Z (n, k)          decode(Z) -> X_hat (n, *row_shape), raw units
The standardisation (training mean / std, as buffers) and the output activation are part of the
module, so the exported graphs take and return raw values. `forward` is what the trainer uses: it
returns the pre-activation output in normalised units, the code and the VAE's KL term.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

from training.errors import UsageError
from training.nn.config import NetConfig


class Pass(NamedTuple):
    """One training pass: y (n, d) pre-activation output in normalised units, z (n, k), kl ()."""

    y: Tensor
    z: Tensor
    kl: Tensor


def make_activation(name: str) -> nn.Module:
    if name == "selu":
        return nn.SELU()
    if name == "relu":
        return nn.ReLU()
    if name == "leaky-relu":
        return nn.LeakyReLU(0.01)
    if name == "tanh":
        return nn.Tanh()
    raise UsageError(f"--activation: unknown activation {name!r}; expected selu, relu, leaky-relu or tanh")


class Autoencoder(nn.Module):
    """Shared frame: standardise -> body encoder -> code -> body decoder -> activation -> de-standardise.

    center, scale: (d,) buffers (0 and 1 for images); sigmoid: squash the output into [0, 1].
    Subclasses implement `_encode(h) -> (mu, logvar | None)` and `_decode(z) -> y` on flat rows.
    """

    center: Tensor
    scale: Tensor

    def __init__(self, row_shape: tuple[int, ...], center: Tensor, scale: Tensor, sigmoid: bool) -> None:
        super().__init__()
        self.row_shape = row_shape
        self.d = math.prod(row_shape)
        self.sigmoid = sigmoid
        self.standardized = bool((center != 0).any() or (scale != 1).any())
        self.register_buffer("center", center.reshape(self.d).float())
        self.register_buffer("scale", scale.reshape(self.d).float())

    def _encode(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def _decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def normalise(self, X: Tensor) -> Tensor:
        """Rows (n, *row_shape) or (n, d) in raw units -> flat (n, d) normalised."""
        h = X.reshape(-1, self.d)
        return (h - self.center) / self.scale if self.standardized else h

    def activate(self, y: Tensor) -> Tensor:
        """The output activation, in normalised units."""
        return torch.sigmoid(y) if self.sigmoid else y

    def encode(self, X: Tensor) -> Tensor:
        """X (n, *row_shape) -> Z (n, k); a VAE returns the mean code."""
        return self._encode(self.normalise(X))[0]

    def decode(self, Z: Tensor) -> Tensor:
        """Z (n, k) -> X_hat (n, *row_shape) in raw units."""
        out = self.activate(self._decode(Z))
        if self.standardized:
            out = out * self.scale + self.center
        return out.reshape(-1, *self.row_shape)

    def forward(self, X: Tensor) -> Pass:
        mu, logvar = self._encode(self.normalise(X))
        if logvar is None:
            return Pass(self._decode(mu), mu, mu.new_zeros(()))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        # KL(q(z|x) || N(0, I)) per row, divided by d so it is on the scale of a per-value loss
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.square() - logvar.exp(), dim=1)) / self.d
        return Pass(self._decode(z), z, kl)


def _mlp(sizes: list[int], activation: str, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class DenseAE(Autoencoder):
    """Stacked AE d -> hidden... -> k -> reversed hidden... -> d (the code is linear)."""

    def __init__(
        self, cfg: NetConfig, row_shape: tuple[int, ...], center: Tensor, scale: Tensor, sigmoid: bool
    ) -> None:
        super().__init__(row_shape, center, scale, sigmoid)
        sizes = [self.d, *cfg.hidden]
        self.encoder = _mlp([*sizes, cfg.latent_dim], cfg.activation, last_activation=False)
        self.decoder = _mlp([cfg.latent_dim, *sizes[::-1]], cfg.activation, last_activation=False)

    def _encode(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.encoder(h), None

    def _decode(self, z: Tensor) -> Tensor:
        out: Tensor = self.decoder(z)
        return out


class LinearAE(Autoencoder):
    """d -> k -> d without activations: at the optimum its decoder spans the top-k PCA subspace."""

    def __init__(
        self, cfg: NetConfig, row_shape: tuple[int, ...], center: Tensor, scale: Tensor, sigmoid: bool
    ) -> None:
        super().__init__(row_shape, center, scale, sigmoid)
        self.encoder = nn.Linear(self.d, cfg.latent_dim)
        self.decoder = nn.Linear(cfg.latent_dim, self.d)

    def _encode(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.encoder(h), None

    def _decode(self, z: Tensor) -> Tensor:
        out: Tensor = self.decoder(z)
        return out


class VAE(Autoencoder):
    """Dense encoder with mean and log-variance heads; dense decoder from sampled codes."""

    def __init__(
        self, cfg: NetConfig, row_shape: tuple[int, ...], center: Tensor, scale: Tensor, sigmoid: bool
    ) -> None:
        super().__init__(row_shape, center, scale, sigmoid)
        sizes = [self.d, *cfg.hidden]
        self.encoder = _mlp(sizes, cfg.activation, last_activation=True)
        self.mu = nn.Linear(sizes[-1], cfg.latent_dim)
        self.logvar = nn.Linear(sizes[-1], cfg.latent_dim)
        self.decoder = _mlp([cfg.latent_dim, *sizes[::-1]], cfg.activation, last_activation=False)

    def _encode(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        e = self.encoder(h)
        return self.mu(e), self.logvar(e)

    def _decode(self, z: Tensor) -> Tensor:
        out: Tensor = self.decoder(z)
        return out


def image_dims(row_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of image rows shaped (H, W) or (H, W, C)."""
    if len(row_shape) == 2:
        return row_shape[0], row_shape[1], 1
    if len(row_shape) == 3:
        return row_shape[0], row_shape[1], row_shape[2]
    raise UsageError(f"conv needs image rows shaped (H, W) or (H, W, C), got rows of shape {list(row_shape)}")


class ConvAE(Autoencoder):
    """Conv2d + max-pool down (one level per channel count while the side stays >= 2), a linear
    code, then ConvTranspose2d back up to exactly H x W."""

    def __init__(
        self, cfg: NetConfig, row_shape: tuple[int, ...], center: Tensor, scale: Tensor, sigmoid: bool
    ) -> None:
        super().__init__(row_shape, center, scale, sigmoid)
        self.H, self.W, self.C = image_dims(row_shape)
        sizes = [(self.H, self.W)]
        for _ in cfg.channels:
            h, w = sizes[-1]
            if min(h, w) < 4:
                break
            sizes.append(((h + 1) // 2, (w + 1) // 2))
        channels = list(cfg.channels[: len(sizes) - 1]) or [cfg.channels[0]]
        if len(sizes) == 1:
            sizes.append(sizes[0])  # too small to pool: one level without pooling
        levels = list(zip(channels, sizes[:-1], sizes[1:], strict=True))
        down: list[nn.Module] = []
        c_in = self.C
        for c, size, smaller in levels:
            down += [nn.Conv2d(c_in, c, 3, padding=1), make_activation(cfg.activation)]
            if smaller != size:
                down.append(nn.MaxPool2d(2, ceil_mode=True))
            c_in = c
        self.down = nn.Sequential(*down)
        self.bottom = (channels[-1], *sizes[-1])
        flat = math.prod(self.bottom)
        self.to_code = nn.Linear(flat, cfg.latent_dim)
        self.from_code = nn.Sequential(nn.Linear(cfg.latent_dim, flat), make_activation(cfg.activation))
        up: list[nn.Module] = []
        for i in reversed(range(len(levels))):
            c, size, smaller = levels[i]
            c_out = channels[i - 1] if i > 0 else self.C
            if smaller == size:
                up.append(nn.Conv2d(c, c_out, 3, padding=1))
            else:  # output_padding 0 or 1 makes ceil-mode pooling invertible in size
                pad = (size[0] - (2 * smaller[0] - 1), size[1] - (2 * smaller[1] - 1))
                up.append(nn.ConvTranspose2d(c, c_out, 3, stride=2, padding=1, output_padding=pad))
            if i > 0:
                up.append(make_activation(cfg.activation))
        self.up = nn.Sequential(*up)

    def _encode(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        x = h.reshape(-1, self.H, self.W, self.C).permute(0, 3, 1, 2)
        return self.to_code(self.down(x).flatten(1)), None

    def _decode(self, z: Tensor) -> Tensor:
        x = self.from_code(z).reshape(-1, *self.bottom)
        out: Tensor = self.up(x).permute(0, 2, 3, 1).reshape(-1, self.d)
        return out


class LSTMAE(Autoencoder):
    """Rows as T time steps of F values: LSTM encoder -> code, repeated T times -> LSTM decoder ->
    per-step Linear output. Images (H, W[, C]) are H steps of W*C values; features d steps of 1."""

    def __init__(
        self, cfg: NetConfig, row_shape: tuple[int, ...], center: Tensor, scale: Tensor, sigmoid: bool
    ) -> None:
        super().__init__(row_shape, center, scale, sigmoid)
        self.T = row_shape[0]
        self.F = self.d // self.T
        units = cfg.hidden[0]
        self.encoder = nn.LSTM(self.F, units, batch_first=True)
        self.to_code = nn.Linear(units, cfg.latent_dim)
        self.decoder = nn.LSTM(cfg.latent_dim, units, batch_first=True)
        self.out = nn.Linear(units, self.F)

    def _encode(self, h: Tensor) -> tuple[Tensor, Tensor | None]:
        _, (h_n, _) = self.encoder(h.reshape(-1, self.T, self.F))
        return self.to_code(h_n[-1]), None

    def _decode(self, z: Tensor) -> Tensor:
        steps, _ = self.decoder(z.unsqueeze(1).expand(-1, self.T, -1))
        out: Tensor = self.out(steps).reshape(-1, self.d)
        return out


ARCHITECTURES: dict[str, Callable[[NetConfig, tuple[int, ...], Tensor, Tensor, bool], Autoencoder]] = {
    "dense": DenseAE,
    "linear": LinearAE,
    "conv": ConvAE,
    "lstm": LSTMAE,
    "vae": VAE,
}


def build_network(
    cfg: NetConfig, row_shape: tuple[int, ...], center: Tensor, scale: Tensor, sigmoid: bool
) -> Autoencoder:
    """The module for `cfg.architecture` on rows of `row_shape`."""
    cls = ARCHITECTURES[cfg.architecture]
    return cls(cfg, row_shape, center, scale, sigmoid)


class TurnNet(nn.Module):
    """The rotation term's network (docs/score.md, step 7): images (n, C, H, W) -> 4 logits, one
    per quarter turn. Three 3x3 convolutions (16, 32, 64 channels, ReLU, 2x2 max pools after the
    first two), a global mean and a linear layer: small enough to train in seconds on a CPU."""

    def __init__(self, channels: int, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        a, b, c = widths
        self.features = nn.Sequential(
            nn.Conv2d(channels, a, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(a, b, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(b, c, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(c, 4)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(self.features(x).mean(dim=(2, 3)))
        return logits


def turn(x: Tensor, k: int) -> Tensor:
    """Images (n, C, H, W) turned k quarter turns, as torch.rot90(x, k, dims=(2, 3)), from flips and
    transposes (ops the ONNX exporter knows)."""
    k %= 4
    if k == 1:
        return x.flip(3).transpose(2, 3)
    if k == 2:
        return x.flip(2).flip(3)
    if k == 3:
        return x.transpose(2, 3).flip(3)
    return x


class TurnTerm(nn.Module):
    """Flat rows (n, H*W*C), channels last as the data holds them -> the rotation term (n,):
    log(1 + the sum over the four quarter turns k of -log p(k | the image turned k times)), the
    image first averaged over pool x pool blocks. What the exported ONNX model computes. (The log
    keeps a few images whose turn the network gets badly wrong from dominating the score.)"""

    def __init__(self, net: TurnNet, image_shape: tuple[int, int, int], pool: int) -> None:
        super().__init__()
        self.net = net
        self.image_shape = image_shape
        self.pool = pool
        self.square = image_shape[0] // pool == image_shape[1] // pool

    def images(self, X: Tensor) -> Tensor:
        """Rows (n, d) -> images (n, C, H', W'), pooled."""
        H, W, C = self.image_shape
        x = X.reshape(-1, H, W, C).permute(0, 3, 1, 2)
        return nn.functional.avg_pool2d(x, self.pool) if self.pool > 1 else x

    def forward(self, X: Tensor) -> Tensor:
        x = self.images(X)
        if self.square:  # the four turns have one shape: they go through the network as one batch
            logp = torch.log_softmax(self.net(torch.cat([turn(x, k) for k in range(4)])), dim=1)
            right = [logp.reshape(4, -1, 4)[k, :, k] for k in range(4)]
        else:
            right = [torch.log_softmax(self.net(turn(x, k)), dim=1)[:, k] for k in range(4)]
        surprise = -(right[0] + right[1] + right[2] + right[3])
        term: Tensor = torch.log1p(surprise)
        return term
