"""latentserve-client as its own distribution: `pip install ./client` into a fresh venv (no system site
packages) installs httpx and numpy and none of the server's dependencies, and that venv scores against
a live service through `Client`, `latentserve-score` and `python -m latentserve_client`."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.deploy.live import ROOT, clean_env

MODEL = "breast-cancer-pca"
# what the server or training needs and the client must not bring along
SERVER_MODULES = ("service", "training", "fastapi", "starlette", "uvicorn", "pydantic")
SERVER_MODULES += ("onnxruntime", "sklearn", "PIL", "torch", "pyarrow")


class Venv:
    """A fresh virtual environment with latentserve-client installed from a copy of client/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        self.env = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the venv's folder (not the checkout, so nothing imports from the source tree)."""
        return subprocess.run(
            list(argv), cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def python(self, code: str, *args: str) -> Any:
        """Run `code` with the venv's python and return what it printed, parsed as JSON."""
        done = self.run([str(self.bin / "python"), "-c", code, *args])
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("client-venv")
    # a copy, so that pip's in-tree build leaves nothing in the checkout
    src = root / "client"
    shutil.copytree(ROOT / "client", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    v = Venv(root)
    done = v.run([str(v.bin / "python"), "-m", "pip", "install", "-q", str(src)], timeout=300)
    assert done.returncode == 0, f"pip install {src} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return v


def test_installs_httpx_and_numpy_and_nothing_of_the_server(venv: Venv) -> None:
    code = (
        "import importlib.util, json, sys, httpx, numpy, latentserve_client; "
        "print(json.dumps({'file': latentserve_client.__file__, 'prefix': sys.prefix, "
        "'base': sys.base_prefix, 'found': [m for m in sys.argv[1:] if importlib.util.find_spec(m)]}))"
    )
    seen = venv.python(code, *SERVER_MODULES)
    assert seen["found"] == []
    assert Path(seen["file"]).is_relative_to(venv.root / "venv"), seen["file"]
    assert seen["prefix"] != seen["base"]  # really a venv, not the interpreter it was made from
    assert (venv.bin / "latentserve-score").exists()


def test_scores_through_the_python_api(venv: Venv, live_url: str, cancer_rows: np.ndarray) -> None:
    X = cancer_rows[:40]
    np.save(venv.root / "rows.npy", X)
    code = (
        "import json, sys, numpy as np; from latentserve_client import Client; "
        "X = np.load(sys.argv[2]); c = Client(sys.argv[1]); r = c.anomaly_score(sys.argv[3], X); "
        "print(json.dumps({'scores': r.scores.tolist(), 'model': r.model, 'version': r.version, "
        "'flags': r.is_anomaly.tolist(), 'models': [m['name'] for m in c.models()]}))"
    )
    got = venv.python(code, live_url, str(venv.root / "rows.npy"), MODEL)
    want = httpx.post(f"{live_url}/anomaly-score", json={"model": MODEL, "inputs": X.tolist()}, timeout=30)
    assert want.status_code == 200, want.text
    assert (got["model"], got["version"]) == (MODEL, 1)
    assert got["models"] == ["breast-cancer-pca", "digits-pca"]
    np.testing.assert_allclose(got["scores"], want.json()["scores"], rtol=1e-5, atol=1e-7)
    assert got["flags"] == want.json()["is_anomaly"]


def test_scores_a_csv_file_through_the_console_script(
    venv: Venv, live_url: str, cancer_rows: np.ndarray
) -> None:
    X = cancer_rows[:40]
    src = venv.root / "rows.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *(f"f{j}" for j in range(X.shape[1]))])
        w.writerows([f"r{i}", *map(repr, row)] for i, row in enumerate(X.tolist()))
    done = venv.run([str(venv.bin / "latentserve-score"), "--url", live_url, "--model", MODEL, str(src)])
    assert done.returncode == 0, done.stderr
    out = venv.root / "rows.scores.csv"
    assert done.stdout.strip() == str(out)
    assert f"scored 40 rows with {MODEL} v1" in done.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(40)]
    want = httpx.post(f"{live_url}/anomaly-score", json={"model": MODEL, "inputs": X.tolist()}, timeout=30)
    np.testing.assert_allclose([float(r["score"]) for r in rows], want.json()["scores"], rtol=1e-5, atol=1e-7)


def test_module_lists_models_and_parquet_asks_for_its_extra(venv: Venv, live_url: str) -> None:
    python = str(venv.bin / "python")
    done = venv.run([python, "-m", "latentserve_client", "models", "--url", live_url])
    assert done.returncode == 0, done.stderr
    assert [m["name"] for m in json.loads(done.stdout)] == ["breast-cancer-pca", "digits-pca"]

    src = venv.root / "table.parquet"
    pq.write_table(pa.table({f"f{j}": np.ones(3) for j in range(30)}), src)
    argv = [python, "-m", "latentserve_client", "score", "--url", live_url, "--model", MODEL, str(src)]
    done = venv.run(argv)
    assert done.returncode == 1
    assert done.stderr == (
        "error: reading or writing .parquet needs pyarrow: pip install 'latentserve-client[parquet]'\n"
    )
    assert not (venv.root / "table.scores.csv").exists()
