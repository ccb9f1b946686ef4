"""Rows by column name (JSON records, text/csv with a header) reordered by the manifest's feature names."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tests.service.conftest import NPY_HEADERS, error_of, npy

MODEL = "breast-cancer-pca"  # trained on scikit-learn's breast cancer table: it records feature names
NAMES = [str(n) for n in load_breast_cancer().feature_names]


def _records(X: np.ndarray, order: list[int]) -> list[dict[str, float]]:
    return [{NAMES[j]: float(row[j]) for j in order} for row in X]


def _csv(X: np.ndarray, order: list[int], extra: dict[str, list[Any]] | None = None) -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    extra = extra or {}
    w.writerow([*extra, *(NAMES[j] for j in order)])
    for i, row in enumerate(X):
        w.writerow([*(v[i] for v in extra.values()), *(repr(float(row[j])) for j in order)])
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def shuffled() -> list[int]:
    return [int(j) for j in np.random.default_rng(7).permutation(len(NAMES))]


def _scores(client: Any, **kw: Any) -> np.ndarray:
    r = client.post("/anomaly-score", **kw)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["scores"])


def test_json_records_in_any_key_order_score_as_positional_rows(client, cancer, shuffled):
    X = cancer[:20]
    positional = _scores(client, json={"model": MODEL, "inputs": X.tolist()})
    for order in (list(range(len(NAMES))), shuffled):
        named = _scores(client, json={"model": MODEL, "inputs": _records(X, order)})
        np.testing.assert_allclose(named, positional, rtol=1e-6)
    assert not np.allclose(
        _scores(client, json={"model": MODEL, "inputs": X[:, shuffled].tolist()}), positional
    )


@pytest.mark.parametrize("path", ["/encode", "/reconstruct"])
def test_records_work_on_encode_and_reconstruct(client, cancer, shuffled, path):
    X = cancer[:3]
    a = client.post(path, json={"model": MODEL, "inputs": X.tolist()})
    b = client.post(path, json={"model": MODEL, "inputs": _records(X, shuffled)})
    assert a.status_code == b.status_code == 200, b.text
    key = "codes" if path == "/encode" else "reconstructions"
    np.testing.assert_allclose(b.json()[key], a.json()[key], rtol=1e-6)


def test_a_csv_body_with_a_shuffled_header_scores_as_the_ordered_rows(client, cancer, shuffled):
    X = cancer[:25]
    positional = _scores(client, json={"model": MODEL, "inputs": X.tolist()})
    headers = {"Content-Type": "text/csv"}
    for order in (list(range(len(NAMES))), shuffled):
        named = _scores(client, params={"model": MODEL}, content=_csv(X, order), headers=headers)
        np.testing.assert_allclose(named, positional, rtol=1e-6)
    # a CSV without a header line: rows by position, as .npy rows are
    plain = "\n".join(",".join(repr(float(v)) for v in row) for row in X).encode()
    np.testing.assert_allclose(
        _scores(client, params={"model": MODEL}, content=plain, headers=headers), positional, rtol=1e-6
    )


def test_a_missing_feature_is_a_422_naming_it(client, cancer):
    order = [j for j in range(len(NAMES)) if NAMES[j] != "mean area"]
    r = client.post("/anomaly-score", json={"model": MODEL, "inputs": _records(cancer[:2], order)})
    err = error_of(r, 422)
    assert err["type"] == "ColumnsMismatch" and "'mean area'" in err["message"]
    assert err["details"]["missing"] == ["mean area"] and err["field"] == "inputs"
    assert MODEL in err["message"]
    r = client.post(
        "/anomaly-score",
        params={"model": MODEL},
        content=_csv(cancer[:2], order),
        headers={"Content-Type": "text/csv"},
    )
    assert "'mean area'" in error_of(r, 422)["message"]


def test_an_unknown_column_is_a_422_naming_it(client, cancer):
    rows = _records(cancer[:2], list(range(len(NAMES))))
    for row in rows:
        row["id"] = 7.0
    err = error_of(client.post("/anomaly-score", json={"model": MODEL, "inputs": rows}), 422)
    assert err["type"] == "ColumnsMismatch" and "unknown column 'id'" in err["message"]
    body = _csv(cancer[:2], list(range(len(NAMES))), {"id": [1, 2]})
    r = client.post(
        "/anomaly-score", params={"model": MODEL}, content=body, headers={"Content-Type": "text/csv"}
    )
    assert "unknown column 'id'" in error_of(r, 422)["message"]


def test_named_rows_for_a_model_without_names_are_a_422(client, digits):
    rows = [{f"p{j}": float(v) for j, v in enumerate(row)} for row in digits[:2].reshape(2, -1)]
    err = error_of(client.post("/anomaly-score", json={"model": "digits-pca", "inputs": rows}), 422)
    assert err["type"] == "NoFeatureNames" and "records no feature names" in err["message"]


def test_bad_records_and_cells_name_the_row_and_column(client, cancer):
    rows = _records(cancer[:3], list(range(len(NAMES))))
    rows[1] = {k: v for k, v in rows[1].items() if k != "mean radius"}
    err = error_of(client.post("/anomaly-score", json={"model": MODEL, "inputs": rows}), 422)
    assert (
        err["type"] == "RecordKeysDiffer" and "row 1" in err["message"] and "'mean radius'" in err["message"]
    )
    for bad, shown in (("x", "'x'"), (None, "null"), (True, "true")):
        rows = _records(cancer[:3], list(range(len(NAMES))))
        rows[2]["mean texture"] = bad
        err = error_of(client.post("/anomaly-score", json={"model": MODEL, "inputs": rows}), 422)
        assert err["type"] == "BadCell" and "row 2" in err["message"] and "'mean texture'" in err["message"]
        assert shown in err["message"]
    err = error_of(client.post("/anomaly-score", json={"model": MODEL, "inputs": [{}]}), 422)
    assert "row 0 is an empty object" in err["message"]
    rows = _records(cancer[:3], list(range(len(NAMES))))
    rows[1] = [1.0] * len(NAMES)  # type: ignore[call-overload]
    assert (
        "row 1 is not an object"
        in error_of(client.post("/anomaly-score", json={"model": MODEL, "inputs": rows}), 422)["message"]
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"a,b\n1,\n", "line 2: column 'b' is empty"),
        (b"a,b\n1,2\n3,nan\n", "line 3: column 'b' is 'nan'"),
        (b"a,b\n1,2\n3,oops\n", "line 3: column 'b' is 'oops'"),
        (b"a,b\n1,2,3\n", "line 2 has 3 fields, expected 2"),
        (b"a,a\n1,2\n", "column names repeat"),
        (b"a,b\n", "a header line and no rows"),
        (b"", "no rows"),
        (b'a,b\n"1,2\n', "not valid CSV"),
        (b"\xff\xfe,1\n", "not UTF-8"),
    ],
)
def test_bad_csv_bodies_are_a_422_naming_line_and_column(client, body, message):
    r = client.post(
        "/anomaly-score", params={"model": MODEL}, content=body, headers={"Content-Type": "text/csv"}
    )
    assert message in error_of(r, 422)["message"]


def test_positional_rows_to_a_named_model_keep_working(client, cancer):
    a = _scores(client, json={"model": MODEL, "inputs": cancer[:4].tolist()})
    b = _scores(client, params={"model": MODEL}, content=npy(cancer[:4]), headers=NPY_HEADERS)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_large_record_bodies_parsed_in_a_json_worker_are_reordered_too(make_client, cancer, shuffled):
    X = np.tile(cancer, (100, 1))
    with make_client(json_offload_bytes=1024, json_workers=1) as c:
        positional = _scores(c, json={"model": MODEL, "inputs": X.tolist()})
        named = _scores(c, json={"model": MODEL, "inputs": _records(X, shuffled)})
        missing = _records(X[:50], shuffled[1:])
        err = error_of(c.post("/anomaly-score", json={"model": MODEL, "inputs": missing}), 422)
    np.testing.assert_allclose(named, positional, rtol=1e-6)
    assert repr(NAMES[shuffled[0]]) in err["message"]
