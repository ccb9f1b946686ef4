"""Pasted rows read back as the numbers written, in the model's feature order, whatever the layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.errors import InvalidInput
from service.ui.pasted import MAX_TRY_ROWS, parse_rows

NAMES = ["mean radius", "texture", "a;b", 'quoted "name"', "x"]
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(
    X=st.integers(1, 6).flatmap(lambda n: arrays(np.float64, (n, len(NAMES)), elements=finite)),
    order=st.permutations(range(len(NAMES))),
    sep=st.sampled_from([",", "\t"]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_csv_under_a_shuffled_header_reads_back_in_the_models_order(
    X: np.ndarray, order: list[int], sep: str, newline: str
) -> None:
    def cell(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    lines = [sep.join(cell(NAMES[i]) for i in order)] + [
        sep.join(repr(float(r[i])) for i in order) for r in X
    ]
    np.testing.assert_array_equal(parse_rows(newline.join(lines), NAMES), X)


@settings(max_examples=100, deadline=None)
@given(X=st.integers(1, 6).flatmap(lambda n: arrays(np.float64, (n, 3), elements=finite)))
def test_plain_lines_json_arrays_and_json_objects_read_back_alike(X: np.ndarray) -> None:
    names = NAMES[:3]
    plain = "\n".join(" ".join(repr(float(v)) for v in r) for r in X)
    np.testing.assert_array_equal(parse_rows(plain), X)
    np.testing.assert_array_equal(parse_rows(json.dumps(X.tolist())), X)
    records = [dict(zip(reversed(names), reversed(r.tolist()), strict=True)) for r in X]
    np.testing.assert_array_equal(parse_rows(json.dumps(records), names), X)


@pytest.mark.parametrize(
    ("text", "names", "message"),
    [
        ("", None, "row: empty"),
        ("1,,3", None, "row[1]: empty cell"),
        ("1,2\n3", None, "row: line 2 has 1 values, line 1 has 2"),
        ("a,b\n1,x", ["a", "b"], "row[1] (line 2, column 'b'): 'x' is not a number"),
        ("a,a\n1,2", ["a"], "names 'a' more than once"),
        ("a,c\n1,2", ["a", "b"], "names 'c', which the model does not take and lacks 'b'"),
        ("a,b\n1,2", None, "this model records no feature names"),
        ("a,b", ["a", "b"], "a header line with no rows under it"),
        ('{"a": "1"}', ["a"], "row['a']: \"1\" is not a number"),
        ("[[1, 2], [3]]", None, "row[1]: 1 values, row[0] has 2"),
        ("[1, true]", None, "row[1]: true is not a number"),
        ("[1, 2", None, "row: malformed JSON"),
        ("1,\x00", None, "row[1]: '\\x00' is not a number"),
        ("1," + "9" * 200_000, None, "row: line 1 is not a CSV line: field larger than field limit"),
        ("\n".join(["1"] * (MAX_TRY_ROWS + 1)), None, f"at most {MAX_TRY_ROWS} at a time"),
    ],
)
def test_each_mistake_is_named(text: str, names: list[str] | None, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_rows(text, names)
    assert message in caught.value.message and caught.value.field == "row"
