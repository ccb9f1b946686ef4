"""/anomaly-score on a model whose score adds the nearest-training-codes term (the tabular preset)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import OnnxRuntime
from latentserve_core.runtime.base import conformal_p_values
from tests.service.conftest import NPY_HEADERS, npy, serve
from training import fit, preset

NAME = "cancer-tabular"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("neighbors")
    fit(preset("tabular"), "breast-cancer", name=NAME, models_dir=root)
    return root


@pytest.fixture(scope="module")
def client(registry: Path) -> Iterator[TestClient]:
    with serve(registry) as c:
        yield c


def test_anomaly_score_threshold_and_p_values(client: TestClient, registry: Path, cancer: np.ndarray) -> None:
    folder = registry / NAME / "1"
    manifest = Manifest.read(folder)
    assert manifest.score.neighbors is not None
    expected = OnnxRuntime.load(manifest, folder).compute("scores", cancer)[0]

    r = client.post("/anomaly-score", json={"model": NAME, "inputs": cancer.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    scores = np.asarray(body["scores"], dtype=np.float32)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert body["threshold"] == pytest.approx(manifest.threshold.value)
    assert body["is_anomaly"] == [bool(s > body["threshold"]) for s in scores]
    calibration = np.asarray(manifest.threshold.calibration_scores, dtype=np.float32)
    np.testing.assert_allclose(body["p_values"], conformal_p_values(scores, calibration), rtol=1e-6)

    # the .npy path answers the same scores; a threshold given in the request is applied
    url = f"/anomaly-score?model={NAME}&threshold=0"
    r = client.post(url, content=npy(cancer), headers={**NPY_HEADERS, "accept": "application/x-npz"})
    assert r.status_code == 200, r.text
    arrays = np.load(io.BytesIO(r.content))
    np.testing.assert_allclose(arrays["scores"], expected, rtol=1e-5)
    assert arrays["is_anomaly"].all()  # every score is above 0


def test_a_far_row_scores_above_the_threshold(client: TestClient, cancer: np.ndarray) -> None:
    """A row 30 standard deviations out along every feature is an anomaly; training rows are not."""
    far = cancer[:1] + 30 * cancer.std(axis=0, keepdims=True)
    r = client.post("/anomaly-score", json={"model": NAME, "inputs": [*cancer[:3].tolist(), *far.tolist()]})
    body = r.json()
    assert body["is_anomaly"][-1] is True
    assert body["p_values"][-1] == min(body["p_values"])
