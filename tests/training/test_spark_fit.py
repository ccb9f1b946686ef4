"""PCA fitted on a Spark DataFrame (one distributed pass, never collecting the rows) equals PCA fitted
in memory on the same rows (real Spark local[2], a 512 MB driver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import OnnxRuntime
from training import fit
from training.config import FitConfig, PCAConfig, ScoreConfig
from training.errors import DataError, UsageError
from training.pca import PCA
from training.spark_fit import SPLIT_COLUMN, uniform

pytest.importorskip("pyspark")


@pytest.fixture(scope="module")
def rows() -> Any:
    """4000 correlated rows of 12 features, one far from zero (a covariance by raw sums would lose
    precision there; the served float32 graph keeps about 1e-6 of 50)."""
    import pandas as pd

    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 5)) @ rng.normal(size=(5, 12)) + rng.normal(scale=0.1, size=(4000, 12))
    X[:, 0] += 50.0
    return pd.DataFrame(X.astype(np.float32), columns=[f"f{i}" for i in range(12)])


@pytest.mark.parametrize("standardize", [True, False])
def test_a_spark_fitted_pca_equals_the_in_memory_fit_on_the_same_rows(
    spark: Any, rows: Any, tmp_path: Path, standardize: bool
) -> None:
    from pyspark.sql import functions as F

    df = spark.createDataFrame(rows).repartition(4)
    cfg = FitConfig(
        "pca", pca=PCAConfig(n_components=4), standardize=standardize, score=ScoreConfig(neighbors=3)
    )
    folder = fit(cfg, df, name="spark-pca", models_dir=tmp_path)
    m = Manifest.read(folder)
    assert m.input.feature_names == list(rows.columns)
    # the same rows, by the same seeded split, fitted in memory
    u = uniform(list(rows.columns), cfg.seed)
    marked = df.select(*[F.col(c).cast("float") for c in df.columns]).withColumn(SPLIT_COLUMN, u)
    train = marked.filter(F.col(SPLIT_COLUMN) >= 0.3).drop(SPLIT_COLUMN).collect()
    X_train = np.asarray([list(r) for r in train], dtype=np.float32)
    assert m.hyperparameters["spark_rows_train"] == len(X_train)
    ref = PCA(4, standardize=standardize, device="cpu", score=cfg.score, seed=cfg.seed).fit(X_train)
    rt = OnnxRuntime.load(m, folder)
    X = rows.to_numpy(np.float32)[:500]
    Z = rt.encode(X)
    Z_ref = ref.encode(X)
    signs = np.sign((Z * Z_ref).sum(axis=0))  # components are equal up to sign
    np.testing.assert_allclose(Z * signs, Z_ref, rtol=1e-4, atol=1e-3 * np.abs(Z_ref).max())
    (scores,) = rt.compute("scores", rt.check_inputs(X))
    ref_scores = ref.score_samples(X)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4)


def test_moments_match_numpy_and_other_kinds_are_refused(spark: Any, rows: Any, tmp_path: Path) -> None:
    from training.spark_fit import moments

    rows = rows.copy()
    rows["f1"] += np.float32(1e5)  # merged pairwise from centred partials: no cancellation

    df = (
        spark.createDataFrame(rows)
        .repartition(3)
        .withColumn(SPLIT_COLUMN, __import__("pyspark").sql.functions.lit(0))
    )
    n, mean, m2, counts = moments(df, list(rows.columns))
    X = rows.to_numpy(np.float64)
    assert n == len(X) and counts == {0: len(X), 1: 0, 2: 0}
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m2, (X - X.mean(0)).T @ (X - X.mean(0)), rtol=1e-9, atol=1e-6)
    with pytest.raises(UsageError, match="kind 'pca'"):
        fit("sklearn-pca", spark.createDataFrame(rows), name="x", models_dir=tmp_path)


def test_a_text_column_or_a_null_is_a_data_error_naming_it(spark: Any, rows: Any, tmp_path: Path) -> None:
    bad = rows.copy()
    bad["label"] = "a"
    with pytest.raises(DataError, match="column 'label' is string"):
        fit("pca", spark.createDataFrame(bad), name="x", models_dir=tmp_path)
    holed = rows.copy()
    holed.loc[10, "f3"] = np.nan
    with pytest.raises(Exception, match="column 'f3' holds a null, NaN or infinite value"):
        fit("pca", spark.createDataFrame(holed), name="x", models_dir=tmp_path)


def test_the_cli_fits_a_parquet_glob_on_spark(spark: Any, rows: Any, tmp_path: Path) -> None:
    from training.cli import main

    spark.createDataFrame(rows).repartition(2).write.parquet(str(tmp_path / "table"))
    argv = ["fit", "--model", "pca", "--n-components", "3", "--name", "cli-spark", "--models-dir"]
    assert (
        main(
            [
                *argv,
                str(tmp_path / "models"),
                "--dataset",
                str(tmp_path / "table" / "*.parquet"),
                "--spark",
                "local[2]",
            ]
        )
        == 0
    )
    m = Manifest.read(tmp_path / "models" / "cli-spark" / "1")
    assert m.latent_dim == 3 and m.input.feature_names == list(rows.columns)
    assert (
        main(
            [
                *argv,
                str(tmp_path / "models"),
                "--dataset",
                str(tmp_path / "none-*.parquet"),
                "--spark",
                "local[2]",
            ]
        )
        == 2
    )


def test_the_cli_without_a_model_fits_the_feature_row_default_and_refuses_table_flags(
    spark: Any, rows: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --model / --preset with --spark: the feature-row default, without reading the rows on
    the driver (a glob is no file to load); column and class flags cannot apply there: exit 2."""
    from training.cli import main

    spark.createDataFrame(rows).repartition(2).write.parquet(str(tmp_path / "table"))
    base = ["fit", "--name", "dflt", "--models-dir", str(tmp_path / "models"), "--spark", "local[2]"]
    glob = ["--dataset", str(tmp_path / "table" / "*.parquet")]
    assert main([*base, *glob]) == 0
    m = Manifest.read(tmp_path / "models" / "dflt" / "1")
    assert m.hyperparameters["preset"] == "features"
    assert m.score.neighbors is not None and m.score.neighbors.weight is not None  # balanced, as in memory
    capsys.readouterr()
    assert main([*base, *glob, "--classes", "1"]) == 2
    assert "--classes: --spark fits every numeric column" in capsys.readouterr().err


def test_the_api_refuses_what_a_spark_fit_cannot_apply_before_any_job(
    spark: Any, rows: Any, tmp_path: Path
) -> None:
    df = spark.createDataFrame(rows)
    with pytest.raises(UsageError, match="y / classes: a Spark DataFrame is fitted on all its rows"):
        fit(None, df, name="x", models_dir=tmp_path, classes=(1,))
    with pytest.raises(UsageError, match="--quantile must be in"):
        fit("pca", df, name="x", models_dir=tmp_path, score=ScoreConfig(quantile=1.5))
    assert not (tmp_path / "x").exists()


def test_constant_moments_are_refused_as_constant_rows_are() -> None:
    with pytest.raises(DataError, match="constant"):
        PCA(0.99, standardize=True).fit(np.ones((10, 3), dtype=np.float32))
    with pytest.raises(DataError, match="constant"):
        PCA(0.99, standardize=True).fit_moments(
            10, np.ones(3), np.zeros((3, 3)), np.ones((10, 3), np.float32)
        )
