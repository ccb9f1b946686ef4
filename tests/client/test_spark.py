"""Scoring a Spark DataFrame gives the service's own answers, row for row (real Spark, real models)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentserve_core.errors import IntegrityError, InvalidInput
from latentserve_core.manifest import Manifest
from service.app import create_app
from service.settings import Settings
from training import fit
from training.config import FitConfig
from training.nn.config import NetConfig, TrainConfig
from training.presets import preset

pytest.importorskip("pyspark")
pytest.importorskip("pandas")
from latentserve_client.spark import load_model, score

OUTS = ("score", "p_value", "is_anomaly")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cancer-tabular (the tabular preset), cancer-dense (a dense AE), digits-conv (an image model)."""
    root = tmp_path_factory.mktemp("spark-registry")
    fit(preset("tabular"), "breast-cancer", name="cancer-tabular", models_dir=root)
    tiny = {"net": NetConfig(hidden=(16,)), "train": TrainConfig(epochs=2), "latent_dim": 4}
    fit(FitConfig("dense", **tiny), "breast-cancer", name="cancer-dense", models_dir=root)  # type: ignore[arg-type]
    fit(FitConfig("conv", **tiny), "digits", name="digits-conv", models_dir=root)  # type: ignore[arg-type]
    return root


@pytest.fixture(scope="module")
def api(registry: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=registry, reload_interval_s=0))) as client:
        while client.get("/health/ready").status_code != 200:
            pass
        yield client


@pytest.fixture(scope="module")
def cancer() -> Any:
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    frame = pd.DataFrame(bc.data[:300], columns=[str(c) for c in bc.feature_names])
    frame.insert(0, "id", np.arange(300))
    return frame


def _service_answer(api: TestClient, model: str, rows: np.ndarray) -> dict[str, Any]:
    r = api.post("/anomaly-score", json={"model": model, "inputs": rows.tolist()})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def assert_same_answers(got: Any, want: dict[str, Any], manifest: Manifest) -> None:
    """Scores within rtol 1e-5 of the service's; p-values and flags equal, except for a score within
    that tolerance of a calibration score or of the threshold (scoring the calibration rows
    themselves, in batches of another size, may move the last bit to either side of it)."""
    scores = np.asarray(want["scores"], dtype=np.float64)
    np.testing.assert_allclose(got["score"], scores, rtol=1e-5)
    calibration = np.asarray(manifest.threshold.calibration_scores, dtype=np.float64)
    near = np.abs(scores[:, None] - calibration[None, :]) <= 1e-5 * np.abs(scores[:, None])
    tie = near.any(axis=1)
    assert tie.mean() < 0.5, "most rows must be clear of a calibration score for this test to mean much"
    np.testing.assert_allclose(got["p_value"][~tie], np.asarray(want["p_values"])[~tie], rtol=1e-5)
    step = 1.0 / (len(calibration) + 1)
    assert np.all(
        np.abs(got["p_value"][tie] - np.asarray(want["p_values"])[tie]) <= step * near.sum(1)[tie] + 1e-6
    )
    t = manifest.threshold.value
    clear = np.abs(scores - t) > 1e-5 * t
    assert got["is_anomaly"][clear].tolist() == np.asarray(want["is_anomaly"])[clear].tolist()


def _collect(df: Any, order: str = "id") -> Any:
    """The rows as a pandas frame, through collect() (pyspark 4's toPandas trips on pandas 3's
    deprecations, which the test settings make errors)."""
    import pandas as pd

    rows = df.orderBy(order).collect()
    return pd.DataFrame([r.asDict() for r in rows], columns=df.columns)


@pytest.mark.parametrize("model", ["cancer-tabular", "cancer-dense"])
def test_feature_models_score_as_the_service_does(
    spark: Any, api: TestClient, registry: Path, cancer: Any, model: str
) -> None:
    df = spark.createDataFrame(cancer).repartition(3)
    got = _collect(score(df, model, registry=registry))
    features = cancer.drop(columns="id").to_numpy(np.float32)
    want = _service_answer(api, model, features)
    assert_same_answers(got, want, Manifest.read(registry / model / "1"))
    assert list(got.columns) == [*cancer.columns, *OUTS]  # df's own columns stay, in their order


def test_alpha_flags_as_the_service_does_and_is_checked_before_any_job(
    spark: Any, api: TestClient, registry: Path, cancer: Any
) -> None:
    df = spark.createDataFrame(cancer)
    got = _collect(score(df, "cancer-tabular", registry=registry, alpha=0.2))
    features = cancer.drop(columns="id").to_numpy(np.float32)
    r = api.post(
        "/anomaly-score", json={"model": "cancer-tabular", "inputs": features.tolist(), "alpha": 0.2}
    )
    want = r.json()
    assert want["rule"] == "alpha"
    np.testing.assert_allclose(got["score"], want["scores"], rtol=1e-5)
    assert got["is_anomaly"].tolist() == (got["p_value"] <= 0.2).tolist()
    p = np.asarray(want["p_values"])
    clear = np.abs(p - 0.2) > 1e-6  # a p-value on the cut moves with the last bit of the score
    assert got["is_anomaly"][clear].tolist() == np.asarray(want["is_anomaly"])[clear].tolist()
    for bad in (0.0, 1.0, 1e-9):
        with pytest.raises(InvalidInput, match="alpha"):
            score(df, "cancer-tabular", registry=registry, alpha=bad)


def test_an_image_model_scores_one_array_column_as_the_service_does(
    spark: Any, api: TestClient, registry: Path
) -> None:
    from sklearn.datasets import load_digits

    pixels = (load_digits().data[:200] / 16.0).astype(np.float32)
    df = spark.createDataFrame(
        [(i, row.tolist()) for i, row in enumerate(pixels)], "id long, pixels array<float>"
    )
    got = _collect(score(df, registry / "digits-conv" / "1", columns="pixels", outputs=[*OUTS, "code"]))
    want = _service_answer(api, "digits-conv", pixels.reshape(-1, 8, 8))
    assert_same_answers(got, want, Manifest.read(registry / "digits-conv" / "1"))
    codes = api.post("/encode", json={"model": "digits-conv", "inputs": pixels.reshape(-1, 8, 8).tolist()})
    np.testing.assert_allclose(np.stack(got["code"]), codes.json()["codes"], rtol=1e-5, atol=1e-6)


def test_columns_in_another_order_give_the_same_scores(spark: Any, registry: Path, cancer: Any) -> None:
    shuffled = cancer[["id", *np.random.default_rng(0).permutation(cancer.columns[1:])]]
    a = _collect(score(spark.createDataFrame(cancer), "cancer-tabular", registry=registry))
    b = _collect(score(spark.createDataFrame(shuffled), "cancer-tabular", registry=registry))
    np.testing.assert_array_equal(a["score"], b["score"])


def test_a_missing_column_is_an_error_naming_it_before_any_job(
    spark: Any, registry: Path, cancer: Any
) -> None:
    df = spark.createDataFrame(cancer.drop(columns="mean texture"))
    with pytest.raises(InvalidInput, match="no column 'mean texture'") as info:
        score(df, "cancer-tabular", registry=registry)
    assert info.value.field == "columns"


def test_a_tampered_artifact_is_refused(spark: Any, registry: Path, cancer: Any, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "cancer-tabular" / "1"
    shutil.copytree(registry / "cancer-tabular" / "1", folder)
    entry = Manifest.read(folder).file("encoder", "onnx")
    assert entry is not None
    with (folder / entry.path).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match=r"model 'cancer-tabular' version 1: file '.*' .*sha256"):
        score(spark.createDataFrame(cancer), folder)


def test_a_joblib_only_kind_is_refused_in_one_line(tmp_path: Path) -> None:
    from training.config import PCAConfig

    fit(
        "kernel-pca",
        "digits",
        name="digits-kpca",
        models_dir=tmp_path,
        pca=PCAConfig(n_components=4, max_rows=200),
    )
    with pytest.raises(InvalidInput, match=r"a kernel-pca is served from joblib .* Spark scorer runs ONNX"):
        load_model("digits-kpca", registry=tmp_path)


def test_bad_rows_fail_the_job_naming_the_column_and_the_row(spark: Any, registry: Path, cancer: Any) -> None:
    bad = cancer.copy()
    bad.loc[7, "worst area"] = np.inf
    df = spark.createDataFrame(bad)
    with pytest.raises(Exception, match=r"row id='7': column 'worst area' is infinite") as info:
        score(df, "cancer-tabular", registry=registry, id_column="id").collect()
    assert "on_invalid='null'" in str(info.value)


def test_bad_rows_get_null_outputs_and_the_reason_when_asked(
    spark: Any, api: TestClient, registry: Path, cancer: Any
) -> None:
    bad = cancer.copy()
    bad.loc[3, "mean radius"] = np.nan
    df = spark.createDataFrame(bad)
    df = df.withColumn("mean area", df["mean area"].cast("double"))
    from pyspark.sql import functions as F

    df = df.withColumn("mean area", F.when(F.col("id") == 5, None).otherwise(F.col("mean area")))
    got = _collect(score(df, "cancer-tabular", registry=registry, on_invalid="null"))
    assert got.loc[3, "error"] == "column 'mean radius' is null or NaN"
    assert got.loc[5, "error"] == "column 'mean area' is null or NaN"
    assert got.loc[[3, 5], ["score", "p_value", "is_anomaly"]].isna().all().all()
    good = got[got["error"].isna()]
    want = _service_answer(api, "cancer-tabular", cancer.drop(columns="id").to_numpy(np.float32)[good["id"]])
    np.testing.assert_allclose(good["score"], want["scores"], rtol=1e-5)


def test_a_running_service_serves_the_files_the_scorer_needs(
    spark: Any, registry: Path, cancer: Any, tmp_path: Path
) -> None:
    from tests.deploy.live import service

    with service(registry, tmp_path / "service.log", LATENTSERVE_API_KEY="k3y") as url:
        with pytest.raises(InvalidInput, match="401"):
            load_model("cancer-tabular", service=url)
        remote = load_model("cancer-tabular:1", service=url, api_key="k3y")
    local = load_model(registry / "cancer-tabular" / "1")
    assert remote.files == local.files and remote.key == local.key
    a = _collect(score(spark.createDataFrame(cancer), remote))
    b = _collect(score(spark.createDataFrame(cancer), local))
    np.testing.assert_array_equal(a["score"], b["score"])


def test_a_streaming_query_scores_new_files(spark: Any, registry: Path, cancer: Any, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    batch = spark.createDataFrame(cancer)
    stream = spark.readStream.schema(batch.schema).parquet(str(source))
    scored = score(stream, "cancer-tabular", registry=registry)
    query = (
        scored.writeStream.format("parquet")
        .option("path", str(tmp_path / "out"))
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
    )
    batch.limit(100).write.parquet(str(source / "part1"))  # read as one folder of files: copy them up
    for f in (source / "part1").glob("*.parquet"):
        f.rename(source / f"a-{f.name}")
    query.start().awaitTermination()
    batch.filter("id >= 100").write.parquet(str(source / "part2"))
    for f in (source / "part2").glob("*.parquet"):
        f.rename(source / f"b-{f.name}")
    query.start().awaitTermination()  # the same checkpoint: only the new files
    got = _collect(spark.read.parquet(str(tmp_path / "out")))
    assert got["id"].tolist() == list(range(300))
    want = _collect(score(batch, "cancer-tabular", registry=registry))
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5)


def test_the_spark_submit_entry_point_scores_a_table_and_refuses_a_bad_one(
    spark: Any, registry: Path, cancer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from latentserve_client.spark.__main__ import main

    spark.createDataFrame(cancer).write.parquet(str(tmp_path / "in"))
    argv = [
        "score",
        "--model",
        "cancer-tabular",
        "--registry",
        str(registry),
        "--input",
        str(tmp_path / "in"),
    ]
    assert main([*argv, "--output", str(tmp_path / "out"), "--id-column", "id"]) == 0
    got = _collect(spark.read.parquet(str(tmp_path / "out")))
    want = _collect(score(spark.createDataFrame(cancer), "cancer-tabular", registry=registry))
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5)
    spark.createDataFrame(cancer.drop(columns="worst area")).write.parquet(str(tmp_path / "in2"))
    argv[-1] = str(tmp_path / "in2")
    capsys.readouterr()
    assert main([*argv, "--output", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: columns: the DataFrame has no column 'worst area'")
    assert not (tmp_path / "out2").exists()
