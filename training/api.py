"""The Python API: `fit` trains one model and publishes it as a new version; `bootstrap` the defaults.

    from training import DataConfig, FitConfig, PCAConfig, ScoreConfig, fit

    config = FitConfig("pca", pca=PCAConfig(n_components=16), score=ScoreConfig(pool=3))
    folder = fit(config, DataConfig("digits", classes=(3,)), name="digits-3", models_dir="models")

`fit` checks every setting before it trains (those that need no rows before it loads them), and
that the registry is writable. A setting that cannot apply raises `UsageError`, unreadable data
`DataError`, a failed verification `ExportError` (`training.errors`); nothing is published then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from latentserve_core.layout import model_names
from latentserve_core.manifest import MAX_REFERENCE_ROWS, is_valid_name
from training.base import check_detail, check_weight
from training.config import MODELS_DIR, PCA_KINDS, DataConfig, Default, FitConfig, PCAConfig, ScoreConfig
from training.data import (
    Dataset,
    Splits,
    check_matrix,
    dataset_from_array,
    filter_classes,
    load_dataset,
    split,
)
from training.errors import UsageError
from training.export import TrainingRun, export_pca_family
from training.nn.config import NN_KINDS
from training.pca import PCA, IncrementalPCA, KernelPCA, PCAFamily, SklearnPCA
from training.presets import default_config
from training.publish import check_writable
from training.spark_fit import fit_spark, is_spark_dataframe

log = logging.getLogger("latentserve.training")

# kind -> function(config, run, models_dir, name) -> the published version folder
Fitter = Callable[[FitConfig, TrainingRun, Path, str], Path]


def fit(
    config: FitConfig | str | None,
    data: DataConfig | str | Path | object,
    *,
    name: str,
    models_dir: Path | str = MODELS_DIR,
    y: object = None,
    classes: tuple[int, ...] | None = None,
    **settings: Any,
) -> Path:
    """Train a model on `data` and publish it as the next version of `name`; return its folder.

    config: a FitConfig, a preset's (`training.presets.preset(NAME)`), just the kind ("pca"), or
    None: the default for the data's layout (`training.presets.default_config`), once it is loaded;
    settings: FitConfig fields that replace the config's, e.g. seed=1 or score=ScoreConfig(...);
    data: a DataConfig, a data set name or path (all rows, the default splits), rows in memory
    (`training.data.dataset_from_array`: a numpy array or a pandas DataFrame), with labels `y`, or
    a Spark DataFrame of numeric columns (kind pca; `training.spark_fit`);
    classes: keep only the rows of these labels (a DataConfig's own `classes` otherwise).
    """
    models_dir = Path(models_dir)
    if is_spark_dataframe(data):  # fitted where the rows live: one distributed pass (training.spark_fit)
        if y is not None or classes is not None:
            raise UsageError(
                "y / classes: a Spark DataFrame is fitted on all its rows; filter it first "
                "(df.where(...)) and select the feature columns (df.select(...))"
            )
        spark_config = default_config("features") if config is None else config  # Spark rows are tables
        cfg = _settled(spark_config, settings)
        _fitter(cfg, DataConfig("spark"), name)  # every setting that needs no rows, as below
        return fit_spark(cfg, data, models_dir, name)
    dataset: Dataset | None = None  # rows already loaded (in memory, or to learn their layout)
    if isinstance(data, DataConfig):
        rows = data
    elif isinstance(data, (str, Path)):
        rows = DataConfig(str(data))
    else:
        dataset = dataset_from_array(data, y)
        rows = DataConfig(dataset.name)
    if y is not None and dataset is None:
        raise UsageError("y: labels go with rows in memory; a data set or file brings its own labels")
    if classes is not None:
        rows = replace(rows, classes=tuple(classes))
    if config is None:  # the layout's default: known once the rows are loaded
        probe = _settled(FitConfig("pca"), settings)  # the name and the settings every kind shares
        _fitter(probe, rows, name)
        check_writable(models_dir)
        if dataset is None:
            dataset = _load(probe.seed, rows)
        config = default_config(dataset.layout)
    cfg = _settled(config, settings)
    fitter = _fitter(cfg, rows, name)
    check_writable(models_dir)  # before the training, not after it
    return fitter(cfg, load_rows(cfg, rows, dataset), models_dir, name)


def _settled(config: FitConfig | str, settings: dict[str, Any]) -> FitConfig:
    """config (or the kind it names) with `settings` replacing its fields."""
    return FitConfig(config, **settings) if isinstance(config, str) else replace(config, **settings)


def default_for(data: DataConfig, seed: int = FitConfig.seed) -> FitConfig:
    """The settings `fit(None, data)` trains with: the default of the data's layout."""
    return default_config(_load(seed, data).layout)


def _load(seed: int, data: DataConfig) -> Dataset:
    return load_dataset(
        data.dataset,
        data_dir=data.data_dir,
        seed=seed,
        download=data.download,
        mmap=data.mmap,
        columns=data.columns,
        drop_columns=data.drop_columns,
        label_column=data.label_column,
    )


def _fitter(cfg: FitConfig, data: DataConfig, name: str) -> Fitter:
    """The fitter of cfg.kind, once every setting that needs no data has been checked."""
    if not is_valid_name(name):
        raise UsageError(
            f"{name!r} is not a valid model name: 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    sizes = {"epochs": cfg.train.epochs, "batch_size": min(cfg.train.batch_size, cfg.pca.batch_size)}
    for flag, value in {**sizes, "patience": cfg.train.patience}.items():  # shared by every kind
        if value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if not 0.0 < cfg.score.quantile < 1.0:
        raise UsageError(f"--quantile must be in (0, 1), got {cfg.score.quantile}")
    if data.mmap and cfg.kind != "incremental-pca":
        raise UsageError(
            f"--mmap streams rows through --model incremental-pca only; --model {cfg.kind} reads "
            "the whole file: drop --mmap"
        )
    kinds = fitters()
    if cfg.kind not in kinds:
        raise UsageError(f"--model: unknown kind {cfg.kind!r}; expected one of {sorted(kinds)}")
    k, rows = cfg.score.neighbors, cfg.score.reference_rows
    if k < 0:
        raise UsageError(f"--score-neighbors must be >= 0 (0: off), got {k}")
    if k and cfg.kind not in PCA_KINDS:
        raise UsageError(
            f"--score-neighbors: --model {cfg.kind} keeps no reference codes; the PCA family "
            f"({', '.join(PCA_KINDS)}) does"
        )
    if not 1 <= rows <= MAX_REFERENCE_ROWS:
        raise UsageError(f"--score-reference-rows must be in [1, {MAX_REFERENCE_ROWS}], got {rows}")
    if cfg.pca.min_components < 1:
        raise UsageError(f"--min-components must be >= 1, got {cfg.pca.min_components}")
    if cfg.score.detail is not None:
        if cfg.kind not in PCA_KINDS:
            raise UsageError(f"--score-detail: --model {cfg.kind} has no detail term; the PCA family does")
        check_detail(cfg.score.detail, cfg.score.detail_weight)
    if cfg.score.rotation is not None:
        if cfg.kind not in PCA_KINDS:
            raise UsageError(f"--score-rotation: --model {cfg.kind} has no rotation term; the PCA family has")
        check_weight("--score-rotation", cfg.score.rotation)
    if cfg.score.balance and not k:
        raise UsageError("--score-balance weighs the neighbors term: give --score-neighbors K too")
    floor = cfg.pca.scale_floor
    if not 0.0 <= floor < 1.0:
        raise UsageError(f"--scale-floor must be a quantile in [0, 1), got {floor}")
    if floor and cfg.kind not in LINEAR_KINDS:
        raise UsageError(f"--scale-floor applies to the linear PCA kinds ({', '.join(LINEAR_KINDS)})")
    return kinds[cfg.kind]


def load_rows(cfg: FitConfig, data: DataConfig, dataset: Dataset | None = None) -> TrainingRun:
    """Load `data` (unless it is given, already loaded), keep its classes and split it (a
    memory-mapped file by position: the tail is validation and calibration); the run also records
    the seed, the quantile and the preset."""
    ds = dataset if dataset is not None else _load(cfg.seed, data)
    classes = list(data.classes) if data.classes else None
    X, y = filter_classes(ds, classes)
    if isinstance(X, np.memmap):
        n = len(X)
        n_hold = max(2, round(n * (data.validation + data.calibration)))
        tail = check_matrix(np.asarray(X[n - n_hold :]), Path(data.dataset), row_offset=n - n_hold)
        half = n_hold // 2
        splits = Splits(X[: n - n_hold], tail[:half], tail[half:], None, None, None)  # type: ignore[arg-type]
    else:
        splits = split(X, y, seed=cfg.seed, validation=data.validation, calibration=data.calibration)
    return TrainingRun(
        dataset=ds,
        splits=splits,
        seed=cfg.seed,
        classes=classes,
        quantile=cfg.score.quantile,
        hyperparameters={"preset": cfg.preset} if cfg.preset else {},
    )


def _fit_pca(cfg: FitConfig, run: TrainingRun, models_dir: Path, name: str) -> Path:
    ds = run.dataset
    k = cfg.pca.components(cfg.kind, cfg.latent_dim)
    d = int(np.prod(ds.row_shape))
    if float(k) >= 1 and k > d:
        raise UsageError(f"--n-components {k} is larger than the input size {d}")
    std = cfg.standardize if cfg.standardize is not None else ds.layout == "features"
    est = pca_estimator(
        cfg.kind,
        replace(cfg.pca, n_components=k),
        standardize=std,
        seed=cfg.seed,
        device=cfg.device,
        score=cfg.score,
        layout=ds.layout,
    )
    est.fit(run.splits.X_train, run.splits.X_val)  # checks the score settings before it trains
    return export_pca_family(est, run, models_dir, name)


def pca_estimator(
    kind: str, pca: PCAConfig, *, standardize: bool, seed: int, device: str, score: ScoreConfig, layout: str
) -> PCAFamily:
    """The unfitted PCA-family estimator of `kind` (pca.n_components set), scored as `score` says
    on rows of `layout`."""
    k = pca.components(kind, None)
    floor = pca.scale_floor
    if kind == "pca":
        return PCA(
            k,
            min_components=pca.min_components,
            standardize=standardize,
            scale_floor=floor,
            device=device,
            seed=seed,
            score=score,
            layout=layout,
        )
    if kind != "incremental-pca" and pca.min_components != 1:
        raise UsageError(
            f"--min-components applies to --model pca and incremental-pca; --model {kind} takes "
            "--n-components only"
        )
    if kind == "sklearn-pca":
        return SklearnPCA(
            k,
            solver=pca.solver,
            standardize=standardize,
            scale_floor=floor,
            seed=seed,
            score=score,
            layout=layout,
            device=device,
        )
    if kind == "incremental-pca":
        return IncrementalPCA(
            k,
            batch_size=pca.batch_size,
            min_components=pca.min_components,
            standardize=standardize,
            scale_floor=floor,
            seed=seed,
            score=score,
            layout=layout,
            device=device,
        )
    return KernelPCA(
        int(k),
        kernel=pca.kernel,
        gamma=pca.gamma,
        alpha=pca.alpha,
        standardize=standardize,
        max_rows=pca.max_rows,
        seed=seed,
        score=score,
        layout=layout,
        device=device,
    )


FITTERS: dict[str, Fitter] = dict.fromkeys(PCA_KINDS, _fit_pca)
LINEAR_KINDS = ("pca", "sklearn-pca", "incremental-pca")  # those --scale-floor applies to


def fitters() -> dict[str, Fitter]:
    """Every kind `fit` trains: the PCA family, plus the networks when torch is importable."""
    try:
        from training.nn.fit import fit_network
    except ImportError as exc:
        if "torch" not in str(exc) and "training.nn" not in str(exc):
            raise
        return dict(FITTERS)
    return {**FITTERS, **dict.fromkeys(NN_KINDS, fit_network)}


DEFAULT_MODELS: list[Default] = [
    Default("digits-pca", FitConfig("pca", pca=PCAConfig(n_components=0.95)), DataConfig("digits")),
    Default(
        "digits-sklearn-pca", FitConfig("sklearn-pca", pca=PCAConfig(n_components=16)), DataConfig("digits")
    ),
    Default(
        "digits-randomized-pca",
        FitConfig("sklearn-pca", pca=PCAConfig(n_components=16, solver="randomized")),
        DataConfig("digits"),
    ),
    Default(
        "digits-incremental-pca",
        FitConfig("incremental-pca", pca=PCAConfig(n_components=16)),
        DataConfig("digits"),
    ),
    Default(
        "digits-kernel-pca", FitConfig("kernel-pca", pca=PCAConfig(n_components=16)), DataConfig("digits")
    ),
    # one-class, as a user would train it: the benign rows (label 1) with the feature-row default
    Default("breast-cancer-pca", default_config("features"), DataConfig("breast-cancer", classes=(1,))),
    Default(
        "breast-cancer-sklearn-pca",
        FitConfig("sklearn-pca", pca=PCAConfig(n_components=10)),
        DataConfig("breast-cancer"),
    ),
    Default(
        "breast-cancer-incremental-pca",
        FitConfig("incremental-pca", pca=PCAConfig(n_components=10)),
        DataConfig("breast-cancer"),
    ),
    Default(
        "breast-cancer-kernel-pca",
        FitConfig("kernel-pca", pca=PCAConfig(n_components=10)),
        DataConfig("breast-cancer"),
    ),
]


def default_models() -> list[Default]:
    """The PCA defaults, plus the network defaults when torch is installed."""
    try:
        from training.nn.fit import DEFAULT_NETWORKS
    except ImportError:
        return list(DEFAULT_MODELS)
    return [*DEFAULT_MODELS, *DEFAULT_NETWORKS]


def bootstrap(
    models_dir: Path | str = MODELS_DIR,
    *,
    force: bool = False,
    published: Callable[[Path], Any] | None = None,
) -> list[Path]:
    """Train `default_models()` when the registry holds no model (or with `force`); return their
    folders, each also handed to `published` as it appears."""
    models_dir = Path(models_dir)
    if model_names(models_dir) and not force:
        return []
    folders = []
    for default in default_models():
        folders.append(fit(default.config, default.data, name=default.name, models_dir=models_dir))
        if published is not None:
            published(folders[-1])
    return folders
