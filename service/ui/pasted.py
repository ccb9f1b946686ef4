"""Rows pasted into the Try-it form, as numbers: CSV lines or JSON, matched to the feature names.

    parse_rows("1,2,3")                           -> [[1, 2, 3]]
    parse_rows("b,a\n2,1", ["a", "b"])            -> [[1, 2]]   (a header line: put in the model's order)
    parse_rows('[{"a": 1, "b": 2}]', ["a", "b"])  -> [[1, 2]]   (JSON objects by name)

Every line is split on the first of `,` `;` tab that the first line holds outside quotes (or on
spaces); the first line is a header when it is not all numbers and more lines follow. Every
mistake is an InvalidInput on the field `row` that names the line, the value and the column: an
empty cell, a word, ragged lines, a header naming a column twice, unknown or missing feature
names, more than MAX_TRY_ROWS rows.
"""

from __future__ import annotations

import csv
import re

import numpy as np
import numpy.typing as npt
import orjson

from service.codecs.table import is_number
from service.errors import InvalidInput

MAX_ROW_CHARS = 1 << 20  # pasted text longer than this is refused before it is parsed
MAX_TRY_ROWS = 100  # rows the form scores at once; a file goes to latentserve-score or the API


def parse_rows(text: str, feature_names: list[str] | None = None) -> npt.NDArray[np.float64]:
    """The pasted rows, as (n, d) values, 1 <= n <= MAX_TRY_ROWS: CSV lines (commas, semicolons, tabs
    or spaces), optionally under a header line whose names are matched to `feature_names` and put in
    their order; a JSON array of numbers or of such arrays; or a JSON object (or array of objects)
    of feature name -> number. Anything else is an InvalidInput that says what is wrong and where.
    Values are not cast here: `check_inputs` casts them and refuses non-finite ones with the API's
    message."""
    if len(text) > MAX_ROW_CHARS:
        raise InvalidInput(f"row: {len(text)} characters is over the limit of {MAX_ROW_CHARS}", field="row")
    stripped = text.strip()
    if not stripped:
        raise InvalidInput("row: empty; paste CSV lines or a JSON array of numbers", field="row")
    if stripped[0] in "[{":
        return _json_rows(stripped, feature_names)
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    sep = _separator(lines[0])  # one for every line, as in a CSV file
    first = _cells(lines[0], 1, sep)
    header = None if len(lines) == 1 or all(is_number(c) for c in first) else first
    if len(lines) == 1 and feature_names is not None and set(first) & set(feature_names):
        raise InvalidInput("row: a header line with no rows under it; paste the values below it", field="row")
    if header is not None:
        twice = sorted({name for name in header if header.count(name) > 1})
        if twice:
            raise InvalidInput(f"row: the header line names {_listed(twice)} more than once", field="row")
    body = lines if header is None else lines[1:]
    _check_count(len(body), header is not None)
    start = 1 if header is None else 2
    rows = [_numbers(_cells(line, i, sep), header, i) for i, line in enumerate(body, start)]
    if header is not None:
        return np.asarray(
            [_by_name(dict(zip(header, r, strict=True)), feature_names, "the header") for r in rows]
        )
    width = len(rows[0])
    for i, r in enumerate(rows[1:], 2):
        if len(r) != width:
            raise InvalidInput(f"row: line {i} has {len(r)} values, line 1 has {width}", field="row")
    return np.asarray(rows, dtype=np.float64)


def _check_count(n: int, header: bool) -> None:
    if n > MAX_TRY_ROWS:
        under = " under the header" if header else ""
        raise InvalidInput(
            f"row: {n} rows pasted{under}; the form scores at most {MAX_TRY_ROWS} at a time: score a "
            "file with latentserve-score, or POST the rows to /anomaly-score",
            field="row",
            details={"limit": MAX_TRY_ROWS, "got": n},
        )


def _separator(line: str) -> str | None:
    """The first of `,` `;` tab that `line` holds outside quotes; None: cells are split on spaces."""
    unquoted = re.sub(r'"[^"]*"?', "", line)
    return next((s for s in (",", ";", "\t") if s in unquoted), None)


def _cells(line: str, number: int, sep: str | None) -> list[str]:
    """The cells of one CSV line."""
    if sep is None:
        return line.split()
    try:
        cells = [c.strip() for c in next(csv.reader([line], delimiter=sep))]
    except csv.Error as exc:  # a cell over csv's field size limit
        raise InvalidInput(f"row: line {number} is not a CSV line: {exc}", field="row") from None
    if len(cells) > 1 and not cells[-1]:  # a trailing separator
        cells.pop()
    return cells


def _numbers(cells: list[str], header: list[str] | None, number: int) -> list[float]:
    """The cells of line `number` as floats; an empty or non-numeric cell is named by its line,
    index and column."""
    if header is not None and len(cells) != len(header):
        raise InvalidInput(
            f"row: line {number} has {len(cells)} values, the header line names {len(header)} columns",
            field="row",
        )
    values = []
    for i, cell in enumerate(cells):
        place = [f"line {number}"] if number > 1 else []
        place += [f"column {header[i]!r}"] if header is not None else []
        where = f"row[{i}]" + (f" ({', '.join(place)})" if place else "")
        if not cell:
            raise InvalidInput(f"{where}: empty cell; every feature needs a number", field="row")
        try:
            values.append(float(cell))
        except ValueError:
            raise InvalidInput(f"{where}: {_shown(cell)} is not a number", field="row") from None
    return values


def _shown(cell: str, limit: int = 40) -> str:
    return repr(cell if len(cell) <= limit else cell[:limit] + "...")


def _json_rows(text: str, feature_names: list[str] | None) -> npt.NDArray[np.float64]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"row: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", field="row"
        ) from None
    rows = data if isinstance(data, list) and data and isinstance(data[0], list | dict) else [data]
    _check_count(len(rows), False)
    out = []
    for n, row in enumerate(rows):
        where = f"[{n}]" if len(rows) > 1 else ""
        if isinstance(row, dict):
            bad = next((k for k, v in row.items() if not _is_json_number(v)), None)
            if bad is not None:
                raise InvalidInput(
                    f"row{where}[{bad!r}]: {_json_shown(row[bad])} is not a number", field="row"
                )
            out.append(_by_name(row, feature_names, f"the JSON object{where}"))
            continue
        if not isinstance(row, list) or not row:
            raise InvalidInput(
                f"row{where}: expected a JSON array of numbers or an object of feature name -> number, "
                f"got {_json_shown(row)}",
                field="row",
            )
        for i, v in enumerate(row):
            if not _is_json_number(v):
                raise InvalidInput(f"row{where}[{i}]: {_json_shown(v)} is not a number", field="row")
        if out and len(row) != len(out[0]):
            raise InvalidInput(f"row{where}: {len(row)} values, row[0] has {len(out[0])}", field="row")
        out.append([float(v) for v in row])
    return np.asarray(out, dtype=np.float64)


def _json_shown(v: object, limit: int = 40) -> str:
    text = orjson.dumps(v).decode()
    return text if len(text) <= limit else text[:limit] + "..."


def _is_json_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _by_name(named: dict[str, float], feature_names: list[str] | None, source: str) -> list[float]:
    """The values of `named` in the model's feature order; unknown and missing names are refused."""
    if feature_names is None:
        raise InvalidInput(
            f"row: {source} names columns, but this model records no feature names; "
            "paste the values alone, in the order the model was trained on",
            field="row",
        )
    known = set(feature_names)
    unknown = [k for k in named if k not in known]
    missing = [k for k in feature_names if k not in named]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"names {_listed(unknown)}, which the model does not take")
        if missing:
            parts.append(f"lacks {_listed(missing)}")
        raise InvalidInput(
            f"row: {source} {' and '.join(parts)}; the model takes {len(feature_names)} features: "
            f"{_listed(feature_names)}",
            field="row",
            details={"unknown": unknown, "missing": missing},
        )
    return [float(named[k]) for k in feature_names]


def _listed(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(_shown(n) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
