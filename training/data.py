"""Data sets: the embedded ones, MNIST-style IDX files, and the user's own matrices and images.

Every loader returns a `Dataset` whose X is float32 with rows shaped (n, *shape): images are
(n, H, W) for grey or (n, H, W, C) in [0, 1]; features are (n, F); sequences are (n, T, F).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import os
import struct
import urllib.error
import urllib.request
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


def _read_csv(path: Path) -> tuple[F32, tuple[str, ...] | None]:
    rows: list[list[float]] = []
    width = None
    header: tuple[str, ...] | None = None
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for lineno, record in enumerate(reader, start=1):
            if not record or all(not c.strip() for c in record):
                continue
            try:
                values = [float(c) for c in record]
            except ValueError:
                if lineno == 1 and not rows:  # a header line: the column names
                    header = tuple(c.strip() for c in record)
                    continue
                bad = next(c for c in record if not _is_float(c))
                raise DataError(f"{path}: line {lineno}: {bad!r} is not a number") from None
            if width is None:
                width = len(values)
            elif len(values) != width:
                raise DataError(f"{path}: line {lineno} has {len(values)} columns, expected {width}")
            if not all(np.isfinite(values)):
                raise DataError(f"{path}: line {lineno} contains NaN or infinity")
            rows.append(values)
    if not rows:
        raise DataError(f"{path}: no rows")
    return np.asarray(rows, dtype=np.float32), header if header and len(header) == width else None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_parquet(path: Path) -> tuple[F32, tuple[str, ...]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cols = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            cols.append(column.to_numpy(zero_copy_only=False).astype(np.float32))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: column {name!r} is not numeric ({column.type})") from exc
    if not cols:
        raise DataError(f"{path}: no columns")
    return check_matrix(np.stack(cols, axis=1), path), tuple(table.column_names)


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


def _user_file(path: Path, layout: Layout | None, mmap: bool = False) -> Dataset:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        X = _read_images(path)
        return Dataset(path.name, X, None, "image", source=str(path))
    if not path.is_file():  # a FIFO, a socket, a device: reading it could block for ever
        raise DataError(f"{path}: not a regular file; expected a .npy, .csv or .parquet file or a folder")
    suffix = path.suffix.lower()
    names: tuple[str, ...] | None = None
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
    elif suffix == ".csv":
        try:
            X, names = _read_csv(path)
        except (UnicodeDecodeError, csv.Error) as exc:  # binary bytes, a NUL
            raise DataError(f"{path}: not a text CSV file (UTF-8, comma-separated): {exc}") from None
    elif suffix == ".parquet":
        try:
            X, names = _read_parquet(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    else:
        raise DataError(
            f"{path}: unsupported file type {suffix!r}; expected .npy, .csv, .parquet or a folder of images"
        )
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    return Dataset(path.stem, X, None, guess_layout(X, layout), source=str(path), feature_names=names)


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
) -> Dataset:
    """Load an embedded data set, an IDX data set, or a user file / image folder by path.

    With `mmap`, a .npy file is memory-mapped instead of read (for files larger than memory).
    """
    if name in EMBEDDED:
        return _embedded(name, seed)
    if name in IDX_DATASETS:
        return _idx_dataset(name, data_dir, download)
    path = Path(name)
    if path.suffix or path.exists() or os.sep in name:
        return _user_file(path, layout, mmap)
    raise DataError(
        f"unknown dataset {name!r}; expected one of {[*EMBEDDED, *IDX_DATASETS]} "
        "or a path to a .npy / .csv / .parquet file or a folder of images"
    )


def filter_classes(ds: Dataset, classes: list[int] | None) -> tuple[F32, I64 | None]:
    """Keep only rows whose label is in `classes` (one-class training); all rows if None."""
    if not classes:
        return ds.X, ds.y
    if ds.y is None:
        raise DataError(f"{ds.name}: --classes needs a labelled data set; this one has no labels")
    known = sorted(set(ds.y.tolist()))
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise DataError(f"{ds.name}: classes {unknown} do not occur; labels are {known}")
    keep = np.isin(ds.y, classes)
    return ds.X[keep], ds.y[keep]


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
