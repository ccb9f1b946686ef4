"""`python -m latentserve_client score`: 100,000 rows in order, every input and output format, and the
failures (bad rows with their line, unreachable service, unknown model) that leave no output behind."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from latentserve_client import Client
from latentserve_client.__main__ import main, score_main
from latentserve_client._scoring import score_file
from tests.client.conftest import Reply, Stub
from tests.deploy.live import ROOT, clean_env, free_port

MODEL = "breast-cancer-pca"
N = 100_000


@pytest.fixture(scope="session")
def noisy_rows(cancer_rows: np.ndarray) -> np.ndarray:
    """100,000 breast-cancer rows with 5% multiplicative noise."""
    rng = np.random.default_rng(0)
    X = cancer_rows[rng.integers(0, len(cancer_rows), N)]
    return np.asarray(X * (1.0 + 0.05 * rng.standard_normal(X.shape)))


def write_csv(path: Path, X: np.ndarray, ids: bool = True) -> None:
    """`id,f0,...,f29` (or the numbers alone) with 6 significant digits."""
    header = ",".join((["id"] if ids else []) + [f"f{j}" for j in range(X.shape[1])])
    fmt = ",".join(["%.6g"] * X.shape[1]) + "\n"
    with open(path, "w") as f:
        f.write(header + "\n")
        for i, row in enumerate(X.tolist()):
            f.write((f"r{i}," if ids else "") + fmt % tuple(row))


def as_written(X: np.ndarray) -> np.ndarray:
    """The values `write_csv` puts in the file."""
    return np.array([[float(f"{v:.6g}") for v in row] for row in X.tolist()])


def direct(url: str, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with Client(url) as client:
        res = client.anomaly_score(MODEL, X)
    return res.scores, res.p_values, res.is_anomaly


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def test_100k_csv_rows_in_order(live_url: str, noisy_rows: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "cancer.csv"
    write_csv(src, noisy_rows)
    argv = [sys.executable, "-m", "latentserve_client", "score", "--url", live_url, "--model", MODEL]
    start = time.perf_counter()
    done = subprocess.run(
        [*argv, str(src), "--chunk-rows", "4096", "--concurrency", "4"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    out = tmp_path / "cancer.scores.csv"
    assert done.stdout.strip() == str(out)
    print(f"\nscored {N} CSV rows in {seconds:.1f} s (CLI process, start-up included)")

    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    assert header == ["id", *(f"f{j}" for j in range(30)), "score", "p_value", "is_anomaly"]
    assert len(rows) == N
    assert [r[0] for r in rows] == [f"r{i}" for i in range(N)]  # order kept
    with open(src, newline="") as f:
        original = list(csv.reader(f))[1:]
    assert all(r[:31] == o for r, o in zip(rows[::997], original[::997], strict=True))  # verbatim

    sample = np.random.default_rng(1).choice(N, 300, replace=False)
    X = np.array([[float(v) for v in original[i][1:]] for i in sample])  # the values the file holds
    scores, p_values, flags = direct(live_url, X)
    got = [rows[i] for i in sample]
    np.testing.assert_allclose([float(r[31]) for r in got], scores, rtol=1e-5)
    np.testing.assert_allclose([float(r[32]) for r in got], p_values, rtol=1e-6)
    assert [r[33] == "true" for r in got] == flags.tolist()
    assert leftovers(tmp_path) == []


def test_npy_to_structured_npy(live_url: str, noisy_rows: np.ndarray, tmp_path: Path) -> None:
    src, out = tmp_path / "rows.npy", tmp_path / "scored.npy"
    np.save(src, noisy_rows)
    assert main(["score", "--url", live_url, "--model", MODEL, str(src), "-o", str(out), "--quiet"]) == 0
    A = np.load(out, allow_pickle=False)
    assert A.dtype.names == ("score", "p_value", "is_anomaly") and A.shape == (N,)
    sample = np.random.default_rng(2).choice(N, 300, replace=False)
    scores, p_values, flags = direct(live_url, noisy_rows[sample])
    np.testing.assert_allclose(A["score"][sample], scores, rtol=1e-5)
    np.testing.assert_allclose(A["p_value"][sample], p_values, rtol=1e-6)
    np.testing.assert_array_equal(A["is_anomaly"][sample], flags)


def test_parquet_keeps_columns_and_types(live_url: str, noisy_rows: np.ndarray, tmp_path: Path) -> None:
    X = noisy_rows[:20_000]
    src, out = tmp_path / "rows.parquet", tmp_path / "rows.scored.parquet"
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(len(X))],
            **{f"f{j}": X[:, j] for j in range(30)},
            "flag": [True] * len(X),
        }
    )
    pq.write_table(table, src, row_group_size=5000)
    argv = ["score", "--url", live_url, "--model", MODEL, str(src), "-o", str(out), "--quiet"]
    assert main([*argv, "--chunk-rows", "3000", "--concurrency", "3"]) == 0  # chunks straddle row groups
    scored = pq.read_table(out)
    assert scored.column_names == [*table.column_names, "score", "p_value", "is_anomaly"]
    assert scored.schema.field("id").type == pa.string() and scored.schema.field("flag").type == pa.bool_()
    assert scored.schema.field("is_anomaly").type == pa.bool_()
    assert scored.column("id").to_pylist() == table.column("id").to_pylist()
    scores, _, flags = direct(live_url, X[:500])
    np.testing.assert_allclose(scored.column("score").to_numpy()[:500], scores, rtol=1e-5)
    np.testing.assert_array_equal(scored.column("is_anomaly").to_numpy()[:500], flags)


@pytest.mark.parametrize("suffix", [".parquet", ".npy", ".csv"])
def test_csv_to_every_format(live_url: str, noisy_rows: np.ndarray, tmp_path: Path, suffix: str) -> None:
    X = as_written(noisy_rows[:1000])
    src, out = tmp_path / "rows.csv", tmp_path / f"out{suffix}"
    write_csv(src, X)
    assert main(["score", "--url", live_url, "--model", MODEL, str(src), "-o", str(out), "--quiet"]) == 0
    scores, _, _ = direct(live_url, X)
    if suffix == ".parquet":
        got = pq.read_table(out)
        assert got.column("id").to_pylist()[:3] == ["r0", "r1", "r2"]
        np.testing.assert_allclose(got.column("f0").to_numpy(), X[:, 0])
        np.testing.assert_allclose(got.column("score").to_numpy(), scores, rtol=1e-5)
    elif suffix == ".npy":
        A = np.load(out)
        assert A.dtype.names is not None and "id" not in A.dtype.names  # text cannot be a fixed record
        np.testing.assert_allclose(A["f29"], X[:, 29])
        np.testing.assert_allclose(A["score"], scores, rtol=1e-5)
    else:
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        np.testing.assert_allclose([float(r["score"]) for r in rows], scores, rtol=1e-5)


def test_headerless_csv(live_url: str, noisy_rows: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "plain.csv"
    write_csv(src, noisy_rows[:10], ids=False)
    src.write_text("\n".join(src.read_text().splitlines()[1:]) + "\n")  # numbers only
    assert main(["score", "--url", live_url, "--model", MODEL, str(src), "--quiet"]) == 0
    with open(tmp_path / "plain.scores.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["x0", "x1"] and rows[0][-1] == "is_anomaly" and len(rows) == 11


# ---- failures -----------------------------------------------------------------------------------------
# how a line is spoiled (field 5 is column f4), and the message that names it
BAD_ROWS: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "non-numeric": (lambda fields: [*fields[:5], "abc", *fields[6:]], "column 'f4': 'abc' is not a number"),
    "ragged": (lambda fields: fields[:-1], "30 fields, the header has 31"),
    "nan": (
        lambda fields: [*fields[:5], "nan", *fields[6:]],
        "column 'f4' is 'nan'; features must be finite numbers",
    ),
    "empty": (lambda fields: [*fields[:5], "", *fields[6:]], "column 'f4' is empty"),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_a_bad_csv_row_names_its_line_and_leaves_no_output(
    live_url: str,
    noisy_rows: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    src = tmp_path / "rows.csv"
    write_csv(src, noisy_rows[:6000])
    lines = src.read_text().splitlines()
    spoil, message = BAD_ROWS[kind]
    line = 5001  # in the second chunk: the first one was already scored and written to the temp file
    lines[line - 1] = ",".join(spoil(lines[line - 1].split(",")))
    src.write_text("\n".join(lines) + "\n")
    argv = ["score", "--url", live_url, "--model", MODEL, str(src), "--chunk-rows", "4096", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {src}: line {line}: {message}"
    assert not (tmp_path / "rows.scores.csv").exists()
    assert leftovers(tmp_path) == []


def test_bad_npy_and_parquet_rows(live_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    X = np.ones((100, 30))
    X[57, 3] = np.nan
    np.save(tmp_path / "x.npy", X)
    assert main(["score", "--url", live_url, "--model", MODEL, str(tmp_path / "x.npy"), "--quiet"]) == 1
    assert "row 57: NaN or infinite value" in capsys.readouterr().err
    (tmp_path / "text.npy").write_text("not an array")
    assert main(["score", "--url", live_url, "--model", MODEL, str(tmp_path / "text.npy"), "--quiet"]) == 1
    assert "not a readable .npy array" in capsys.readouterr().err
    pq.write_table(pa.table({"a": [1.0, None, 3.0]}), tmp_path / "x.parquet")
    assert main(["score", "--url", live_url, "--model", MODEL, str(tmp_path / "x.parquet"), "--quiet"]) == 1
    assert "row 1: column 'a' is null" in capsys.readouterr().err
    assert main(["score", "--url", live_url, "--model", MODEL, str(tmp_path / "x.txt"), "--quiet"]) == 1
    assert "unsupported file type '.txt'" in capsys.readouterr().err
    argv = ["score", "--url", live_url, "--model", MODEL, str(tmp_path / "x.npy"), "-o", "/nowhere/x.csv"]
    assert main(argv) == 1
    assert capsys.readouterr().err == "error: /nowhere/x.csv: the folder /nowhere does not exist\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.npy", "x.npy", "x.parquet"]


def test_wrong_width_reports_the_servers_message(
    live_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "narrow.npy", np.ones((10, 29)))
    assert main(["score", "--url", live_url, "--model", MODEL, str(tmp_path / "narrow.npy"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "(HTTP 422)" in err and err.count("\n") == 1
    assert not (tmp_path / "narrow.scores.csv").exists() and leftovers(tmp_path) == []


def test_alpha_flags_by_p_value_and_excludes_threshold(
    live_url: str, cancer_rows: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "rows.npy"
    np.save(src, cancer_rows[:200])
    out = tmp_path / "rows.scores.csv"
    assert main(["score", "--url", live_url, "--model", MODEL, str(src), "--alpha", "0.1", "--quiet"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    p_values = np.array([float(r["p_value"]) for r in rows])
    flags = np.array([r["is_anomaly"] == "true" for r in rows])
    assert flags.tolist() == (p_values <= 0.1).tolist() and 0 < flags.sum() < len(rows)
    with pytest.raises(SystemExit) as both:
        main(["score", "--url", live_url, "--model", MODEL, str(src), "--alpha", "0.1", "--threshold", "1"])
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_unknown_model(live_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 30)))
    assert main(["score", "--url", live_url, "--model", "nope", str(tmp_path / "x.npy"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model 'nope' not found") and "(HTTP 404)" in err and err.count("\n") == 1
    assert not (tmp_path / "x.scores.csv").exists()


def test_unreachable_service_exits_non_zero(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((10, 30)))
    url = f"http://127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "latentserve_client", "score", "--url", url, "--model", MODEL]
    done = subprocess.run(
        [*argv, "--retries", "1", str(tmp_path / "x.npy")],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert (
        done.stderr.startswith(f"error: cannot reach the service at {url}") and done.stderr.count("\n") == 1
    )
    assert not (tmp_path / "x.scores.csv").exists() and leftovers(tmp_path) == []


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["score", "--url", "http://x", "--model", "m", "in.csv", "--chunk-rows", "0"])
    assert caught.value.code == 2
    assert "error: argument --chunk-rows: expected a positive integer" in capsys.readouterr().err


def test_latentserve_score_is_the_score_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        score_main(["--help"])
    assert caught.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: latentserve-score [-h] --url URL") and "--chunk-rows" in usage
    with pytest.raises(SystemExit) as caught:
        score_main(["--url", "http://x", "--model", "m", "in.csv", "--concurrency", "0"])
    assert caught.value.code == 2
    assert "error: argument --concurrency: expected a positive integer" in capsys.readouterr().err


def test_plain_progress_lines_without_tqdm(
    live_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `from tqdm import tqdm` now raises ImportError
    np.save(tmp_path / "x.npy", np.ones((50, 30)))
    with Client(live_url) as client:
        summary = score_file(client, MODEL, tmp_path / "x.npy", chunk_rows=20, concurrency=2)
    assert summary.rows == 50 and summary.output == tmp_path / "x.scores.csv"
    assert summary.version == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "x.npy: 50 rows"


def test_models_command_sends_the_api_key(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.replies = [Reply(200, b'{"models": [{"name": "m"}]}')]
    assert main(["models", "--url", stub.url, "--api-key", "k"]) == 0
    assert stub.seen[0].headers["X-API-Key"] == "k" and stub.seen[0].path == "/models"
    assert '"name": "m"' in capsys.readouterr().out
