"""Configuration as frozen dataclasses; the CLI maps its flags onto these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PCA_KINDS = ("pca", "sklearn-pca", "incremental-pca", "kernel-pca")


@dataclass(frozen=True)
class FitConfig:
    """What every `fit` shares, whatever the model kind."""

    model: str  # model kind, e.g. pca, kernel-pca, dense, conv
    dataset: str  # embedded name (digits, breast-cancer, gaussian-2d), mnist / fashion-mnist, or a path
    name: str  # registry name of the model
    models_dir: Path = Path("models")  # the registry root
    data_dir: Path | None = None  # where IDX files live (mnist, fashion-mnist)
    classes: tuple[int, ...] | None = None  # keep only these labels (one-class training)
    seed: int = 0  # seeds the split, the initialisation and the shuffling
    device: str = "auto"  # auto | cpu | cuda
    quantile: float = 0.99  # threshold quantile of the calibration scores
    validation: float = 0.15  # share of rows held out for validation
    calibration: float = 0.15  # share of rows held out for threshold calibration
    standardize: bool | None = None  # None: standardise feature data, leave images in [0, 1]


@dataclass(frozen=True)
class PCAConfig:
    """Hyper-parameters of the PCA family."""

    n_components: float = 0.95  # int k, or a float in (0, 1): the fewest components reaching that share
    solver: str = "full"  # sklearn-pca: full | randomized
    batch_size: int = 1024  # incremental-pca: rows per partial_fit
    kernel: str = "rbf"  # kernel-pca: rbf | poly | sigmoid | cosine | linear
    gamma: float | None = None  # kernel-pca: kernel coefficient (None: 1 / n_features)
    alpha: float = 1e-3  # kernel-pca: ridge of the learned inverse transform
    max_rows: int = 3000  # kernel-pca: at most this many training rows (the kernel is n x n)
