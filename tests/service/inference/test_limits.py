"""The row limit names the field that holds the rows, for every verb, whatever the body's type."""

from __future__ import annotations

import numpy as np
import pytest

from tests.service.conftest import NPY_HEADERS, error_of, npy


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/encode", {"model": "digits-pca", "inputs": [[0.0] * 64] * 5}, "inputs"),
        ("/decode", {"model": "digits-pca", "codes": [[0.0] * 8] * 5}, "codes"),
        ("/sample", {"model": "digits-vae", "n": 5}, "n"),
    ],
)
def test_json_rows_over_max_rows_are_413_naming_their_field(make_client, path, body, field) -> None:
    with make_client(max_rows=4) as c:
        err = error_of(c.post(path, json=body), 413)
    assert err["field"] == field and err["details"] == {"limit": 4, "got": 5}
    assert err["message"] == f"{field}: 5 rows is over the limit of 4 rows per request; split the batch"


def test_npy_codes_over_max_rows_name_codes(make_client) -> None:
    with make_client(max_rows=4) as c:
        r = c.post("/decode?model=digits-pca", content=npy(np.zeros((5, 8), np.float32)), headers=NPY_HEADERS)
        err = error_of(r, 413)
    assert err["field"] == "codes" and "5 rows is over the limit of 4" in err["message"]
