"""Row files in chunks (`.npy`, `.csv`, `.parquet`) and the scored copies written back.

A reader yields `Chunk`s: the float features the model takes plus the original columns, which the
writer carries into the output beside `score`, `p_value` and `is_anomaly`. Given the model's
feature names (`Reader.match`), a CSV / parquet header that names any of them picks the features
by name, in the model's order, whatever the file's column order; every other column (an id, a
label) is only carried through, and a feature the file lacks is refused (`MissingColumns`). A
header naming none of them, a CSV without a header, and a model without names keep the features
by position: the numeric columns in file order. Nothing is read whole:
`.npy` is memory-mapped, `.csv` read line by line, `.parquet` by record batches. A bad row raises
`InputError` naming the file and the row (CSV: its line number). pyarrow is imported only for
parquet, so `.npy` and `.csv` need numpy alone.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from latentserve_client._client import AnomalyScores

Array = npt.NDArray[Any]
SCORE_COLUMNS = ("score", "p_value", "is_anomaly")
SUFFIXES = (".npy", ".csv", ".parquet")


class InputError(ValueError):
    """The input (or output) file cannot be used; the message is one line naming file and row."""


class MissingColumns(InputError):  # noqa: N818 (named for the condition, like ServiceUnreachable)
    """The file's header names some of the model's features but lacks others: a usage error."""

    def __init__(self, path: Path, missing: list[str]) -> None:
        shown = ", ".join(repr(n) for n in missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        super().__init__(
            f"{path}: no column named {shown}; the model's features are matched to the header by name"
        )
        self.missing = missing


def match_names(path: Path, header: list[str], feature_names: list[str] | None) -> list[int] | None:
    """The header positions of the model's features in the model's order; None (by position) when
    the model has no names or the header names none of them; MissingColumns when it names some."""
    if not feature_names or not set(header) & set(feature_names):
        return None
    missing = [n for n in feature_names if n not in header]
    if missing:
        raise MissingColumns(path, missing)
    return [header.index(n) for n in feature_names]


@dataclass
class Chunk:
    """Consecutive rows of the input: `start` is the index of the first one (0-based)."""

    start: int
    X: Array  # (n, *row_shape) float64 features sent to the model
    columns: dict[str, Array] = field(default_factory=dict)  # the original columns, in file order
    raw: list[list[str]] | None = None  # CSV: the original fields, written back verbatim
    arrow: Any = None  # parquet: the original pyarrow.RecordBatch, written back with its types

    def __len__(self) -> int:
        return len(self.X)


class Reader(Protocol):
    path: Path
    header: list[str]  # the original column names carried to the output ([] for .npy)
    total: int | None  # number of rows when known up front

    def match(self, feature_names: list[str] | None) -> bool:
        """Pick the features by the model's names when the header names them; True when it did."""
        ...

    def chunks(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...


class Writer(Protocol):
    def write(self, chunk: Chunk, result: AnomalyScores) -> None: ...

    def close(self) -> None: ...


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
    return suffix


def open_input(path: Path, chunk_rows: int) -> Reader:
    """A chunked reader for `path`, chosen by its suffix."""
    suffix = _suffix(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if suffix == ".npy":
        return NpyReader(path, chunk_rows)
    if suffix == ".csv":
        return CsvReader(path, chunk_rows)
    return ParquetReader(path, chunk_rows)


def open_output(path: Path, target: Path, reader: Reader) -> Writer:
    """A writer for the format of `target`'s suffix, writing into `path` (a temporary name)."""
    suffix = _suffix(target)
    clash = sorted(set(SCORE_COLUMNS) & set(reader.header))
    if clash:
        raise InputError(f"{reader.path}: already has a column named {clash[0]!r}; rename it first")
    if suffix == ".csv":
        return CsvWriter(path, reader.header)
    if suffix == ".parquet":
        return ParquetWriter(path, reader.header)
    return NpyWriter(path)


def _first_bad(X: Array) -> int | None:
    """Index of the first row holding NaN or an infinity, or None."""
    if X.dtype.kind != "f":
        return None
    bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


# ---- .npy -----------------------------------------------------------------------------------------
class NpyReader:
    """Rows of a numeric `.npy` array (first axis), memory-mapped."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        self.header: list[str] = []
        try:
            self._A = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError, OSError, EOFError... on bad bytes
            raise InputError(f"{path}: not a readable .npy array: {exc}") from None
        if not isinstance(self._A, np.ndarray):
            raise InputError(f"{path}: expected one .npy array")
        if self._A.dtype.kind not in "fiu" or self._A.ndim < 2:
            raise InputError(
                f"{path}: expected a numeric array of rows (2 or more dimensions), "
                f"got dtype {self._A.dtype} and shape {list(self._A.shape)}"
            )
        self.total: int | None = len(self._A)

    def match(self, feature_names: list[str] | None) -> bool:
        return False  # a .npy array has no column names: rows by position

    def chunks(self) -> Iterator[Chunk]:
        for start in range(0, len(self._A), self.chunk_rows):
            X = np.array(self._A[start : start + self.chunk_rows])
            bad = _first_bad(X)
            if bad is not None:
                raise InputError(f"{self.path}: row {start + bad}: NaN or infinite value")
            yield Chunk(start, X)

    def close(self) -> None:
        pass


# ---- .csv -----------------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CsvReader:
    """Rows of a CSV file; a column is a feature when most of its first chunk's values are numbers.

    The first line holds the column names, unless every field of it is a number (no header: the
    columns are named `x0`, `x1`, ...). Feature values must be finite numbers on every line.
    """

    def __init__(self, path: Path, chunk_rows: int) -> None:
        self.path = path
        self.chunk_rows = chunk_rows
        self.total: int | None = None
        self._file: IO[str] = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed in chunks)
        self._csv = csv.reader(self._file)
        try:
            first = next(self._csv)
        except StopIteration:
            self._file.close()
            raise InputError(f"{path}: empty file; expected a header line and rows") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            self._file.close()
            raise InputError(f"{path}: line 1: {exc}") from None
        self._pending: list[tuple[int, list[str]]] = []
        if first and all(_is_number(v) for v in first):
            self.header = [f"x{j}" for j in range(len(first))]
            self._pending.append((1, first))
        else:
            self.header = first
        if len(set(self.header)) != len(self.header):
            self._file.close()
            raise InputError(f"{path}: line 1: column names repeat: {self.header}")
        self.features: list[int] | None = None

    def match(self, feature_names: list[str] | None) -> bool:
        self.features = match_names(self.path, self.header, feature_names)
        return self.features is not None

    def _read(self) -> list[tuple[int, list[str]]]:
        rows, self._pending = self._pending, []
        try:
            for row in self._csv:
                if not row:
                    continue  # a blank line
                rows.append((self._csv.line_num, row))
                if len(rows) >= self.chunk_rows:
                    break
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(f"{self.path}: line {self._csv.line_num + 1}: {exc}") from None
        return rows

    def _pick_features(self, rows: list[tuple[int, list[str]]]) -> list[int]:
        width = len(self.header)
        features = []
        for j in range(width):
            values = [r[j] for _, r in rows if len(r) == width and r[j].strip()]
            numbers = sum(_is_number(v) for v in values)
            if values and numbers * 2 > len(values):
                features.append(j)
        if not features:
            raise InputError(f"{self.path}: no numeric columns to score among {self.header}")
        return features

    def _bad_row(self, rows: list[tuple[int, list[str]]], features: list[int]) -> InputError:
        for line, row in rows:
            for j in features:
                value = row[j]
                name = self.header[j]
                if not value.strip():
                    return InputError(f"{self.path}: line {line}: column {name!r} is empty")
                if not _is_number(value):
                    return InputError(f"{self.path}: line {line}: column {name!r}: {value!r} is not a number")
        return InputError(f"{self.path}: rows are not numbers")

    def chunks(self) -> Iterator[Chunk]:
        width = len(self.header)
        start = 0
        try:
            while rows := self._read():
                for line, row in rows:
                    if len(row) != width:
                        raise InputError(
                            f"{self.path}: line {line}: {len(row)} fields, the header has {width}"
                        )
                if self.features is None:
                    self.features = self._pick_features(rows)
                features = self.features
                try:
                    X = np.array([[row[j] for j in features] for _, row in rows], dtype=np.float64)
                except ValueError:
                    raise self._bad_row(rows, features) from None
                bad = _first_bad(X)
                if bad is not None:
                    line, row = rows[bad]
                    j = next(j for j in features if not np.isfinite(float(row[j])))
                    raise InputError(
                        f"{self.path}: line {line}: column {self.header[j]!r} is {row[j].strip()!r}; "
                        "features must be finite numbers"
                    )
                columns: dict[str, Array] = {}
                for j, name in enumerate(self.header):
                    if j in features:
                        columns[name] = X[:, features.index(j)]
                    else:
                        columns[name] = np.array([row[j] for _, row in rows], dtype=object)
                yield Chunk(start, X, columns, raw=[row for _, row in rows])
                start += len(rows)
        finally:
            self.close()

    def close(self) -> None:
        self._file.close()


# ---- .parquet -------------------------------------------------------------------------------------
def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            "reading or writing .parquet needs pyarrow: pip install 'latentserve-client[parquet]'"
        ) from None
    return pa, pq


class ParquetReader:
    """Rows of a parquet file by record batches; integer and float columns are the features."""

    def __init__(self, path: Path, chunk_rows: int) -> None:
        pa, pq = _pyarrow()
        self.path = path
        self.chunk_rows = chunk_rows
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
            raise InputError(f"{path}: not a readable parquet file: {exc}") from None
        schema = self._file.schema_arrow
        self.header = list(schema.names)
        self.features = [
            f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
        ]
        if not self.features:
            raise InputError(f"{path}: no numeric columns to score among {self.header}")
        self.total: int | None = self._file.metadata.num_rows
        self._numeric = list(self.features)

    def match(self, feature_names: list[str] | None) -> bool:
        picked = match_names(self.path, self.header, feature_names)
        if picked is None:
            return False
        names = [self.header[j] for j in picked]
        text = [n for n in names if n not in self._numeric]
        if text:
            kind = self._file.schema_arrow.field(text[0]).type
            raise InputError(f"{self.path}: column {text[0]!r} holds {kind}, not numbers")
        self.features = names
        return True

    def chunks(self) -> Iterator[Chunk]:
        start = 0
        try:
            for batch in self._file.iter_batches(batch_size=self.chunk_rows):
                feats = []
                for name in self.features:
                    col = batch.column(name)
                    if col.null_count:
                        i = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
                        raise InputError(f"{self.path}: row {start + i}: column {name!r} is null")
                    feats.append(col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False))
                X = np.column_stack(feats)
                bad = _first_bad(X)
                if bad is not None:
                    name = next(
                        n for n, c in zip(self.features, feats, strict=True) if not np.isfinite(c[bad])
                    )
                    raise InputError(f"{self.path}: row {start + bad}: column {name!r} is NaN or infinite")
                columns = {name: batch.column(name).to_numpy(zero_copy_only=False) for name in self.header}
                yield Chunk(start, X, columns, arrow=batch)
                start += batch.num_rows
        except InputError:
            raise
        except Exception as exc:  # a corrupt row group surfaces only while reading
            raise InputError(f"{self.path}: unreadable at row {start}: {exc}") from None

    def close(self) -> None:
        self._file.close()


# ---- writers --------------------------------------------------------------------------------------
def _flags(result: AnomalyScores) -> list[str]:
    return ["true" if a else "false" for a in result.is_anomaly.tolist()]


class CsvWriter:
    """The original fields of each row (verbatim for CSV input), then score, p_value, is_anomaly."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._csv = csv.writer(self._file)
        self._csv.writerow([*header, *SCORE_COLUMNS])

    def write(self, chunk: Chunk, result: AnomalyScores) -> None:
        rows: Any
        if chunk.raw is not None:
            rows = chunk.raw
        elif chunk.columns:
            rows = zip(*(_text(col) for col in chunk.columns.values()), strict=True)
        else:
            rows = ([] for _ in range(len(chunk)))
        scores = result.scores.astype(str).tolist()
        p_values = result.p_values.astype(str).tolist()
        for row, s, p, a in zip(rows, scores, p_values, _flags(result), strict=True):
            self._csv.writerow([*row, s, p, a])

    def close(self) -> None:
        self._file.close()


def _text(col: Array) -> list[str]:
    if col.dtype.kind == "b":
        return ["true" if v else "false" for v in col.tolist()]
    if col.dtype.kind in "fiu":
        return [str(v) for v in col.tolist()]
    return ["" if v is None else str(v) for v in col.tolist()]


class ParquetWriter:
    """The original columns (with their parquet types for parquet input), then the three scores."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self._pa, self._pq = _pyarrow()
        self._path = path
        self._header = header
        self._writer: Any = None

    def write(self, chunk: Chunk, result: AnomalyScores) -> None:
        pa = self._pa
        if chunk.arrow is not None:
            arrays = list(chunk.arrow.columns)
        else:
            arrays = [
                pa.array(col, type=None if col.dtype.kind != "O" else pa.string())
                for col in chunk.columns.values()
            ]
        arrays += [pa.array(result.scores), pa.array(result.p_values), pa.array(result.is_anomaly)]
        batch = pa.RecordBatch.from_arrays(arrays, names=[*chunk.columns, *SCORE_COLUMNS])
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(self._path, batch.schema)
        self._writer.write_batch(batch)

    def close(self) -> None:
        if self._writer is None:  # no rows: the columns, all empty
            pa = self._pa
            fields = [pa.field(name, pa.string()) for name in self._header]
            fields += [
                pa.field("score", pa.float32()),
                pa.field("p_value", pa.float32()),
                pa.field("is_anomaly", pa.bool_()),
            ]
            self._writer = self._pq.ParquetWriter(self._path, pa.schema(fields))
        self._writer.close()


class NpyWriter:
    """A structured `.npy` array: the numeric and boolean input columns, then the three scores.

    Text columns cannot live in a fixed-width record streamed chunk by chunk, so they are left out.
    The row count is known only at the end: the header space is reserved and filled in on close.
    Many columns make a long header: past 10,000 bytes `np.load` asks for `max_header_size=`.
    """

    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close)
        self._dtype: np.dtype[Any] | None = None
        self._rows = 0
        self._header_bytes = 0
        self._prefix = 10
        self.dropped: list[str] = []

    def _start(self, chunk: Chunk) -> np.dtype[Any]:
        fields: list[tuple[str, Any]] = []
        for name, col in chunk.columns.items():
            if col.dtype.kind in "biuf":
                fields.append((name, col.dtype))
            else:
                self.dropped.append(name)
        fields += [("score", np.float32), ("p_value", np.float32), ("is_anomaly", np.bool_)]
        dtype = np.dtype(fields)
        # room for the descr and a 20-digit row count, a multiple of 64 bytes as numpy aligns it
        need = 10 + len(self._header_text(dtype, 10**20)) + 1
        self._prefix = 10 if need <= 0xFFFF else 12  # format 1.0 (2-byte length) or 2.0 (4-byte)
        self._header_bytes = -(-(need + self._prefix - 10) // 64) * 64
        self._file.write(b"\0" * self._header_bytes)
        return dtype

    @staticmethod
    def _header_text(dtype: np.dtype[Any], rows: int) -> str:
        descr = np.lib.format.dtype_to_descr(dtype)
        return f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': ({rows},), }}"

    def write(self, chunk: Chunk, result: AnomalyScores) -> None:
        if self._dtype is None:
            self._dtype = self._start(chunk)
        records = np.empty(len(chunk), dtype=self._dtype)
        for name in self._dtype.names or ():
            if name in SCORE_COLUMNS:
                continue
            records[name] = chunk.columns[name]
        records["score"] = result.scores
        records["p_value"] = result.p_values
        records["is_anomaly"] = result.is_anomaly
        self._file.write(records.tobytes())
        self._rows += len(chunk)

    def close(self) -> None:
        if self._dtype is None:  # no rows: an empty array of the three scores
            self._dtype = self._start(Chunk(0, np.empty((0, 0))))
        text = self._header_text(self._dtype, self._rows)
        body = text.ljust(self._header_bytes - self._prefix - 1) + "\n"
        size = self._prefix - 8  # bytes of the header length: 2 (format 1.0) or 4 (format 2.0)
        magic = b"\x93NUMPY" + bytes([1 if size == 2 else 2, 0])
        header = magic + len(body).to_bytes(size, "little") + body.encode("latin1")
        assert len(header) == self._header_bytes
        self._file.seek(0)
        self._file.write(header)
        self._file.close()
