"""Requests far outside the training range: a 422 that names both ranges and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from latentserve_core.runtime.ranges import FAR_SHARE, FAR_VALUES, MARGIN, RangeCheck
from service.errors import InputOutOfRange
from tests.service.conftest import NPY_HEADERS, error_of, npy


def test_8_bit_pixels_sent_to_a_model_of_0_1_images_are_a_422_with_the_fix(client, digits):
    pixels = np.round(digits * 255.0)  # the same digits, as 0-255
    for X in (pixels, pixels.astype(np.uint8), pixels[:1]):
        err = error_of(
            client.post("/anomaly-score?model=digits-pca", content=npy(X), headers=NPY_HEADERS), 422
        )
        assert err["type"] == "InputOutOfRange" and err["field"] == "inputs", err
        top = float(X.max())
        assert f"values span [0, {top:g}]" in err["message"], err
        assert "trained on values in [0, 1]" in err["message"] and "'digits-pca' version 1" in err["message"]
        assert "scale the inputs by 1/255" in err["message"]
        assert err["details"]["observed"] == [0.0, top] and err["details"]["expected"] == [0.0, 1.0]
        assert err["details"]["rows_outside"] == err["details"]["rows"] == len(X)
    scaled = client.post("/anomaly-score?model=digits-pca", content=npy(pixels / 255.0), headers=NPY_HEADERS)
    assert scaled.status_code == 200, scaled.text


def test_the_same_check_on_every_verb_and_on_v2(client, digits):
    pixels = (digits * 255.0).tolist()
    for path in ("/encode", "/reconstruct", "/anomaly-score"):
        err = error_of(client.post(path, json={"model": "digits-pca", "inputs": pixels}), 422)
        assert err["type"] == "InputOutOfRange", err
    doc = {"inputs": [{"name": "input", "shape": [12, 8, 8], "datatype": "FP32", "data": pixels}]}
    r = client.post("/v2/models/digits-pca/infer", json=doc)
    assert r.status_code == 400 and "scale the inputs by 1/255" in r.json()["error"], r.text


def test_one_outlying_row_in_a_request_is_scored_and_flagged(client, digits):
    X = digits.copy()
    X[3] = 255.0  # one broken row among twelve: the request as a whole is in range
    body = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    assert body["is_anomaly"][3] is True and body["scores"][3] == max(body["scores"])


def test_a_standardised_table_with_outliers_is_scored(client, cancer):
    """breast-cancer-pca standardises its 30 features: rows with a few values far outside any
    training value, alone or among normal rows, are anomalies to score, not a unit error."""
    X = cancer.copy()
    X[2, :3] = X[:, :3].max(axis=0) * 200  # three features of one row, far beyond the whole table
    X[5, 7] = -1e6
    body = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": X.tolist()}).json()
    assert body["is_anomaly"][2] is True and body["is_anomaly"][5] is True
    for row in (2, 5):
        one = client.post(
            "/anomaly-score", json={"model": "breast-cancer-pca", "inputs": X[row : row + 1].tolist()}
        )
        assert one.status_code == 200 and one.json()["is_anomaly"] == [True], one.text
    # the whole table in other units; the range is the table's, across features (area reaches 4254)
    other_units = client.post(
        "/anomaly-score", json={"model": "breast-cancer-pca", "inputs": (cancer * 1e5).tolist()}
    )
    assert error_of(other_units, 422)["type"] == "InputOutOfRange"


def test_a_row_is_far_outside_by_share_and_number_and_a_request_by_its_majority():
    check = RangeCheck((0.0, 1.0), "model 'm' version 1")
    far = np.float32(1.0 + MARGIN + 1.0)
    d = 2 * round(FAR_VALUES / FAR_SHARE)  # rows where the share, not the count, decides
    X = np.full((4, d), 0.5, dtype=np.float32)
    X[:, :2] = [-3.0, 4.0]  # outside [0, 1] but within the margin: never counted
    check.check(X, "inputs")
    X[:, 2 : 2 + round(FAR_SHARE * d)] = far  # exactly the share in every row: not more than it
    check.check(X, "inputs")
    X[:2, -1] = -far  # now 2 of 4 rows are far outside: not more than half
    check.check(X, "inputs")
    X[2, -1] = far
    with pytest.raises(InputOutOfRange) as info:
        check.check(X, "input")
    err = info.value
    assert err.status_code == 422 and err.field == "input"
    assert err.details == {"observed": [-far, far], "expected": [0.0, 1.0], "rows_outside": 3, "rows": 4}
    assert "3 of its 4 rows have values more than 10 training ranges outside it" in err.message
    assert "send values in the units the model was trained on, about [0, 1]" in err.message  # not 0-255
    row = np.zeros((1, 64), dtype=np.float32)
    row[0, : FAR_VALUES - 1] = far  # one row with fewer far values than FAR_VALUES: scoreable
    check.check(row, "inputs")
    row[0, FAR_VALUES - 1] = far
    with pytest.raises(InputOutOfRange):
        check.check(row, "inputs")


def test_rows_of_few_values_and_a_constant_training_value():
    check = RangeCheck((-8.0, 9.0), "model 'm' version 1")
    check.check(np.array([[1000.0, 0.0]], dtype=np.float32), "inputs")  # one of two values far out
    with pytest.raises(InputOutOfRange):
        check.check(np.array([[1000.0, -1000.0]], dtype=np.float32), "inputs")  # both
    constant = RangeCheck((5.0, 5.0), "model 'm' version 1")
    constant.check(np.full((3, 4), 5.0 + 5.0 * MARGIN, dtype=np.float32), "inputs")  # width |5|
    with pytest.raises(InputOutOfRange):
        constant.check(np.full((3, 4), 1e4, dtype=np.float32), "inputs")
