"""`training.Detector` and `training.fit` on rows in memory, checked against the service's answers."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import NotFittedError

from latentserve_core.manifest import Manifest
from latentserve_core.runtime.base import conformal_p_values
from service.app import create_app
from service.settings import Settings
from training import Detector, FitConfig, PCAConfig, fit
from training.errors import DataError, UsageError

PCA8 = FitConfig("pca", pca=PCAConfig(n_components=8))  # fast and independent of the default


@pytest.fixture(scope="module")
def table() -> tuple[pd.DataFrame, np.ndarray]:
    bc = load_breast_cancer(as_frame=True)
    return bc.data.astype(np.float32), bc.target.to_numpy()


@pytest.fixture(scope="module")
def detector(table: tuple[pd.DataFrame, np.ndarray]) -> Detector:
    """Fitted with the default config on the benign rows of the DataFrame."""
    X, y = table
    return Detector(classes=(1,), seed=3).fit(X, y)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, TestClient]]:
    """An empty registry and the app serving it."""
    models = tmp_path / "models"
    models.mkdir()
    with TestClient(create_app(Settings(models_dir=models, reload_interval_s=0))) as client:
        deadline = time.monotonic() + 20
        while client.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield models, client


def npy(A: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, A)
    return buf.getvalue()


def scores_served(client: TestClient, name: str, X: np.ndarray, **query: Any) -> tuple[np.ndarray, Any]:
    """The service's /anomaly-score answer for rows X, as float32 from a .npz answer, and its headers."""
    params = {"model": name, **query}
    r = client.post(
        "/anomaly-score",
        params=params,
        content=npy(np.ascontiguousarray(X, dtype=np.float32)),
        headers={"content-type": "application/x-npy", "accept": "application/x-npz"},
    )
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content)), r.headers


def test_a_dataframe_fit_records_its_columns_and_labels_pick_the_classes(
    detector: Detector, table: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X, y = table
    m = detector.manifest_
    assert m.input.feature_names == list(X.columns) and list(detector.feature_names_in_) == list(X.columns)
    assert detector.n_features_in_ == 30 and m.data.classes == [1] and m.data.seed == 3
    n_benign = int((y == 1).sum())
    assert m.data.rows_train + m.data.rows_validation + m.data.rows_calibration == n_benign
    assert detector.threshold_ == m.threshold.value
    assert detector.decision_scores_.shape == (len(X),)
    assert (detector.labels_ == (detector.decision_scores_ > detector.threshold_)).all()


def test_decision_function_is_the_services_score_and_publish_serves_the_next_version(
    detector: Detector, table: tuple[pd.DataFrame, np.ndarray], served: tuple[Path, TestClient]
) -> None:
    models, client = served
    X = table[0].to_numpy()
    first = detector.publish("cancer", models_dir=models)
    second = detector.publish("cancer", models_dir=models)
    assert (first, second) == (models / "cancer" / "1", models / "cancer" / "2")
    assert Manifest.read(second).name == "cancer" and Manifest.read(second).version == 2
    assert client.post("/admin/reload").status_code == 200
    arrays, headers = scores_served(client, "cancer", X)
    assert headers["x-model-version"] == "2"
    np.testing.assert_array_equal(detector.decision_function(X), arrays["scores"])  # bit for bit
    np.testing.assert_array_equal(detector.p_values(X), arrays["p_values"])
    np.testing.assert_array_equal(detector.predict(X), arrays["is_anomaly"].astype(np.int64))
    assert float(headers["x-threshold"]) == detector.threshold_
    alpha, _ = scores_served(client, "cancer", X, alpha=0.1)
    np.testing.assert_array_equal(detector.predict(X, alpha=0.1), alpha["is_anomaly"].astype(np.int64))


def test_predict_and_p_values_follow_the_threshold_and_the_calibration(
    detector: Detector, table: tuple[pd.DataFrame, np.ndarray]
) -> None:
    X = table[0]
    scores = detector.decision_function(X)
    assert (detector.predict(X) == (scores > detector.threshold_)).all()
    assert detector.predict(X).any() and not detector.predict(X).all()
    calibration = np.asarray(detector.manifest_.threshold.calibration_scores, dtype=np.float32)
    p = detector.p_values(X)
    np.testing.assert_array_equal(p, conformal_p_values(scores, calibration))
    order = np.argsort(scores)
    assert (np.diff(p[order]) <= 0).all()  # a higher score never has a larger p-value
    proba = detector.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_array_equal(proba[:, 0], p)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    flagged = detector.predict(X, alpha=0.2)
    assert (flagged == (p <= np.float32(0.2))).all() and flagged.sum() >= detector.predict(X).sum()
    with pytest.raises(UsageError, match="alpha"):
        detector.predict(X, alpha=1.5)


def test_columns_are_taken_by_name(detector: Detector, table: tuple[pd.DataFrame, np.ndarray]) -> None:
    X = table[0]
    shuffled = X[list(reversed(X.columns))]
    np.testing.assert_array_equal(detector.decision_function(shuffled), detector.decision_function(X))
    with pytest.raises(DataError, match="no column 'mean radius'"):
        detector.decision_function(X.drop(columns="mean radius"))


def test_numpy_rows_fit_without_names_and_images_keep_their_layout() -> None:
    X = load_breast_cancer().data
    det = Detector(PCA8).fit(X)
    assert not hasattr(det, "feature_names_in_") and det.manifest_.input.layout == "features"
    assert det.manifest_.data.dataset == "in-memory" and det.manifest_.input.feature_names is None
    np.testing.assert_array_equal(det.decision_function(X[:5]), det.decision_scores_[:5])
    images = (load_digits().images / 16.0).astype(np.float32)  # (n, 8, 8) in [0, 1]
    digits = Detector("pca", seed=1).fit(images)
    assert digits.manifest_.input.layout == "image" and digits.manifest_.input.shape == [8, 8]
    assert digits.n_features_in_ == 64
    np.testing.assert_array_equal(
        digits.decision_function(images[:4].reshape(4, 64)), digits.decision_scores_[:4]
    )


def test_training_fit_takes_arrays_dataframes_and_labels(tmp_path: Path) -> None:
    bc = load_breast_cancer(as_frame=True)
    folder = fit(PCA8, bc.data.to_numpy(), name="table", models_dir=tmp_path)
    assert folder == tmp_path / "table" / "1" and Manifest.read(folder).input.shape == [30]
    folder = fit(PCA8, bc.data, y=bc.target, classes=(0,), name="table", models_dir=tmp_path)
    m = Manifest.read(folder)
    assert m.version == 2 and m.data.classes == [0] and m.input.feature_names == list(bc.data.columns)
    assert m.data.rows_train + m.data.rows_validation + m.data.rows_calibration == int((bc.target == 0).sum())


def test_a_long_path_string_is_still_a_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        fit(PCA8, str(tmp_path / ("x" * 100 + ".csv")), name="t", models_dir=tmp_path)


@pytest.mark.parametrize(
    ("data", "got"),
    [
        (["a", "b", "c"], "dtype <U1"),
        ({"a": [1.0, 2.0]}, "a dict"),
        (None, "None"),
        (np.array([object(), object()]), "dtype object"),
        (np.array(3.0), "no rows"),
        (np.zeros((0, 4)), "no rows"),
        ([[1.0, 2.0], [3.0]], "a list"),
    ],
)
def test_anything_that_is_not_rows_is_a_usage_error(tmp_path: Path, data: object, got: str) -> None:
    with pytest.raises(UsageError, match="X: expected rows of numbers") as info:
        fit(PCA8, data, name="t", models_dir=tmp_path)
    assert got in str(info.value)
    with pytest.raises(UsageError, match="X: expected rows of numbers"):
        Detector(PCA8).fit(data)
    assert not (tmp_path / "t").exists()


def test_bad_columns_labels_and_values_are_named(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0] * 5, "b": ["x", "y", "z", "w"] * 5})
    with pytest.raises(UsageError, match="column 'b' is not numeric"):
        fit(PCA8, frame, name="t", models_dir=tmp_path)
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(UsageError, match="y: expected 40 integer labels"):
        fit(PCA8, X, y=np.zeros(39), name="t", models_dir=tmp_path)
    with pytest.raises(UsageError, match="y: labels go with rows in memory"):
        fit(PCA8, "breast-cancer", y=np.zeros(569), name="t", models_dir=tmp_path)
    X[7, 1] = np.nan
    with pytest.raises(DataError, match="row 7 contains NaN"):
        fit(PCA8, X, name="t", models_dir=tmp_path)


def test_unfitted_wrong_width_and_far_out_rows_are_clear_errors(detector: Detector) -> None:
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        Detector().decision_function(np.zeros((2, 30)))
    with pytest.raises(NotFittedError):
        Detector().publish("x")
    X = np.zeros((2, 3))
    with pytest.raises(
        UsageError, match=r"rows of shape \[3\], but Detector was fitted on rows of shape \[30\]"
    ):
        detector.decision_function(X)
    far = load_breast_cancer().data * 1000.0  # the whole table in other units
    with pytest.raises(DataError, match="training ranges outside"):
        detector.decision_function(far)
    with pytest.raises(UsageError, match="not a valid model name"):
        detector.publish("Bad Name", models_dir="unused")


def test_the_python_api_doc_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first Python block of docs/python-api.md, as a user would paste it."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "python-api.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match is not None
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    exec(compile(match.group(1), "docs/python-api.md", "exec"), scope)
    assert scope["folder"] == Path("models") / "my-table" / "1" and (tmp_path / scope["folder"]).is_dir()
    det, X = scope["det"], scope["X"]
    assert scope["scores"].shape == (len(X) - 400,) and set(scope["labels"].tolist()) <= {0, 1}
    np.testing.assert_array_equal(scope["labels"], (scope["scores"] > det.threshold_).astype(np.int64))


def test_params_and_clone_carry_the_score_settings(table: tuple[pd.DataFrame, np.ndarray]) -> None:
    """Detector's score settings travel in its config: get_params / set_params / clone keep them,
    and a clone fitted on the same rows gives the same scores."""
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import check_get_params_invariance, check_set_params

    from training import ScoreConfig

    X, _ = table
    config = FitConfig("pca", pca=PCAConfig(n_components=5), score=ScoreConfig(neighbors=3))
    det = Detector(PCA8, seed=1)
    assert det.set_params(config=config) is det and det.get_params()["config"] is config
    check_get_params_invariance("Detector", det)
    check_set_params("Detector", det)
    det.fit(X)
    assert det.manifest_.score.neighbors is not None and det.manifest_.score.neighbors.k == 3
    twin = clone(det)
    assert twin.get_params() == det.get_params() and not hasattr(twin, "threshold_")
    np.testing.assert_array_equal(twin.fit(X).decision_function(X), det.decision_function(X))
