"""Fitting PCA on a Spark DataFrame, where the rows live: `training.fit(config, spark_df, ...)`.

One distributed pass computes, per partition, the count, mean and centred outer-product sum of the
training rows in float64, merged pairwise (Chan et al.) by `treeAggregate`: the driver holds d x d
numbers, never rows. Then the same standardisation and eigen-decomposition as the in-memory fit
(`PCA.fit_moments`), and the same export: metrics, the calibration threshold and the neighbours
reference come from seeded samples of at most SAMPLE_ROWS rows of each split; the same atomic
publish. Rows go to train / validation / calibration by a seeded hash of their values (`uniform`)
against DataConfig's shares.
Executors need numpy and pandas only (the functions they run are shipped by value).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from latentserve_core.manifest import is_valid_name
from training.base import score_spec
from training.config import DataConfig, FitConfig
from training.data import Dataset, Splits
from training.errors import DataError, UsageError
from training.export import TrainingRun, export_pca_family
from training.pca import PCA
from training.publish import check_writable

SAMPLE_ROWS = 20_000  # the most rows of each split brought to the driver (metrics, threshold, reference)
SPLIT_COLUMN = "__latentserve_split"  # 0 train, 1 validation, 2 calibration


def read_parquet(master: str, path: str) -> Any:
    """The DataFrame of a Parquet path or glob, read by a SparkSession on `master` (`fit --spark`)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master(master).appName("latentserve-fit").getOrCreate()
    try:
        return spark.read.parquet(path)
    except AnalysisException as exc:
        raise DataError(
            f"--dataset {path!r}: Spark cannot read it as Parquet: {str(exc).splitlines()[0]}"
        ) from None


def is_spark_dataframe(data: object) -> bool:
    return type(data).__module__.startswith("pyspark.sql") and hasattr(data, "sparkSession")


def fit_spark(cfg: FitConfig, df: Any, models_dir: Path, name: str, data: DataConfig | None = None) -> Path:
    """Fit cfg (kind pca) on every numeric column of `df` and publish it; return its folder."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    if cfg.kind != "pca":
        raise UsageError(
            f"a Spark DataFrame fits kind 'pca' (its covariance is computed in one distributed pass); "
            f"got {cfg.kind!r}: fit it in memory, or use --model pca"
        )
    if not is_valid_name(name):
        raise UsageError(f"{name!r} is not a valid model name")
    wrong = [f.name for f in df.schema.fields if not isinstance(f.dataType, NumericType)]
    if wrong:
        raise DataError(
            f"column {wrong[0]!r} is {df.schema[wrong[0]].dataType.simpleString()}, expected a number"
        )
    features = list(df.columns)
    d = len(features)
    k = cfg.pca.components(cfg.kind, cfg.latent_dim)
    if float(k) >= 1 and k > d:
        raise UsageError(f"--n-components {k} is larger than the input size {d}")
    models_dir = Path(models_dir)
    check_writable(models_dir)
    shares = data or DataConfig("spark")
    u = uniform(features, cfg.seed)
    hold = shares.validation + shares.calibration
    split = F.when(u < shares.calibration, 2).when(u < hold, 1).otherwise(0)
    rows = df.select(*[F.col(c).cast("float") for c in features]).withColumn(SPLIT_COLUMN, split)

    score_spec((d,), "features", cfg.score)  # a bad score setting fails before the pass
    if cfg.score.rotation is not None:
        raise UsageError("--score-rotation needs image rows; a Spark fit trains on feature columns")
    n, mean, m2, counts = moments(rows, features)
    samples = [_sample(rows, part, counts[part], features, cfg.seed) for part in (0, 1, 2)]
    if len(samples[1]) == 0 or len(samples[2]) == 0:
        raise DataError(
            f"{n + counts[1] + counts[2]} rows are too few to hold out validation and calibration rows"
        )
    # the neighbors term's reference codes from the training sample, its weight from the validation's
    est = _estimator(cfg, k).fit_moments(n, mean, m2, samples[0], samples[1])
    dataset = Dataset("spark", samples[0], None, "features", source="spark", feature_names=tuple(features))
    run = TrainingRun(
        dataset=dataset,
        splits=Splits(samples[0], samples[1], samples[2], None, None, None),
        seed=cfg.seed,
        quantile=cfg.score.quantile,
        hyperparameters={
            **({"preset": cfg.preset} if cfg.preset else {}),
            "spark_rows_train": n,
            "spark_rows_validation": counts[1],
            "spark_rows_calibration": counts[2],
        },
    )
    return export_pca_family(est, run, models_dir, name)


def _estimator(cfg: FitConfig, k: float) -> PCA:
    """The unfitted PCA of cfg, with k components, for feature rows (standardised by default)."""
    std = cfg.standardize if cfg.standardize is not None else True
    pca = cfg.pca
    return PCA(
        k,
        min_components=pca.min_components,
        standardize=std,
        scale_floor=pca.scale_floor,
        score=cfg.score,
        layout="features",
        seed=cfg.seed,
    )


def uniform(features: list[str], seed: int) -> Any:
    """A number in [0, 1) per row, from a seeded hash of its values: the same for a row in every
    job, whatever the partitioning (rand() is not, after a shuffle)."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(F.lit(seed), *[F.col(c).cast("float") for c in features]), 1 << 30) / float(
        1 << 30
    )


def moments(rows: Any, features: list[str]) -> tuple[int, Any, Any, dict[int, int]]:
    """(n, mean (d,), m2 (d, d)) of the training rows, and every split's row count, in one pass."""
    d = len(features)

    def _merge(a: tuple[int, Any, Any], b: tuple[int, Any, Any]) -> tuple[int, Any, Any]:
        """Two (n, mean, m2) into one: Chan, Golub and LeVeque's pairwise update."""
        n_a, mean_a, m2_a = a
        n_b, mean_b, m2_b = b
        if n_a == 0:
            return n_b, mean_b, m2_b
        if n_b == 0:
            return a
        n = n_a + n_b
        delta = mean_b - mean_a
        return n, mean_a + delta * (n_b / n), m2_a + m2_b + np.outer(delta, delta) * (n_a * n_b / n)

    def partial(batches: Iterator[Any]) -> Iterator[Any]:
        import numpy as np
        import pandas as pd

        n, mean, m2 = 0, np.zeros(d), np.zeros((d, d))
        counts = [0, 0, 0]
        for b in batches:
            part = b[SPLIT_COLUMN].to_numpy()
            for p in (0, 1, 2):
                counts[p] += int((part == p).sum())
            X = b.loc[part == 0, features].to_numpy(dtype=np.float64, na_value=np.nan)
            if len(X) == 0:
                continue
            if not np.isfinite(X).all():
                j = int(np.argmin(np.isfinite(X).all(axis=0)))
                raise ValueError(f"column {features[j]!r} holds a null, NaN or infinite value")
            n_b, mean_b = len(X), X.mean(axis=0)
            Xc = X - mean_b
            n, mean, m2 = _merge((n, mean, m2), (n_b, mean_b, Xc.T @ Xc))
        yield pd.DataFrame(
            {"n": [n], "mean": [mean.tolist()], "m2": [m2.ravel().tolist()], "counts": [counts]}
        )

    schema = "n long, mean array<double>, m2 array<double>, counts array<long>"
    partials = rows.mapInPandas(partial, schema).rdd.map(
        lambda r: (int(r.n), np.asarray(r.mean), np.asarray(r.m2).reshape(d, d), np.asarray(r.counts))
    )
    zero = (0, np.zeros(d), np.zeros((d, d)), np.zeros(3, dtype=np.int64))

    def merge(a: Any, b: Any) -> Any:
        return (*_merge(a[:3], b[:3]), a[3] + b[3])

    n, mean, m2, counts = partials.treeAggregate(zero, merge, merge, depth=2)
    return n, mean, m2, {p: int(c) for p, c in enumerate(counts)}


def _sample(rows: Any, part: int, count: int, features: list[str], seed: int) -> Any:
    """At most SAMPLE_ROWS rows of one split, a seeded sample, as float32 (n, d)."""
    chosen = rows.filter(rows[SPLIT_COLUMN] == part).select(*features)
    if count > SAMPLE_ROWS:
        chosen = chosen.sample(fraction=min(1.0, 1.2 * SAMPLE_ROWS / count), seed=seed).limit(SAMPLE_ROWS)
    X = np.asarray([list(r) for r in chosen.collect()], dtype=np.float32).reshape(-1, len(features))
    return X
