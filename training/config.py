"""Configuration as frozen dataclasses: the one place each default is written.

`training.fit` takes these, the CLI maps its flags onto them (`--help` prints these defaults), and
presets (`training.presets`) are instances of them. One object per part of a fit:

    DataConfig        what to load and how to split it
    FitConfig         the model kind and what every kind shares, with one section per part:
      .pca            PCAConfig    the PCA family's hyper-parameters
      .net            NetConfig    the network (`training.nn.config`)
      .train          TrainConfig  the training loop (`training.nn.config`)
      .score          ScoreConfig  the anomaly score and its threshold
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, NamedTuple

from training.nn.config import NN_KINDS, NetConfig, TrainConfig

PCA_KINDS = ("pca", "sklearn-pca", "incremental-pca", "kernel-pca")
KINDS = (*PCA_KINDS, *NN_KINDS)  # every model kind `fit` trains (networks need torch)
MODELS_DIR = Path("models")  # the registry root when none is given


@dataclass(frozen=True)
class DataConfig:
    """The rows a model trains on: which data set, which classes, and the held-out shares."""

    dataset: str  # embedded name (digits, breast-cancer, gaussian-2d), mnist / fashion-mnist, or a path
    data_dir: Path | None = None  # where IDX files live (None: $LATENTSERVE_DATA_DIR or the user cache)
    classes: tuple[int, ...] | None = None  # keep only these labels (one-class training)
    columns: tuple[str, ...] | None = None  # .csv / .parquet: the feature columns, by name (None: all)
    drop_columns: tuple[str, ...] = ()  # .csv / .parquet: columns left out of the features
    label_column: str | None = None  # .csv / .parquet: the integer labels (--classes, evaluate)
    download: bool = True  # fetch missing mnist / fashion-mnist files
    mmap: bool = False  # memory-map a .npy file (its rows stream through incremental-pca)
    validation: float = 0.15  # share of rows held out for validation
    calibration: float = 0.15  # share of rows held out for threshold calibration


@dataclass(frozen=True)
class PCAConfig:
    """Hyper-parameters of the PCA family."""

    DEFAULT_SHARE: ClassVar[float] = 0.95  # n_components when neither it nor latent_dim is given
    DEFAULT_KERNEL_K: ClassVar[int] = 16  # kernel-pca's n_components then (it needs an integer k)

    n_components: float | None = None  # int k, or a variance share in (0, 1); None: see components()
    min_components: int = 1  # pca / incremental-pca with a variance share: keep at least this many
    solver: Literal["full", "randomized"] = "full"  # sklearn-pca: full | randomized
    batch_size: int = 1024  # incremental-pca: rows per partial_fit
    kernel: str = "rbf"  # kernel-pca: rbf | poly | sigmoid | cosine | linear
    gamma: float | None = None  # kernel-pca: kernel coefficient (None: 1 / n_features)
    alpha: float = 1e-3  # kernel-pca: ridge of the learned inverse transform
    max_rows: int = 3000  # kernel-pca: at most this many training rows (the kernel is n x n)
    scale_floor: float = 0.0  # linear kinds, standardising: floor each std at this quantile of the stds

    def components(self, kind: str, latent_dim: int | None) -> float:
        """n_components, else latent_dim, else DEFAULT_SHARE (kernel-pca: DEFAULT_KERNEL_K)."""
        if self.n_components is not None:
            return self.n_components
        default = self.DEFAULT_KERNEL_K if kind == "kernel-pca" else self.DEFAULT_SHARE
        return latent_dim or default


@dataclass(frozen=True)
class ScoreConfig:
    """The per-row anomaly score (docs/score.md) and the threshold calibrated on it."""

    reduction: str = "mean"  # mean | topk of the squared (scaled) errors
    topk: int | None = None  # with reduction=topk: how many of the largest errors
    pool: int | None = None  # images: average the error over P x P windows (odd P) before squaring
    relative: bool = False  # divide the score by the variance of the row's input (its contrast)
    neighbors: int = 0  # PCA family: add the code's mean squared distance to its K nearest training codes
    reference_rows: int = 4096  # with neighbors: keep the codes of at most this many training rows
    balance: bool = False  # with neighbors: weight that term so both parts have one mean on validation rows
    detail: float | None = None  # add the detail term: further directions up to this variance share
    detail_weight: float = 0.5  # with detail: its weight, each part divided by its 99% validation quantile
    rotation: float | None = None  # images: add the rotation term at this weight (parts / their 99% quantile)
    rotation_epochs: int = 4  # with rotation: epochs of its network (an epoch: every training row's 4 turns)
    rotation_size: int = 14  # with rotation: images averaged by the largest whole factor keeping this side
    quantile: float = 0.99  # the threshold: this quantile of the calibration rows' scores


@dataclass(frozen=True)
class FitConfig:
    """What `training.fit` trains: the kind, what every kind shares, and one section per part.

    A network's kind, latent_dim, standardize and layout come from this object and the data, its
    seed and device from `seed` and `device`: those fields of `net` and `train` are not read.
    """

    kind: str  # one of KINDS: pca, sklearn-pca, incremental-pca, kernel-pca, dense, linear, conv, ...
    seed: int = TrainConfig.seed  # seeds the split, the initialisation and the shuffling
    device: str = TrainConfig.device  # auto | cpu | cuda
    standardize: bool | None = None  # None: standardise feature data, leave images in [0, 1]
    latent_dim: int | None = None  # code size; None: PCA see PCAConfig.components, nets min(30, d // 2)
    pca: PCAConfig = field(default_factory=PCAConfig)
    net: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    preset: str | None = None  # the preset these settings started from (recorded in the manifest)


class Default(NamedTuple):
    """One model `training.bootstrap` trains into an empty registry."""

    name: str  # its registry name
    config: FitConfig
    data: DataConfig
