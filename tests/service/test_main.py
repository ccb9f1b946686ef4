"""`python -m service` answers over a real socket."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from tests.deploy.live import clean_env, free_port, running, service
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


def test_sigterm_under_a_burst_drains_then_answers_every_request(models_dir: Path, digits, tmp_path: Path):
    """Readiness goes 503 at the signal, the burst already sent is answered in full, the exit is 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "service", "--models-dir", str(models_dir), "--port", str(port)]
    env = clean_env(LATENTSERVE_LOG_LEVEL="warning", LATENTSERVE_SHUTDOWN_DRAIN_S="2")
    rows = np.tile(digits.reshape(len(digits), 64), (200, 1))  # 2,400 rows: a worker-thread call
    body = {"model": "digits-pca", "inputs": rows.tolist()}
    with running(argv, env, url, tmp_path / "service.log") as proc, ThreadPoolExecutor(16) as pool:
        burst = [pool.submit(httpx.post, f"{url}/anomaly-score", json=body, timeout=60) for _ in range(16)]
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert httpx.get(f"{url}/health/ready", timeout=10).status_code == 503
        statuses = [f.result().status_code for f in burst]
        assert proc.wait(timeout=30) == 0
    assert statuses == [200] * 16
