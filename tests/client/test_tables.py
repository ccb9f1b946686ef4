"""Columns by name: a CSV / parquet header (or a DataFrame) that names the model's features is matched to
them in any order, other columns ride along to the output, a missing feature is refused naming it."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer

from latentserve_client import Client, ClientError
from latentserve_client.__main__ import main
from tests.deploy.live import ROOT, clean_env

MODEL = "breast-cancer-pca"  # trained on the breast-cancer table: its manifest names the 30 features
NAMES = [str(n) for n in load_breast_cancer().feature_names]


def write_named_csv(path: Path, X: np.ndarray, order: list[int], ids: bool = True) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*(["id"] if ids else []), *(NAMES[j] for j in order)])
        for i, row in enumerate(X):
            w.writerow([*([f"r{i}"] if ids else []), *(repr(float(row[j])) for j in order)])


def read_scores(path: Path) -> tuple[list[dict[str, str]], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, np.array([float(r["score"]) for r in rows])


@pytest.fixture(scope="module")
def shuffled() -> list[int]:
    return [int(j) for j in np.random.default_rng(3).permutation(len(NAMES))]


def test_a_shuffled_csv_scores_as_the_ordered_one_and_keeps_its_id(
    live_url: str, cancer_rows: np.ndarray, tmp_path: Path, shuffled: list[int]
) -> None:
    X = cancer_rows
    ordered, mixed = tmp_path / "ordered.csv", tmp_path / "shuffled.csv"
    write_named_csv(ordered, X, list(range(len(NAMES))))
    write_named_csv(mixed, X, shuffled)
    for src in (ordered, mixed):  # the console script, as a user runs it
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "latentserve_client",
                "score",
                "--url",
                live_url,
                "--model",
                MODEL,
                str(src),
            ],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "columns matched by name" in done.stderr
    _, a = read_scores(tmp_path / "ordered.scores.csv")
    rows_b, b = read_scores(tmp_path / "shuffled.scores.csv")
    with Client(live_url) as client:
        direct = client.anomaly_score(MODEL, X).scores
    np.testing.assert_allclose(a, direct, rtol=1e-5)
    np.testing.assert_allclose(b, a, rtol=1e-6)
    assert [r["id"] for r in rows_b] == [f"r{i}" for i in range(len(X))]  # passed through, in order
    with open(tmp_path / "shuffled.scores.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == ["id", *(NAMES[j] for j in shuffled), "score", "p_value", "is_anomaly"]
    # what the issue saw: by position, the shuffled file's rows are scored as other rows entirely
    with Client(live_url) as client:
        flags = client.anomaly_score(MODEL, X[:, shuffled]).is_anomaly
    assert flags.mean() > 0.5


def test_a_shuffled_parquet_with_extra_columns_scores_the_same(
    live_url: str, cancer_rows: np.ndarray, tmp_path: Path, shuffled: list[int]
) -> None:
    X = cancer_rows[:200]
    table = pa.table(
        {"id": list(range(len(X))), **{NAMES[j]: X[:, j] for j in shuffled}, "note": ["x"] * len(X)}
    )
    src, out = tmp_path / "rows.parquet", tmp_path / "rows.scores.parquet"
    pq.write_table(table, src)
    assert main(["score", "--url", live_url, "--model", MODEL, str(src), "-o", str(out), "--quiet"]) == 0
    scored = pq.read_table(out)
    assert scored.column("id").to_pylist() == list(range(len(X)))
    assert scored.column("note").to_pylist() == ["x"] * len(X)
    with Client(live_url) as client:
        direct = client.anomaly_score(MODEL, X).scores
    np.testing.assert_allclose(scored.column("score").to_numpy(), direct, rtol=1e-5)


def test_a_missing_feature_column_exits_2_naming_it(
    live_url: str, cancer_rows: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order = [j for j in range(len(NAMES)) if NAMES[j] != "worst area"]
    src = tmp_path / "short.csv"
    write_named_csv(src, cancer_rows[:10], order)
    assert main(["score", "--url", live_url, "--model", MODEL, str(src), "--quiet"]) == 2
    err = capsys.readouterr().err
    expected = "no column named 'worst area'; the model's features are matched to the header by name"
    assert err == f"error: {src}: {expected}\n"
    assert not (tmp_path / "short.scores.csv").exists()
    table = pa.table({n: cancer_rows[:5, j] for j, n in enumerate(NAMES) if n != "mean radius"})
    pq.write_table(table, tmp_path / "short.parquet")
    assert (
        main(["score", "--url", live_url, "--model", MODEL, str(tmp_path / "short.parquet"), "--quiet"]) == 2
    )
    assert "no column named 'mean radius'" in capsys.readouterr().err


def test_a_bad_cell_in_a_named_file_names_line_and_column(
    live_url: str,
    cancer_rows: np.ndarray,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    shuffled: list[int],
) -> None:
    src = tmp_path / "bad.csv"
    write_named_csv(src, cancer_rows[:10], shuffled)
    lines = src.read_text().splitlines()
    fields = lines[4].split(",")
    fields[1] = "n/a"  # the first feature column of the shuffled file
    lines[4] = ",".join(fields)
    src.write_text("\n".join(lines) + "\n")
    assert main(["score", "--url", live_url, "--model", MODEL, str(src), "--quiet"]) == 1
    assert f"line 5: column {NAMES[shuffled[0]]!r}: 'n/a' is not a number" in capsys.readouterr().err


def test_client_matches_dataframes_and_mappings_by_name(
    live_url: str, cancer_rows: np.ndarray, shuffled: list[int]
) -> None:
    pd = pytest.importorskip("pandas")
    X = cancer_rows[:40]
    frame = pd.DataFrame({"id": range(len(X)), **{NAMES[j]: X[:, j] for j in shuffled}})
    with Client(live_url) as client:
        assert client.feature_names(MODEL) == NAMES
        assert client.feature_names("digits-pca") is None
        direct = client.anomaly_score(MODEL, X).scores
        np.testing.assert_allclose(client.anomaly_score(MODEL, frame).scores, direct, rtol=1e-6)
        mapping = {n: X[:, j] for j, n in enumerate(NAMES)}
        np.testing.assert_allclose(client.anomaly_score(MODEL, mapping).scores, direct, rtol=1e-6)
        np.testing.assert_allclose(client.encode(MODEL, frame), client.encode(MODEL, X), rtol=1e-6)
        with pytest.raises(ClientError, match="no column named 'mean radius'"):
            client.anomaly_score(MODEL, frame.drop(columns=["mean radius"]))
        with pytest.raises(ClientError, match="records no feature names"):
            client.anomaly_score("digits-pca", {"a": [0.0]})


def test_the_live_service_reorders_records_and_csv_bodies(
    live_url: str, cancer_rows: np.ndarray, tmp_path: Path, shuffled: list[int]
) -> None:
    """Through the HTTP fast path (JSON) and the ASGI path (text/csv) of a real `python -m service`."""
    import httpx

    X = cancer_rows[:30]
    with Client(live_url) as client:
        direct = client.anomaly_score(MODEL, X).scores
    records = [{NAMES[j]: float(row[j]) for j in shuffled} for row in X]
    r = httpx.post(f"{live_url}/anomaly-score", json={"model": MODEL, "inputs": records}, timeout=10)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["scores"], direct, rtol=1e-5)
    write_named_csv(tmp_path / "body.csv", X, shuffled, ids=False)
    r = httpx.post(
        f"{live_url}/anomaly-score",
        params={"model": MODEL},
        content=(tmp_path / "body.csv").read_bytes(),
        headers={"Content-Type": "text/csv"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["scores"], direct, rtol=1e-5)
