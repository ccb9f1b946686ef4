"""JSON bodies (`service.codecs.jsonbody`): the large-batch parser gives the same arrays as the orjson
path, every malformed body falls back to the path whose messages name the bad row, and booleans among
rows are found."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service import codecs
from tests.service.conftest import error_of


def _body(rows: object, **extra: object) -> bytes:
    return orjson.dumps({"model": "m", **extra, "inputs": rows})


def test_large_flat_rows_parse_to_the_same_array_as_orjson() -> None:
    X = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
    body = _body(X.tolist(), version=3, threshold=0.5, return_feature_errors=True)
    assert len(body) >= codecs.FAST_JSON_MIN_BYTES
    parsed = codecs.load_json_rows(body, "inputs")
    assert parsed is not None
    rest, A = parsed
    assert rest == {"model": "m", "version": 3, "threshold": 0.5, "return_feature_errors": True}
    reference = np.asarray(orjson.loads(body)["inputs"])
    np.testing.assert_array_equal(A, reference)
    np.testing.assert_array_equal(A.astype(np.float32), X)


def _big(row: list[object], n: int = 5000) -> list[list[object]]:
    return [[0.5] * len(row)] * (n - 1) + [row]


@pytest.mark.parametrize(
    "rows",
    [
        _big([0.1, [0.2]]),  # a nested value with the right count of numbers
        [[0.5, 0.5], *[[0.5, []] for _ in range(10)], *_big([[0.1, 0.2], 0.3])],  # [] hides a number
        [*[[0.5, 0.5]] * 4999, [0.1, 0.2, 0.3]],  # ragged: the last row is longer
        _big(["0.1", 0.2]),  # a string
        _big([None, 0.2]),  # null
        _big([True, 0.2]),  # a boolean
        [[[0.5] * 4] * 4] * 500,  # shaped rows (4x4): not flat, left to the general path
    ],
)
def test_anything_but_plain_flat_numeric_rows_takes_the_general_path(rows: list[object]) -> None:
    body = _body(rows)
    assert len(body) >= codecs.FAST_JSON_MIN_BYTES
    assert codecs.load_json_rows(body, "inputs") is None


def test_brackets_elsewhere_in_the_body_only_cost_the_fast_path() -> None:
    body = orjson.dumps({"model": "name[with]brackets", "inputs": [[0.5] * 64] * 600})
    assert codecs.load_json_rows(body, "inputs") is None


def test_a_bad_row_deep_in_a_large_batch_is_named(client: TestClient, cancer: np.ndarray) -> None:
    rows = np.repeat(cancer[:1], 3000, axis=0).tolist()
    rows[2500][3] = "oops"
    err = error_of(
        client.post(
            "/anomaly-score",
            content=_body(rows).replace(b'"m"', b'"breast-cancer-pca"', 1),
            headers={"content-type": "application/json"},
        ),
        422,
    )
    assert "row 2500" in err["message"] and err["field"] == "inputs"
    good = np.repeat(cancer[:2], 1500, axis=0)
    fast = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": good.tolist()})
    assert fast.status_code == 200
    small = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": good[:2].tolist()})
    assert fast.json()["scores"][:2] == small.json()["scores"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"inputs": [[1, true]]}', True),
        (b'{"inputs": [[1,\n  false]]}', True),
        (b"[true]", True),
        (b'{"return_feature_errors": true, "inputs": [[1e-05, 2.5e+3]]}', False),  # an option, not a row
        (b'{"model": "true-model", "inputs": [[1]]}', False),
        (b'{"inputs": [[1, tru]]}', False),
    ],
)
def test_array_booleans_are_found_where_rows_hold_them(body: bytes, expected: bool) -> None:
    assert codecs.has_array_boolean(body) is expected
