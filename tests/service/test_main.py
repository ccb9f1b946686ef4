"""`python -m service` answers over a real socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.deploy.live import service
from tests.service.conftest import ROOT


def test_live_server_over_a_socket(models_dir: Path, digits, tmp_path: Path):
    with service(models_dir, tmp_path / "service.log", LATENTSERVE_LOG_LEVEL="warning") as base:
        r = httpx.post(f"{base}/anomaly-score", json={"model": "digits-pca", "inputs": digits[:2].tolist()})
        assert r.status_code == 200 and r.json()["version"] == 1 and len(r.json()["scores"]) == 2
        r = httpx.post(f"{base}/encode", json={"model": "nope", "inputs": [[0.0]]})
        assert r.status_code == 404 and r.json()["error"]["type"] == "ModelNotFound"


def test_bad_arguments_exit_non_zero():
    r = subprocess.run(
        [sys.executable, "-m", "service", "--port", "-5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "port" in r.stderr
