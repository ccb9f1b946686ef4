"""Rows sent by column name: JSON records (`[{"a": 1.0, "b": 2.0}, ...]`) and `text/csv` bodies
with a header line, put into the order of the model's `input.feature_names`.

Both become `NamedRows` (the names as sent and a float64 array in that order); `NamedRows.ordered`
reorders the columns by the manifest. The rule is strict: every feature must be there (a missing
one is a 422 naming it) and no other name may be (a 422 naming it: a misspelt feature would
otherwise be dropped silently; `latentserve-score` keeps id columns out of the request and writes
them back itself). A model without feature names refuses named rows. Rows by position never come
here: their path (`jsonbody.rows_to_array`, `.npy`) is unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
import operator
from typing import Any

import numpy as np
import numpy.typing as npt

from latentserve_core.manifest import Manifest
from service.errors import BadCell, ColumnsMismatch, InvalidInput, NoFeatureNames, RecordKeysDiffer


class NamedRows:
    """Rows whose columns have names: `values` (n, len(names)) float64, columns in `names` order.

    Built in a JSON worker process too (`service.jsonpool`), so it pickles and stays small."""

    __slots__ = ("names", "values")

    def __init__(self, names: tuple[str, ...], values: npt.NDArray[np.float64]) -> None:
        self.names = names
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def ordered(self, manifest: Manifest, field: str) -> npt.NDArray[np.float64]:
        """The values with their columns in the manifest's feature order, or a 422 that names the
        missing and the unknown columns (or says the model has no feature names)."""
        expected = manifest.input.feature_names
        if expected is None:
            raise NoFeatureNames(field, manifest.name, manifest.version)
        if list(self.names) == expected:
            return self.values
        position = {name: j for j, name in enumerate(self.names)}
        missing = [name for name in expected if name not in position]
        known = set(expected)
        unknown = [name for name in self.names if name not in known]
        if missing or unknown:
            raise ColumnsMismatch(field, missing, unknown, manifest.name, manifest.version)
        return self.values[:, [position[name] for name in expected]]


def is_records(rows: object) -> bool:
    """Whether JSON rows are records (objects of name: value), judged by the first row: O(1)."""
    return isinstance(rows, list) and bool(rows) and isinstance(rows[0], dict)


def records_to_rows(rows: list[Any], field: str) -> NamedRows:
    """JSON records into `NamedRows`; every record must have the first one's keys, every value
    must be a finite number (booleans and null are refused, naming the row and the key). The
    checks run in C (key views, one set of value types, one np.asarray); only a bad batch is walked
    in Python to name its first bad cell."""
    names = tuple(str(k) for k in rows[0])
    if not names:
        raise InvalidInput(f"{field}: row 0 is an empty object; name each value by its column", field=field)
    keys = rows[0].keys()
    get = operator.itemgetter(*names)
    values: list[Any] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(
                f"{field}: row {i} is not an object; rows by name are objects of column: value",
                field=field,
                details={"row": i},
            )
        if row.keys() != keys:
            missing = [k for k in names if k not in row]
            extra = [str(k) for k in row if k not in keys]
            raise RecordKeysDiffer(field, i, missing, extra)
        values.append(get(row))
    if len(names) == 1:
        values = [(v,) for v in values]
    types = set(map(type, itertools.chain.from_iterable(values)))
    A = None
    if types <= {int, float}:
        with contextlib.suppress(OverflowError):  # an integer past float64
            A = np.asarray(values, dtype=np.float64)
    if A is None or not np.isfinite(A).all():
        for i, vals in enumerate(values):
            for name, v in zip(names, vals, strict=True):
                if not _finite_number(v):
                    raise BadCell(field, f"row {i}", name, v)
    assert A is not None
    return NamedRows(names, A)


def _finite_number(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def is_number(text: str) -> bool:
    """Whether `text` reads as a float (a CSV cell, a header line's test)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_csv(body: bytes, field: str) -> NamedRows | npt.NDArray[np.float64]:
    """A `text/csv` body: with a header line (any field of the first line not a number), rows by
    name; without, rows by position. Every cell must be a finite number; a bad one is a 422 naming
    its line and column."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"body: not UTF-8 text at byte {exc.start}", field="body") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        for record in reader:
            if record and any(c.strip() for c in record):
                records.append((reader.line_num, record))
    except csv.Error as exc:
        raise InvalidInput(f"body: line {reader.line_num}: not valid CSV: {exc}", field="body") from None
    if not records:
        raise InvalidInput("body: no rows; expected a CSV header line and rows", field="body")
    first = records[0][1]
    header: tuple[str, ...] | None = None
    if not all(is_number(c) for c in first):
        header = tuple(c.strip() for c in first)
        repeated = sorted({n for n in header if header.count(n) > 1})
        if repeated:
            raise InvalidInput(f"body: line 1: column names repeat: {repeated}", field="body")
        records = records[1:]
        if not records:
            raise InvalidInput("body: a header line and no rows", field="body")
    width = len(header) if header is not None else len(first)
    names = header if header is not None else tuple(str(j + 1) for j in range(width))
    rows: list[list[float]] = []
    for line, record in records:
        if len(record) != width:
            raise InvalidInput(
                f"body: line {line} has {len(record)} fields, expected {width}",
                field="body",
                details={"line": line, "expected": width, "got": len(record)},
            )
        try:
            row = [float(c) for c in record]
        except ValueError:
            j = next(j for j, c in enumerate(record) if not is_number(c))
            raise BadCell("body", f"line {line}", names[j], record[j].strip()) from None
        if not all(math.isfinite(v) for v in row):
            j = next(j for j, v in enumerate(row) if not math.isfinite(v))
            raise BadCell("body", f"line {line}", names[j], record[j].strip())
        rows.append(row)
    values = np.asarray(rows, dtype=np.float64)
    return NamedRows(header, values) if header is not None else values
