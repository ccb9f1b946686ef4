"""Data sets: the embedded ones, MNIST-style IDX files, and the user's own matrices and images.

Every loader returns a `Dataset` whose X is float32 with rows shaped (n, *shape): images are
(n, H, W) for grey or (n, H, W, C) in [0, 1]; features are (n, F); sequences are (n, T, F).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import math
import os
import shlex
import struct
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from training.config import DataConfig
from training.errors import DataError, UsageError

Layout = Literal["features", "image", "sequence"]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

EMBEDDED = ("digits", "breast-cancer", "gaussian-2d")
IDX_DATASETS = ("mnist", "fashion-mnist")
log = logging.getLogger("latentserve.training")

# The original files and their md5 sums, as published with each data set.
IDX_FILES: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
MIRRORS: dict[str, list[str]] = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}


@dataclass(frozen=True)
class Dataset:
    """Rows X (n, *shape) float32 with optional integer labels y; an optional held-out test split."""

    name: str
    X: F32
    y: I64 | None
    layout: Layout
    X_test: F32 | None = None
    y_test: I64 | None = None
    source: str = ""
    feature_names: tuple[str, ...] | None = None  # the column names of a CSV / parquet header
    label_column: str | None = None  # the table column y came from (recorded in the manifest)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.X.shape[-1]) if self.layout == "image" and self.X.ndim == 4 else 1

    @property
    def value_range(self) -> tuple[float, float]:
        return float(self.X.min()), float(self.X.max())


@dataclass(frozen=True)
class Splits:
    """Seeded train / validation / calibration split of the rows kept by the class filter."""

    X_train: F32
    X_val: F32
    X_cal: F32
    y_train: I64 | None
    y_val: I64 | None
    y_cal: I64 | None


# ---- embedded --------------------------------------------------------------------------------
def gaussian_2d(n: int = 10_000, seed: int = 0) -> F32:
    """The lecture's example: n points from N(mu=(-1, 2), Sigma=[[4, 2], [2, 2]])."""
    rng = np.random.default_rng(seed)
    mu = np.array([-1.0, 2.0])
    sigma = np.array([[4.0, 2.0], [2.0, 2.0]])
    return rng.multivariate_normal(mu, sigma, size=n).astype(np.float32)


def _embedded(name: str, seed: int) -> Dataset:
    if name == "gaussian-2d":
        return Dataset(name, gaussian_2d(seed=seed), None, "features", source="synthetic")
    from sklearn.datasets import load_breast_cancer, load_digits

    if name == "digits":
        digits = load_digits()
        X = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8) in [0, 1]
        return Dataset(name, X, digits.target.astype(np.int64), "image", source="scikit-learn")
    bc = load_breast_cancer()
    # label 1 = benign in scikit-learn; keep it as the class id
    return Dataset(
        name,
        bc.data.astype(np.float32),
        bc.target.astype(np.int64),
        "features",
        source="scikit-learn",
        feature_names=tuple(str(c) for c in bc.feature_names),
    )


# ---- IDX (MNIST, Fashion-MNIST) ---------------------------------------------------------------
def default_data_dir(dataset: str) -> Path:
    env = os.environ.get("LATENTSERVE_DATA_DIR")
    if env:
        return Path(env) / dataset
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "latentserve" / dataset


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(dataset: str, filename: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in MIRRORS[dataset]:
        tmp = dest.with_suffix(dest.suffix + ".part")
        try:
            with urllib.request.urlopen(mirror + filename, timeout=30) as resp, tmp.open("wb") as out:
                out.write(resp.read())
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{mirror}: {exc}")
            tmp.unlink(missing_ok=True)
            continue
        if _md5(tmp) == IDX_FILES[dataset][filename]:
            tmp.replace(dest)
            return
        errors.append(f"{mirror}: checksum mismatch")
        tmp.unlink(missing_ok=True)
    raise DataError(f"could not download {filename}: " + "; ".join(errors))


def _read_idx(path: Path) -> npt.NDArray[np.uint8]:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 8:
        raise DataError(f"{path}: not an IDX file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {arr.size} values")
    return arr.reshape(dims)


def _idx_dataset(name: str, data_dir: Path | None, download: bool) -> Dataset:
    folder = data_dir if data_dir is not None else default_data_dir(name)
    missing = [f for f in IDX_FILES[name] if not (folder / f).is_file()]
    if missing and download:
        for filename in missing:
            try:
                _fetch(name, filename, folder / filename)
            except DataError as exc:
                raise DataError(
                    f"{name}: {exc}. Offline? Put the original files {sorted(IDX_FILES[name])} "
                    f"into {folder} (or pass --data-dir DIR / set LATENTSERVE_DATA_DIR)"
                ) from exc
    elif missing:
        raise DataError(
            f"{name}: missing {missing} in {folder}; put the original IDX .gz files there "
            "(or pass --data-dir DIR / set LATENTSERVE_DATA_DIR)"
        )
    arrays = {filename: _read_idx(folder / filename) for filename in IDX_FILES[name]}
    for filename, md5 in IDX_FILES[name].items():
        # downloads are md5-checked in _fetch; a local copy may be re-compressed (another gzip
        # container around the same bytes), so its content is what is checked
        if _md5(folder / filename) != md5:
            _check_idx_content(name, folder / filename, arrays[filename])
    X = arrays["train-images-idx3-ubyte.gz"].astype(np.float32) / 255.0
    y = arrays["train-labels-idx1-ubyte.gz"].astype(np.int64)
    Xt = arrays["t10k-images-idx3-ubyte.gz"].astype(np.float32) / 255.0
    yt = arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64)
    return Dataset(name, X, y, "image", Xt, yt, source=str(folder))


IDX_SHAPES = {  # the published shapes of both IDX data sets; labels are 0..9
    "train-images-idx3-ubyte.gz": (60000, 28, 28),
    "train-labels-idx1-ubyte.gz": (60000,),
    "t10k-images-idx3-ubyte.gz": (10000, 28, 28),
    "t10k-labels-idx1-ubyte.gz": (10000,),
}


def _check_idx_content(name: str, path: Path, arr: npt.NDArray[np.uint8]) -> None:
    """A local IDX file whose .gz bytes differ from the published ones: its header (read by
    `_read_idx`), shape and label range must be those of the published file; raise naming the check."""
    expected = IDX_SHAPES[path.name]
    if arr.shape != expected:
        raise DataError(
            f"{path}: its .gz differs from the published {name} file and its content does not match "
            f"either: shape {list(arr.shape)}, expected {list(expected)}"
        )
    if arr.ndim == 1 and int(arr.max()) > 9:
        raise DataError(
            f"{path}: its .gz differs from the published {name} file and its content does not match "
            f"either: labels go up to {int(arr.max())}, expected 0..9"
        )
    log.info(
        "%s: re-compressed copy (the .gz differs from the published one); its content checks passed", path
    )


# ---- user files ------------------------------------------------------------------------------
def check_matrix(X: npt.NDArray[np.generic], path: Path, row_offset: int = 0) -> F32:
    """X as float32, or a DataError naming `path` and the first row (plus `row_offset`) that is bad."""
    if X.size == 0 or X.shape[0] == 0:
        raise DataError(f"{path}: no rows")
    try:
        Xf = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: not numeric: {exc}") from exc
    bad = ~np.isfinite(Xf.reshape(len(Xf), -1)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + row_offset
        raise DataError(f"{path}: row {row} contains NaN or infinity")
    return Xf


# column names that are never features unless named in --columns: labels, and row ids (pandas
# writes its index as "Unnamed: 0")
LABEL_LIKE = ("label", "labels", "target", "class", "is_anomaly", "anomaly", "outlier")
ID_LIKE = ("id", "index", "unnamed: 0")


@dataclass(frozen=True)
class Table:
    """What a CSV / parquet file gives: the chosen features, their names, and the labels."""

    X: F32
    names: tuple[str, ...] | None  # None: a CSV without a header line
    y: I64 | None = None  # the label column's values (with label_column)


def choose_columns(
    path: Path,
    header: Sequence[str],
    columns: Sequence[str] | None,
    drop_columns: Sequence[str],
    label_column: str | None,
) -> list[str]:
    """The feature columns of a table, in order: `columns` when given, else every column but the
    dropped ones and the label. A column named like labels (`LABEL_LIKE`) is never silently a
    feature: it must be named by --label-column, --drop-columns or --columns."""
    for flag, given in (("--columns", columns), ("--drop-columns", drop_columns)):
        if isinstance(given, str):  # DataConfig(columns="a,b") would pick the letters
            raise DataError(f"{flag}: expected a tuple of column names, got the string {given!r}")
    repeated = sorted({n for n in header if list(header).count(n) > 1})
    if repeated:
        raise DataError(f"{path}: column names repeat in the header: {repeated}")
    asked = [*(columns or ()), *drop_columns, *([label_column] if label_column else [])]
    unknown = [c for c in dict.fromkeys(asked) if c not in header]
    if unknown:
        raise DataError(
            f"{path}: no column named {', '.join(map(repr, unknown))}; the header has {list(header)}"
        )
    if label_column is not None and columns and label_column in columns:
        raise DataError(
            f"{path}: column {label_column!r} is both the label (--label-column) and a feature (--columns)"
        )
    if columns:
        features = [c for c in columns if c not in drop_columns]
    else:
        features = [c for c in header if c not in drop_columns and c != label_column]
        for c in features:
            flag = shlex.quote(c)
            if c.strip().lower() in LABEL_LIKE:
                raise DataError(
                    f"{path}: column {c!r} looks like labels, not a feature; pass --label-column {flag} to "
                    f"use it as the labels (--classes, evaluate), --drop-columns {flag} to leave it out, "
                    "or list the features with --columns"
                )
            if c.strip().lower() in ID_LIKE:
                raise DataError(
                    f"{path}: column {c!r} looks like row ids, not a feature; pass --drop-columns {flag} "
                    "to leave it out, or list the features with --columns"
                )
    if not features:
        raise DataError(f"{path}: no feature columns left (--columns / --drop-columns leave none)")
    return features


def _cell_error(path: Path, where: str, name: str, value: str, flag: bool) -> DataError:
    """A feature cell that is not a finite number: name the line (or row), the column and the fix
    (`flag`: the table has a header, so --drop-columns can name the column)."""
    column = f"column {name!r}" if flag else f"column {name}"
    fix = f"; leave the column out with --drop-columns {shlex.quote(name)}" if flag else ""
    text = value.strip()
    if not text:
        return DataError(f"{path}: {where}: {column} is empty; fill the cell{fix}")
    if _is_float(text):
        return DataError(f"{path}: {where}: {column} is {text!r}, not a finite number{fix}")
    return DataError(f"{path}: {where}: {column} holds text {text!r}, not a number{fix}")


def _label_of(path: Path, where: str, name: str, value: str) -> int:
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not number.is_integer():
        shown = "empty" if not text else repr(text)
        raise DataError(
            f"{path}: {where}: label column {name!r} is {shown}; labels must be integers "
            "(--classes and evaluate compare them)"
        )
    return int(number)


def _read_csv(
    path: Path,
    columns: Sequence[str] | None = None,
    drop_columns: Sequence[str] = (),
    label_column: str | None = None,
) -> Table:
    """A CSV's rows. The first line is the header unless every field of it is a number; feature
    cells must be finite numbers, and a bad one names its line and column."""
    records: list[tuple[int, list[str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            for record in reader:
                if record and any(c.strip() for c in record):
                    records.append((reader.line_num, record))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a text CSV file (UTF-8, comma-separated): {exc}") from None
    if not records:
        raise DataError(f"{path}: no rows")
    first = records[0][1]
    header: list[str] | None = None
    if not all(_is_float(c) for c in first):
        header = [c.strip() for c in first]
        records = records[1:]
    named = bool(columns or drop_columns or label_column)
    if header is None and named:
        raise DataError(
            f"{path}: --columns, --drop-columns and --label-column need a header line of column names"
        )
    width = len(header) if header is not None else len(first)
    if header is not None:
        features = choose_columns(path, header, columns, drop_columns, label_column)
        index = [header.index(c) for c in features]
        names = header
    else:
        index = list(range(width))
        names = [str(j + 1) for j in range(width)]  # 1-based positions
    rows: list[list[float]] = []
    labels: list[int] = []
    at = header.index(label_column) if header is not None and label_column else None
    for lineno, record in records:
        if len(record) != width:
            raise DataError(f"{path}: line {lineno} has {len(record)} columns, expected {width}")
        try:
            rows.append([float(record[j]) for j in index])
        except ValueError:
            j = next(j for j in index if not _is_float(record[j]))
            raise _cell_error(path, f"line {lineno}", names[j], record[j], header is not None) from None
        if at is not None:
            labels.append(_label_of(path, f"line {lineno}", names[at], record[at]))
    if not rows:
        raise DataError(f"{path}: no rows")
    X = np.asarray(rows, dtype=np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        i, k = (int(v) for v in np.argwhere(bad)[0])
        j = index[k]
        lineno, record = records[i]
        raise _cell_error(path, f"line {lineno}", names[j], record[j], header is not None)
    out_names = tuple(header[j] for j in index) if header is not None else None
    return Table(X, out_names, np.asarray(labels, dtype=np.int64) if at is not None else None)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_parquet(
    path: Path,
    columns: Sequence[str] | None = None,
    drop_columns: Sequence[str] = (),
    label_column: str | None = None,
) -> Table:
    """A parquet file's rows; numeric (and boolean) columns only, no nulls, no NaN. A bad cell
    names its column and row (0-based)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    if not table.column_names:
        raise DataError(f"{path}: no columns")
    features = choose_columns(path, table.column_names, columns, drop_columns, label_column)
    cols = []
    for name in features:
        column = table.column(name)
        kind = column.type
        flag = shlex.quote(name)
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        if not (numeric or pa.types.is_decimal(kind)):
            raise DataError(
                f"{path}: row 0: column {name!r} holds {kind}, not numbers; leave it out with "
                f"--drop-columns {flag}"
            )
        if column.null_count:
            i = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
            raise DataError(
                f"{path}: row {i}: column {name!r} is empty (null); fill the cell; leave the column out "
                f"with --drop-columns {flag}"
            )
        values = column.to_numpy(zero_copy_only=False).astype(np.float32)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{path}: row {i}: column {name!r} is {values[i]}, not a finite number; leave the "
                f"column out with --drop-columns {flag}"
            )
        cols.append(values)
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")
    y = None
    if label_column is not None:
        raw = table.column(label_column).to_pylist()
        y = np.asarray(
            [
                _label_of(path, f"row {i}", label_column, "" if v is None else str(v))
                for i, v in enumerate(raw)
            ],
            dtype=np.int64,
        )
    return Table(np.stack(cols, axis=1), tuple(features), y)


def _read_images(folder: Path) -> F32:
    from PIL import Image, UnidentifiedImageError

    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
    )
    if not files:
        raise DataError(f"{folder}: no image files (.png, .jpg, .jpeg, .bmp, .gif)")
    arrays = []
    shape = None
    for p in files:
        try:
            with Image.open(p) as im:
                mode = "L" if im.mode in ("L", "1", "P", "LA", "I", "I;16") else "RGB"
                arr = np.asarray(im.convert(mode), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{p}: not a readable image: {exc}") from exc
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise DataError(f"{p}: image has shape {list(arr.shape)}, the first one had {list(shape)}")
        arrays.append(arr)
    return np.stack(arrays)


def _user_file(path: Path, layout: Layout | None, mmap: bool = False, **pick: Any) -> Dataset:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    suffix = "" if path.is_dir() else path.suffix.lower()
    if suffix not in (".csv", ".parquet") and any(pick.values()):
        raise DataError(
            f"{path}: --columns, --drop-columns and --label-column apply to .csv and .parquet files only"
        )
    if path.is_dir():
        X = _read_images(path)
        return Dataset(path.name, X, None, "image", source=str(path))
    if not path.is_file():  # a FIFO, a socket, a device: reading it could block for ever
        raise DataError(
            f"{path}: not a regular file; expected a .npy, .npz, .csv or .parquet file or a folder"
        )
    if suffix == ".npz":
        return _read_npz(path, layout)
    names: tuple[str, ...] | None = None
    y: I64 | None = None
    if suffix == ".npy":
        try:
            raw = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, OSError) as exc:
            raise DataError(f"{path}: not a readable .npy file: {exc}") from exc
        if raw.dtype.kind not in "fiub":
            raise DataError(f"{path}: dtype {raw.dtype} is not numeric")
        if mmap:  # left on disk: rows are read (and checked) chunk by chunk by whoever streams them
            if raw.ndim == 0 or len(raw) == 0:
                raise DataError(f"{path}: no rows")
            X = raw
        else:
            X = check_matrix(raw, path)
    elif suffix in (".csv", ".parquet"):
        table = (_read_csv if suffix == ".csv" else _read_parquet)(path, **pick)  # bad files: DataError
        X, names, y = table.X, table.names, table.y
    else:
        raise DataError(
            f"{path}: unsupported file type {suffix!r}; expected .npy, .npz, .csv, .parquet or a folder "
            "of images"
        )
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    label = pick.get("label_column")
    return Dataset(
        path.stem, X, y, guess_layout(X, layout), source=str(path), feature_names=names, label_column=label
    )


def _npz_array(path: Path, archive: Any, key: str) -> npt.NDArray[np.generic]:
    try:
        A: npt.NDArray[np.generic] = archive[key]
    except (ValueError, OSError) as exc:  # an object array (pickles are refused), a damaged member
        raise DataError(f"{path}: array {key!r} is not readable as numbers: {exc}") from exc
    if A.dtype.kind not in "fiub":
        raise DataError(f"{path}: array {key!r} has dtype {A.dtype}; expected numbers")
    return A


def _npz_labels(path: Path, labels: npt.NDArray[np.generic], part: str, n: int) -> I64:
    Y = np.asarray(labels, dtype=np.float64) if labels.ndim == 1 else np.zeros(0)
    if len(Y) != n or not (np.isfinite(Y).all() and (np.round(Y) == Y).all()):
        raise DataError(
            f"{path}: y_{part} must hold {n} integer labels (one per row of x_{part}); "
            f"got shape {list(labels.shape)} and dtype {labels.dtype}"
        )
    return Y.astype(np.int64)


def _read_npz(path: Path, layout: Layout | None) -> Dataset:
    """A .npz archive of rows `x_<part>` with optional labels `y_<part>` (the form Keras and
    Fashion-MNIST ship): `x_test` / `y_test` is the held-out test split, every other part (`x_train`
    first, then by name) makes up the rows; uint8 values are scaled to [0, 1] as the IDX loader does."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not a .npz archive (a single array: name the file .npy)")
    with archive:
        keys = sorted(archive.files)
        parts = sorted((k[2:] for k in keys if k.startswith("x_")), key=lambda p: (p != "train", p))
        if not parts:
            raise DataError(f"{path}: no arrays named x_<part> (e.g. x_train, x_test); it holds {keys}")
        orphans = [k for k in keys if k.startswith("y_") and f"x_{k[2:]}" not in keys]
        if orphans:
            raise DataError(f"{path}: labels {orphans} have no matching x_<part> array")
        X: dict[str, F32] = {}
        y: dict[str, I64 | None] = {}
        for part in parts:
            A = _npz_array(path, archive, f"x_{part}")
            if A.ndim < 2:
                raise DataError(f"{path}: x_{part} has shape {list(A.shape)}; expected rows (n, ...)")
            scaled = A.astype(np.float32) / np.float32(255.0) if A.dtype == np.uint8 else A
            X[part] = check_matrix(scaled, path.with_name(f"{path.name}[x_{part}]"))
            y[part] = None
            if f"y_{part}" in keys:
                y[part] = _npz_labels(path, _npz_array(path, archive, f"y_{part}"), part, len(A))
    shapes = {p: list(a.shape[1:]) for p, a in X.items()}
    if len({str(s) for s in shapes.values()}) > 1:
        raise DataError(f"{path}: the x_<part> arrays have different row shapes {shapes}")
    rows = [p for p in parts if p != "test"] or ["test"]
    if len({y[p] is None for p in rows}) > 1:
        raise DataError(f"{path}: some of {[f'x_{p}' for p in rows]} have y_<part> labels and some not")
    X_all = X[rows[0]] if len(rows) == 1 else np.concatenate([X[p] for p in rows])
    found = [labels for p in rows if (labels := y[p]) is not None]
    y_all = (found[0] if len(found) == 1 else np.concatenate(found)) if found else None
    test = "test" in X and rows != ["test"]
    return Dataset(
        path.stem,
        X_all,
        y_all,
        guess_layout(X_all, layout),
        X_test=X["test"] if test else None,
        y_test=y["test"] if test else None,
        source=str(path),
    )


def guess_layout(X: npt.NDArray[np.generic], layout: Layout | None = None) -> Layout:
    """The layout of rows X (n, ...) unless given: (n, F) features, (n, H, W) and (n, H, W, C)
    images, (n, T, F) a sequence only when asked for."""
    if layout is not None:
        return layout
    return "features" if X.ndim == 2 else ("sequence" if X.ndim == 3 and layout == "sequence" else "image")


# ---- in-memory data --------------------------------------------------------------------------
IN_MEMORY = "in-memory"  # the data set name of rows handed over as an array or a DataFrame


def dataset_from_array(X: object, y: object = None, *, layout: Layout | None = None) -> Dataset:
    """A Dataset of in-memory rows: a numpy array (or nested lists of numbers) (n, F), (n, H, W) or
    (n, H, W, C), or a pandas DataFrame (its columns are the feature names), with optional labels
    y (n,) of integers. Anything that is not numeric rows is a UsageError saying what was expected;
    rows with NaN or infinity are a DataError naming the row."""
    names: tuple[str, ...] | None = None
    if _is_dataframe(X):
        frame: Any = X
        text = [str(c) for c, dt in frame.dtypes.items() if getattr(dt, "kind", "O") not in "fiub"]
        if text:
            raise UsageError(
                f"X: column {text[0]!r} is not numeric ({frame.dtypes[text[0]]}); every column of the "
                f"DataFrame is a feature: drop or encode {text} first"
            )
        names = tuple(str(c) for c in frame.columns)
        A = frame.to_numpy(dtype=np.float32, na_value=np.nan)
    else:
        if isinstance(X, (str, bytes, Path, dict)) or X is None:
            raise UsageError(_NOT_ROWS.format(got=_what(X)))
        try:
            A = np.asarray(X)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise UsageError(_NOT_ROWS.format(got=f"{_what(X)} ({exc})")) from None
        if A.dtype.kind not in "fiub":
            raise UsageError(_NOT_ROWS.format(got=f"{_what(X)} of dtype {A.dtype}"))
    if A.ndim == 0 or A.shape[0] == 0 or A.size == 0:
        raise UsageError(_NOT_ROWS.format(got=f"{_what(X)} of shape {list(A.shape)}: no rows"))
    if A.ndim == 1:
        A = A.reshape(-1, 1)
    X32 = check_matrix(A, Path("X"))
    name = "dataframe" if names is not None else IN_MEMORY
    labels = _labels(y, len(X32))
    return Dataset(name, X32, labels, guess_layout(X32, layout), source=name, feature_names=names)


_NOT_ROWS = (
    "X: expected rows of numbers: a numpy array (n, features), (n, H, W) or (n, H, W, C) images in "
    "[0, 1], or a pandas DataFrame of numeric columns; got {got} (a str or Path is a file's path)"
)


def _what(X: object) -> str:
    return "None" if X is None else f"a {type(X).__name__}"


def _is_dataframe(X: object) -> bool:
    """A pandas DataFrame, recognised without importing pandas."""
    return type(X).__module__.startswith("pandas") and hasattr(X, "columns") and hasattr(X, "dtypes")


def _labels(y: object, n: int) -> I64 | None:
    """y as (n,) int64 labels, or a UsageError saying what was expected."""
    if y is None:
        return None
    try:
        Y = np.asarray(y)
    except (TypeError, ValueError):
        Y = np.asarray([None])
    ok = Y.ndim == 1 and len(Y) == n and Y.dtype.kind in "iub"
    if Y.dtype.kind == "f" and Y.ndim == 1 and len(Y) == n:
        ok = bool(np.isfinite(Y).all() and (np.round(Y) == Y).all())
    if not ok:
        raise UsageError(
            f"y: expected {n} integer labels (n,), one per row of X; got {_what(y)} of shape "
            f"{list(Y.shape)} and dtype {Y.dtype}"
        )
    return Y.astype(np.int64)


def load_dataset(
    name: str,
    *,
    data_dir: Path | None = None,
    seed: int = 0,
    download: bool = True,
    layout: Layout | None = None,
    mmap: bool = False,
    columns: Sequence[str] | None = None,
    drop_columns: Sequence[str] = (),
    label_column: str | None = None,
) -> Dataset:
    """Load an embedded data set, an IDX data set, or a user file / image folder by path.

    With `mmap`, a .npy file is memory-mapped instead of read (for files larger than memory).
    A .csv / .parquet table's features are picked by name (`choose_columns`): `columns`, else every
    column but `drop_columns` and `label_column`, whose integer values become the labels y.
    """
    pick: dict[str, Any] = {"columns": columns, "drop_columns": drop_columns, "label_column": label_column}
    if name in EMBEDDED or name in IDX_DATASETS:
        if any(pick.values()):
            raise DataError(
                f"{name}: --columns, --drop-columns and --label-column apply to .csv and .parquet files only"
            )
        return _embedded(name, seed) if name in EMBEDDED else _idx_dataset(name, data_dir, download)
    path = Path(name)
    if path.suffix or path.exists() or os.sep in name:
        return _user_file(path, layout, mmap, **pick)
    raise DataError(
        f"unknown dataset {name!r}; expected one of {[*EMBEDDED, *IDX_DATASETS]} "
        "or a path to a .npy / .npz / .csv / .parquet file or a folder of images"
    )


def filter_classes(ds: Dataset, classes: list[int] | None) -> tuple[F32, I64 | None]:
    """Keep only rows whose label is in `classes` (one-class training); all rows if None."""
    if not classes:
        return ds.X, ds.y
    if ds.y is None:
        hint = _label_hint(ds)
        raise DataError(f"{ds.name}: --classes needs a labelled data set; this one has no labels{hint}")
    known = sorted(set(ds.y.tolist()))
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise DataError(f"{ds.name}: classes {unknown} do not occur; labels are {known}")
    keep = np.isin(ds.y, classes)
    return ds.X[keep], ds.y[keep]


def _label_hint(ds: Dataset) -> str:
    """For a table: which flag gives it labels."""
    if Path(ds.source).suffix.lower() in (".csv", ".parquet"):
        return "; name its column of labels with --label-column NAME"
    return ""


def split(
    X: F32,
    y: I64 | None,
    *,
    seed: int,
    validation: float = DataConfig.validation,
    calibration: float = DataConfig.calibration,
) -> Splits:
    """Shuffle with `seed`, then cut train / validation / calibration."""
    n = len(X)
    n_val = max(1, round(n * validation))
    n_cal = max(1, round(n * calibration))
    if n - n_val - n_cal < 2:
        raise DataError(f"only {n} rows: too few to split into train, validation and calibration")
    order = np.random.default_rng(seed).permutation(n)
    tr, va, ca = order[: n - n_val - n_cal], order[n - n_val - n_cal : n - n_cal], order[n - n_cal :]
    pick = (lambda idx: y[idx]) if y is not None else (lambda idx: None)
    return Splits(X[tr], X[va], X[ca], pick(tr), pick(va), pick(ca))
