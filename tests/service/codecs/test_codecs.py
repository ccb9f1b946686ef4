"""The large-batch JSON parser: same arrays as the orjson path, and every malformed body falls back
to the path whose messages name the bad row."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service import codecs

from .conftest import error_of


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


def _npy(A: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    import io

    from numpy.lib import format as npy_format

    buf = io.BytesIO()
    npy_format.write_array(buf, A, version=version)
    return buf.getvalue()


@pytest.mark.parametrize("version", [None, (1, 0), (2, 0)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_view_reads_every_header_version_and_order(version: tuple[int, int] | None, order: str) -> None:
    A = np.asarray(np.random.default_rng(0).standard_normal((5, 3, 2)), order=order)
    np.testing.assert_array_equal(codecs.load_npy(_npy(A, version), "inputs"), A)
    for dtype in (np.float32, np.int16, ">f8"):
        B = A.astype(dtype)
        np.testing.assert_array_equal(codecs.load_npy(_npy(B, version), "inputs"), B)


def test_npy_bodies_with_the_same_header_keep_their_own_data() -> None:
    """The header parse is cached by header bytes; the data always comes from the body at hand."""
    rng = np.random.default_rng(1)
    A, B = rng.random((4, 8)), rng.random((4, 8))
    head_a, head_b = _npy(A)[:128], _npy(B)[:128]
    assert head_a == head_b
    np.testing.assert_array_equal(codecs.load_npy(_npy(A), "inputs"), A)
    np.testing.assert_array_equal(codecs.load_npy(_npy(B), "inputs"), B)
    with pytest.raises(codecs.InvalidInput, match="shorter than shape"):
        codecs.load_npy(_npy(B)[:-8], "inputs")


def test_npy_header_with_a_negative_length_is_refused() -> None:
    body = _npy(np.zeros((2, 64)))
    forged = body.replace(b"(2, 64)", b"(-2,64)", 1)  # same length: the header stays well-formed
    assert len(forged) == len(body) and forged != body
    with pytest.raises(codecs.InvalidInput, match="negative length"):
        codecs.load_npy(forged, "inputs")


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
