"""`service.codecs.table`: records and CSV bodies into named rows, reordered by a manifest."""

from __future__ import annotations

import numpy as np
import pytest

from service.codecs.table import NamedRows, is_records, load_csv, records_to_rows
from service.errors import BadCell, ColumnsMismatch, InvalidInput


def test_records_keep_their_names_and_values() -> None:
    rows = records_to_rows([{"b": 2, "a": 1.5}, {"a": 3.5, "b": 4}], "inputs")
    assert rows.names == ("b", "a") and len(rows) == 2
    np.testing.assert_array_equal(rows.values, [[2, 1.5], [4, 3.5]])
    one = records_to_rows([{"a": 1}], "inputs")
    assert one.names == ("a",) and one.values.tolist() == [[1.0]]


def test_is_records_looks_at_the_first_row_only() -> None:
    assert is_records([{"a": 1}]) and not is_records([[1.0]]) and not is_records([]) and not is_records(None)


@pytest.mark.parametrize("bad", [10**400, float("inf"), "1.5", None, True, [1.0]])
def test_a_value_that_is_not_a_finite_number_names_row_and_column(bad: object) -> None:
    with pytest.raises(BadCell, match=r"inputs: row 1: column 'a' is .*, not a finite number"):
        records_to_rows([{"a": 1.0, "b": 2}, {"a": bad, "b": 3}], "inputs")


def test_a_csv_body_with_and_without_a_header() -> None:
    named = load_csv(b"\xef\xbb\xbfb,a\r\n1,2\r\n\r\n3,4\r\n", "inputs")  # a BOM, CRLF, a blank line
    assert isinstance(named, NamedRows) and named.names == ("b", "a")
    np.testing.assert_array_equal(named.values, [[1, 2], [3, 4]])
    plain = load_csv(b"1,2\n3,4\n", "inputs")
    assert isinstance(plain, np.ndarray) and plain.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(InvalidInput, match="line 2: column '2' is 'x'"):
        load_csv(b"1,2\n3,x\n", "inputs")


def test_ordered_reorders_by_the_manifest_and_names_what_differs() -> None:
    from types import SimpleNamespace

    manifest = SimpleNamespace(name="m", version=1, input=SimpleNamespace(feature_names=["a", "b", "c"]))
    rows = NamedRows(("c", "a", "b"), np.array([[3.0, 1.0, 2.0]]))
    assert rows.ordered(manifest, "inputs").tolist() == [[1.0, 2.0, 3.0]]  # type: ignore[arg-type]
    with pytest.raises(ColumnsMismatch, match=r"missing feature column 'b'; unknown column 'z'"):
        NamedRows(("c", "a", "z"), np.zeros((1, 3))).ordered(manifest, "inputs")  # type: ignore[arg-type]
