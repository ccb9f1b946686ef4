"""/anomaly-score's two rules: the threshold (a score) and alpha (a false-positive rate)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tests.service.conftest import NPY_HEADERS, error_of, npy


def test_alpha_flags_the_rows_whose_p_value_is_at_most_alpha(client, digits):
    X = np.concatenate([digits, 1.0 - digits])  # inverted digits: unusual rows
    for alpha in (0.05, 0.2, 0.5):
        body = client.post(
            "/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist(), "alpha": alpha}
        ).json()
        p = np.asarray(body["p_values"], dtype=np.float32)
        assert body["is_anomaly"] == (p <= np.float32(alpha)).tolist()
        assert body["rule"] == "alpha" and body["alpha"] == alpha
        # the threshold is the score cut-off alpha amounts to: the same rows, by their scores
        assert body["is_anomaly"] == [s > body["threshold"] for s in body["scores"]]
    loose = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist(), "alpha": 0.5})
    strict = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist(), "alpha": 0.05})
    assert sum(loose.json()["is_anomaly"]) > sum(strict.json()["is_anomaly"]) > 0


def test_without_alpha_the_threshold_rule_is_reported(client, digits):
    body = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": digits.tolist()}).json()
    assert body["rule"] == "threshold" and "alpha" not in body
    body = client.post(
        "/anomaly-score", json={"model": "digits-pca", "inputs": digits.tolist(), "threshold": 0.0}
    ).json()
    assert body["rule"] == "threshold" and body["threshold"] == 0.0 and all(body["is_anomaly"])


def test_alpha_as_a_query_parameter_of_npy_bodies_echoed_in_headers(client, digits):
    json_body = client.post(
        "/anomaly-score", json={"model": "digits-pca", "inputs": digits.tolist(), "alpha": 0.25}
    ).json()
    r = client.post(
        "/anomaly-score?model=digits-pca&alpha=0.25",
        content=npy(digits),
        headers={**NPY_HEADERS, "accept": "application/x-npz"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-rule"] == "alpha" and float(r.headers["x-alpha"]) == 0.25
    assert float(r.headers["x-threshold"]) == json_body["threshold"]
    arrays = np.load(io.BytesIO(r.content))
    assert arrays["is_anomaly"].tolist() == json_body["is_anomaly"]
    plain = client.post(
        "/anomaly-score?model=digits-pca",
        content=npy(digits),
        headers={**NPY_HEADERS, "accept": "application/x-npy"},
    )
    assert plain.headers["x-rule"] == "threshold" and "x-alpha" not in plain.headers


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, "often", True])
def test_alpha_outside_zero_one_is_a_422_naming_alpha(client, digits, alpha):
    r = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": digits.tolist(), "alpha": alpha})
    err = error_of(r, 422)
    assert err["field"] == "alpha", err


def test_alpha_in_the_query_is_validated_too(client, digits):
    r = client.post("/anomaly-score?model=digits-pca&alpha=2", content=npy(digits), headers=NPY_HEADERS)
    assert error_of(r, 422)["field"] == "alpha"


def test_alpha_with_threshold_is_a_422(client, digits):
    body = {"model": "digits-pca", "inputs": digits.tolist(), "alpha": 0.1, "threshold": 0.5}
    err = error_of(client.post("/anomaly-score", json=body), 422)
    assert err["field"] == "alpha" and "not both" in err["message"], err


def test_alpha_below_the_smallest_p_value_is_a_422_saying_which_alpha_works(client, digits):
    err = error_of(
        client.post("/anomaly-score", json={"model": "digits-pca", "inputs": digits.tolist(), "alpha": 1e-6}),
        422,
    )
    assert err["field"] == "alpha" and "no row could be flagged" in err["message"], err
    smallest = err["details"]["smallest"]
    assert smallest == pytest.approx(1 / (err["details"]["n_calibration"] + 1), rel=1e-6)
    ok = client.post(
        "/anomaly-score", json={"model": "digits-pca", "inputs": digits.tolist(), "alpha": smallest}
    )
    assert ok.status_code == 200, ok.text
