"""`AutoencoderEstimator`: the networks behind the estimator contract of `training.base`.

`_encode` / `_decode` run the trained module in float32 on the CPU: the same computation the
exported ONNX graphs perform.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from latentserve_core.manifest import EpochRecord
from training.base import F32, ReconstructionEstimator, feature_scale, score_spec
from training.config import ScoreConfig
from training.errors import UsageError
from training.nn.config import ACTIVATIONS, BASE_KINDS, NN_KINDS, NetConfig, TrainConfig
from training.nn.models import Autoencoder as Network
from training.nn.models import build_network, image_dims
from training.nn.trainer import Objective, train

SCORE_PARAMS = ("reduction", "topk", "pool", "relative")  # the score settings a network applies
_NET, _TRAIN, _SCORE = NetConfig(), TrainConfig(), ScoreConfig()  # the defaults (frozen: shared safely)


def validate(
    net: NetConfig,
    score: ScoreConfig,
    row_shape: tuple[int, ...],
    layout: str,
    value_range: tuple[float, float],
) -> None:
    """Raise UsageError with one clear line when the configuration cannot fit these rows."""
    d = int(np.prod(row_shape))
    if net.kind not in NN_KINDS:
        raise UsageError(f"--model: unknown network kind {net.kind!r}; expected one of {list(NN_KINDS)}")
    if net.kind == "denoising" and net.base not in BASE_KINDS:
        raise UsageError(f"--base: a denoising AE wraps one of {list(BASE_KINDS)}, got {net.base!r}")
    if net.activation not in ACTIVATIONS:
        raise UsageError(f"--activation: unknown {net.activation!r}; expected one of {list(ACTIVATIONS)}")
    if net.architecture == "conv":
        if layout != "image":
            raise UsageError(
                f"--model conv needs image data; this data set has {layout} rows of "
                f"shape {list(row_shape)} (use dense, linear, lstm or vae)"
            )
        image_dims(row_shape)
    if not 1 <= net.latent_dim < d:
        raise UsageError(
            f"--latent-dim {net.latent_dim} must be between 1 and {d - 1} (rows hold {d} values)"
        )
    if not net.hidden or min(net.hidden) < 1:
        raise UsageError(f"--hidden: widths must be positive integers, got {list(net.hidden)}")
    if net.loss not in (None, "mse", "bce"):
        raise UsageError(f"--loss: expected mse or bce, got {net.loss!r}")
    lo, hi = value_range
    if net.loss == "bce" and (
        net.architecture == "linear" or not (lo >= 0.0 and hi <= 1.0) or net.standardize
    ):
        raise UsageError(
            f"--loss bce needs unstandardised data in [0, 1] and a non-linear network; "
            f"this data spans [{lo:.4g}, {hi:.4g}] (use --loss mse)"
        )
    if net.noise is not None and not 0.0 <= net.noise < (1.0 if net.noise_kind == "dropout" else np.inf):
        raise UsageError(f"--noise {net.noise} is out of range for --noise-kind {net.noise_kind}")
    if net.noise_kind not in ("gaussian", "dropout"):
        raise UsageError(f"--noise-kind: expected gaussian or dropout, got {net.noise_kind!r}")
    if net.sparsity < 0:
        raise UsageError(f"--sparsity must be >= 0, got {net.sparsity}")
    score_spec(row_shape, layout, score)  # the --score-* flags, checked before any training


class AutoencoderEstimator(ReconstructionEstimator):
    """A PyTorch autoencoder of kind dense | linear | conv | lstm | denoising | vae.

    fit(X (n, *shape), X_val) learns net_ (the `nn.Module`, on the CPU), history_, latent_dim_ = k,
    score_spec_ (scale = the training std when standardised; the rest from `score`), and
    loss_ / output_ (bce|mse, sigmoid|identity). The score's neighbors term is the PCA family's only.
    """

    net_: Network
    history_: list[EpochRecord]
    parity_: dict[str, float]  # max |ONNX - PyTorch| on random inputs, set by the ONNX writer

    def __init__(
        self, net: NetConfig = _NET, train: TrainConfig = _TRAIN, score: ScoreConfig = _SCORE
    ) -> None:
        self.net = net
        self.train = train
        self.score = score

    @property
    def kind(self) -> str:  # type: ignore[override]  # derived from net: not an argument of its own
        """The network kind (dense, conv, ...): net.kind."""
        return self.net.kind

    def hyperparameters(self) -> dict[str, Any]:
        """The manifest's record: the fields of net, the score settings a network applies
        (score_*) and the fields of train (train_*)."""
        scored = {f"score_{k}": getattr(self.score, k) for k in SCORE_PARAMS}
        params = {**asdict(self.net), **scored, **{f"train_{k}": v for k, v in asdict(self.train).items()}}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}

    def fit(self, X: F32, X_val: F32 | None = None) -> AutoencoderEstimator:
        """X: (n, *shape) float32 rows; X_val: rows for early stopping."""
        X2 = self._remember_shape(X)
        cfg = self.net
        layout = cfg.layout or ("features" if len(self.input_shape_) == 1 else "image")
        lo, hi = float(X2.min()), float(X2.max())
        validate(cfg, self.score, self.input_shape_, layout, (lo, hi))
        standardize = (
            cfg.standardize if cfg.standardize is not None else (layout == "features" or lo < 0.0 or hi > 1.0)
        )
        if standardize:
            center = X2.mean(axis=0, dtype=np.float64)
            scale = feature_scale(X2.std(axis=0, dtype=np.float64))
        else:
            center, scale = np.zeros(X2.shape[1]), np.ones(X2.shape[1])
        unit = not standardize and lo >= 0.0 and hi <= 1.0 and cfg.architecture != "linear"
        self.loss_ = cfg.loss or ("bce" if unit else "mse")
        self.output_ = "sigmoid" if unit else "identity"
        noise = (
            cfg.noise if cfg.noise is not None else (cfg.DENOISING_NOISE if cfg.kind == "denoising" else 0.0)
        )
        self.noise_ = noise
        torch.manual_seed(self.train.seed)
        net = build_network(
            cfg,
            self.input_shape_,
            torch.as_tensor(center, dtype=torch.float32),
            torch.as_tensor(scale, dtype=torch.float32),
            sigmoid=unit,
        )
        obj = Objective(
            loss=self.loss_, noise=noise, noise_kind=cfg.noise_kind, sparsity=cfg.sparsity, beta=cfg.beta
        )
        Xv = (
            torch.from_numpy(np.asarray(X_val, np.float32).reshape(-1, *self.input_shape_))
            if (X_val is not None and len(X_val))
            else None
        )
        self.history_ = train(
            net, torch.from_numpy(np.ascontiguousarray(X2).reshape(X.shape)), Xv, self.train, obj
        )
        self.net_ = net
        self.latent_dim_ = cfg.latent_dim
        self.standardized_ = standardize
        scaled = scale.astype(np.float32).tolist() if standardize else None
        self.score_spec_ = score_spec(self.input_shape_, layout, self.score, scaled)
        return self

    @torch.no_grad()
    def _encode(self, X2: F32) -> F32:
        Z = self.net_.encode(torch.from_numpy(np.ascontiguousarray(X2, np.float32)))
        return Z.numpy().astype(np.float32)

    @torch.no_grad()
    def _decode(self, Z: F32) -> F32:
        X_hat = self.net_.decode(torch.from_numpy(np.ascontiguousarray(Z, np.float32)))
        return X_hat.reshape(len(Z), -1).numpy().astype(np.float32)

    def sample(self, n: int, seed: int = 0) -> F32:
        """Decode n draws from N(0, I): rows (n, *shape) (meaningful for a VAE)."""
        Z = np.random.default_rng(seed).standard_normal((n, self.latent_dim_)).astype(np.float32)
        return self.decode(Z)
