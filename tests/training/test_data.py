"""Data loading: embedded sets, IDX files, user files and their error messages."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from training.data import DataError, filter_classes, load_dataset, split


def test_embedded_sets_have_the_documented_shapes_and_ranges() -> None:
    digits = load_dataset("digits")
    assert digits.X.shape == (1797, 8, 8) and digits.layout == "image"
    assert digits.X.min() == 0.0 and digits.X.max() == 1.0
    bc = load_dataset("breast-cancer")
    assert bc.X.shape == (569, 30) and bc.layout == "features"
    assert load_dataset("gaussian-2d").X.shape == (10_000, 2)


@pytest.mark.mnist
def test_mnist_idx_files_load(mnist_dir: Path) -> None:
    ds = load_dataset("mnist", data_dir=mnist_dir)
    assert ds.X.shape == (60_000, 28, 28) and ds.X_test is not None and ds.X_test.shape == (10_000, 28, 28)
    assert ds.y is not None and sorted(set(ds.y.tolist())) == list(range(10))
    assert ds.X.min() >= 0.0 and ds.X.max() <= 1.0


def test_missing_idx_files_name_the_files_and_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing \[.*train-images-idx3-ubyte.gz.*\] in " + str(tmp_path)):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


def _write_idx(path: Path, arr: np.ndarray, level: int = 9) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb", compresslevel=level) as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def _fake_idx(folder: Path, labels: int = 10) -> None:
    """IDX files with the published shapes (their .gz bytes are not the published ones)."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.zeros((n, 28, 28), np.uint8), level=1)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, labels, n))


def test_corrupt_idx_file_is_refused_naming_the_check(tmp_path: Path) -> None:
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        with gzip.open(tmp_path / name, "wb") as fh:
            fh.write(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x07")
    with pytest.raises(
        DataError, match=r"content does not match either: shape \[1\], expected \[60000, 28, 28\]"
    ):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_recompressed_idx_files_with_the_published_content_load(tmp_path: Path) -> None:
    _fake_idx(tmp_path)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path, download=False)
    assert ds.X.shape == (60000, 28, 28) and ds.y is not None and int(ds.y.max()) == 9
    _fake_idx(tmp_path, labels=12)
    with pytest.raises(DataError, match=r"labels go up to 11, expected 0\.\.9"):
        load_dataset("fashion-mnist", data_dir=tmp_path, download=False)


@pytest.mark.mnist
def test_recompressed_mnist_loads_the_same_rows(mnist_dir: Path, tmp_path: Path) -> None:
    for f in mnist_dir.glob("*-ubyte.gz"):
        with gzip.open(f, "rb") as src:
            data = src.read()
        with gzip.open(tmp_path / f.name, "wb", compresslevel=1) as dst:  # other bytes, same content
            dst.write(data)
        assert (tmp_path / f.name).read_bytes() != f.read_bytes()
    a = load_dataset("mnist", data_dir=mnist_dir)
    b = load_dataset("mnist", data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.y, b.y)


def test_user_files_load(tmp_path: Path) -> None:
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "x.csv").write_text("a,b,c\n" + "\n".join(",".join(map(str, r)) for r in X.tolist()))
    for f in ("x.npy", "x.csv"):
        np.testing.assert_array_equal(load_dataset(str(tmp_path / f)).X, X)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}), tmp_path / "x.parquet")
    np.testing.assert_array_equal(load_dataset(str(tmp_path / "x.parquet")).X, X)
    assert load_dataset(str(tmp_path / "x.parquet")).feature_names == ("a", "b", "c")
    assert load_dataset(str(tmp_path / "x.csv")).feature_names == ("a", "b", "c")
    assert load_dataset(str(tmp_path / "x.npy")).feature_names is None
    (tmp_path / "plain.csv").write_text("\n".join(",".join(map(str, r)) for r in X.tolist()))
    assert load_dataset(str(tmp_path / "plain.csv")).feature_names is None


def test_image_folder_loads(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((5, 4), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    ds = load_dataset(str(tmp_path))
    assert ds.X.shape == (3, 5, 4) and ds.layout == "image"
    assert ds.X[2].max() == pytest.approx(120 / 255)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,3\n4,5\n", r"line 2 has 2 columns, expected 3"),
        ("1,2,3\n4,x,6\n", r"line 2: column 2 holds text 'x', not a number"),
        ("1,2,3\n4,nan,6\n", r"line 2: column 2 is 'nan', not a finite number"),
        ("", r"no rows"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
        load_dataset(str(path))


def test_malformed_npy_and_images(tmp_path: Path) -> None:
    X = np.ones((3, 2), np.float32)
    X[1, 1] = np.inf
    np.save(tmp_path / "inf.npy", X)
    with pytest.raises(DataError, match="row 1 contains NaN or infinity"):
        load_dataset(str(tmp_path / "inf.npy"))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"not a readable \.npy file"):
        load_dataset(str(tmp_path / "junk.npy"))
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"a\.png: not a readable image"):
        load_dataset(str(tmp_path / "imgs"))
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        (tmp_path / "a.txt").write_text("1")
        load_dataset(str(tmp_path / "a.txt"))


def test_class_filter_and_seeded_split() -> None:
    ds = load_dataset("digits")
    X, y = filter_classes(ds, [3])
    assert y is not None and set(y.tolist()) == {3} and len(X) == int((ds.y == 3).sum())
    a, b = split(X, y, seed=1), split(X, y, seed=1)
    np.testing.assert_array_equal(a.X_cal, b.X_cal)
    assert len(a.X_train) + len(a.X_val) + len(a.X_cal) == len(X)
    assert not np.array_equal(split(X, y, seed=2).X_cal, a.X_cal)
    with pytest.raises(DataError, match=r"classes \[11\] do not occur"):
        filter_classes(ds, [11])
    with pytest.raises(DataError, match="needs a labelled data set"):
        filter_classes(load_dataset("gaussian-2d"), [1])


# ---- tables by column name -------------------------------------------------------------------
def _table(tmp_path: Path, name: str = "t.csv", text: str | None = None) -> Path:
    path = tmp_path / name
    path.write_text(
        text if text is not None else "id,b,a,label,notes\n1,2.5,3,0,x\n2,4.5,5,1,y\n3,6.5,7,0,z\n"
    )
    return path


def test_columns_drop_columns_and_label_column_pick_a_csv_by_name(tmp_path: Path) -> None:
    path = str(_table(tmp_path))
    ds = load_dataset(path, columns=("a", "b"), label_column="label")
    np.testing.assert_array_equal(ds.X, [[3, 2.5], [5, 4.5], [7, 6.5]])  # in the order asked for
    assert ds.feature_names == ("a", "b") and ds.label_column == "label"
    assert ds.y is not None and ds.y.tolist() == [0, 1, 0]
    ds = load_dataset(path, drop_columns=("id", "notes"), label_column="label")
    assert ds.feature_names == ("b", "a") and ds.X.shape == (3, 2)
    ds = load_dataset(path, drop_columns=("id", "notes", "label"))
    assert ds.y is None and ds.feature_names == ("b", "a")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, r"column 'id' looks like row ids, not a feature; pass --drop-columns id"),
        (
            {"drop_columns": ("id", "notes")},
            r"column 'label' looks like labels.*--label-column label.*--drop-columns label",
        ),
        (
            {"drop_columns": ("id",), "label_column": "label"},
            r"line 2: column 'notes' holds text 'x', not a number; leave the column out with "
            "--drop-columns notes",
        ),
        (
            {"columns": ("a", "nope", "zz")},
            r"no column named 'nope', 'zz'; the header has \['id', 'b', 'a', 'label', 'notes'\]",
        ),
        ({"drop_columns": ("gone",)}, r"no column named 'gone'"),
        ({"columns": "a,b"}, r"--columns: expected a tuple of column names, got the string 'a,b'"),
        ({"columns": ("a",), "label_column": "b2"}, r"no column named 'b2'"),
        ({"columns": ("a", "label"), "label_column": "label"}, r"both the label .* and a feature"),
        (
            {"columns": ("a",), "label_column": "notes"},
            r"line 2: label column 'notes' is 'x'; labels must be integers",
        ),
    ],
)
def test_table_choices_are_checked_naming_the_column(
    tmp_path: Path, kw: dict[str, object], message: str
) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(str(_table(tmp_path)), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("", r"line 3: column 'mass' is empty; fill the cell; leave the column out with --drop-columns mass"),
        (
            "nan",
            r"line 3: column 'mass' is 'nan', not a finite number; leave the column out with "
            "--drop-columns mass",
        ),
        (
            "heavy",
            r"line 3: column 'mass' holds text 'heavy', not a number; leave the column out with "
            "--drop-columns mass",
        ),
    ],
)
def test_empty_nan_and_text_cells_name_column_line_and_flag(tmp_path: Path, cell: str, message: str) -> None:
    path = _table(tmp_path, text=f"height,mass\n1,2\n3,{cell}\n5,6\n")
    with pytest.raises(DataError, match=message):
        load_dataset(str(path))
    names = _table(tmp_path, "spaced.csv", text="height,total mass\n1,2\n3,x\n")
    with pytest.raises(DataError, match=r"--drop-columns 'total mass'"):
        load_dataset(str(names))


def test_parquet_tables_follow_the_same_rules(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    table = {
        "id": [1, 2, 3],
        "b": [2.5, 4.5, 6.5],
        "a": [3.0, 5.0, 7.0],
        "label": [0, 1, 0],
        "notes": ["x", "y", "z"],
    }
    pq.write_table(pa.table(table), path)
    ds = load_dataset(str(path), columns=("a", "b"), label_column="label")
    np.testing.assert_array_equal(ds.X, [[3, 2.5], [5, 4.5], [7, 6.5]])
    assert ds.y is not None and ds.y.tolist() == [0, 1, 0] and ds.feature_names == ("a", "b")
    with pytest.raises(DataError, match="column 'id' looks like row ids"):
        load_dataset(str(path))
    with pytest.raises(
        DataError, match=r"column 'notes' holds string, not numbers; leave it out with --drop-columns notes"
    ):
        load_dataset(str(path), drop_columns=("id",), label_column="label")
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "b": [1.0, 2.0, float("nan")]}), path)
    with pytest.raises(DataError, match=r"row 1: column 'a' is empty \(null\)"):
        load_dataset(str(path))
    with pytest.raises(DataError, match=r"row 2: column 'b' is nan, not a finite number; .*--drop-columns b"):
        load_dataset(str(path), columns=("b",))


def test_names_need_a_table_with_a_header(tmp_path: Path) -> None:
    plain = _table(tmp_path, "plain.csv", text="1,2\n3,4\n")
    with pytest.raises(DataError, match="need a header line"):
        load_dataset(str(plain), columns=("a",))
    np.save(tmp_path / "x.npy", np.ones((3, 2), np.float32))
    with pytest.raises(DataError, match=r"apply to \.csv and \.parquet files only"):
        load_dataset(str(tmp_path / "x.npy"), label_column="label")
    with pytest.raises(DataError, match=r"apply to \.csv and \.parquet files only"):
        load_dataset("digits", drop_columns=("a",))


# ---- .npz archives of x_<part> / y_<part> ------------------------------------------------------
def test_npz_archive_loads_train_and_test_parts_scaling_uint8(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (12, 5, 4), dtype=np.uint8)
    x_test = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    y_train, y_test = np.arange(12) % 3, np.arange(6) % 2
    path = tmp_path / "shapes.npz"
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    ds = load_dataset(str(path))
    assert ds.name == "shapes" and ds.layout == "image" and ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.X, x_train.astype(np.float32) / 255.0)
    assert ds.X_test is not None and ds.y is not None and ds.y_test is not None
    np.testing.assert_array_equal(ds.X_test, x_test.astype(np.float32) / 255.0)
    np.testing.assert_array_equal(ds.y, y_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    X, y = filter_classes(ds, [2])
    assert len(X) == 4 and y is not None and set(y.tolist()) == {2}


def test_npz_other_parts_join_the_rows_train_first_and_floats_stay_as_they_are(tmp_path: Path) -> None:
    a, b = np.full((3, 2), 0.5), np.full((2, 2), 7.0)
    path = tmp_path / "rows.npz"
    np.savez(path, x_val=b, x_train=a)  # unlabelled, no test part: every row trains
    ds = load_dataset(str(path))
    assert ds.layout == "features" and ds.y is None and ds.X_test is None
    np.testing.assert_array_equal(ds.X, np.concatenate([a, b]).astype(np.float32))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": np.zeros((3, 2, 2))}, r"no arrays named x_<part> \(e.g. x_train, x_test\); it holds"),
        ({"x_train": np.zeros((3, 2)), "y_test": np.zeros(3)}, r"labels \['y_test'\] have no matching"),
        ({"x_train": np.zeros((3, 2)), "y_train": np.zeros(4)}, r"y_train must hold 3 integer labels"),
        ({"x_train": np.zeros((3, 2)), "y_train": np.full(3, 0.5)}, r"y_train must hold 3 integer labels"),
        ({"x_train": np.zeros(3)}, r"x_train has shape \[3\]; expected rows"),
        ({"x_train": np.array(["a", "b"])}, r"array 'x_train' has dtype <U1; expected numbers"),
        ({"x_train": np.zeros((3, 2)), "x_test": np.zeros((3, 3))}, r"different row shapes"),
        ({"x_train": np.array([[0.0, np.nan]])}, r"row 0 contains NaN"),
    ],
)
def test_bad_npz_archives_are_refused_naming_the_array(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message):
        load_dataset(str(path))


def test_a_file_that_is_not_an_npz_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match=r"broken.npz: not a readable .npz file"):
        load_dataset(str(path))
    single = tmp_path / "single.npz"
    np.save(single.with_suffix(".npy"), np.zeros((2, 2)))
    single.with_suffix(".npy").rename(single)
    with pytest.raises(DataError, match=r"single.npz: not a .npz archive"):
        load_dataset(str(single))
