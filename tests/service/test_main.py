"""`python -m service` answers over a real socket."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.service.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_live_server_over_a_socket(models_dir: Path, digits):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "service",
        "--models-dir",
        str(models_dir),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.1)
        r = httpx.post(f"{base}/anomaly-score", json={"model": "digits-pca", "inputs": digits[:2].tolist()})
        assert r.status_code == 200 and r.json()["version"] == 1 and len(r.json()["scores"]) == 2
        r = httpx.post(f"{base}/encode", json={"model": "nope", "inputs": [[0.0]]})
        assert r.status_code == 404 and r.json()["error"]["type"] == "ModelNotFound"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def test_bad_arguments_exit_non_zero():
    r = subprocess.run(
        [sys.executable, "-m", "service", "--port", "-5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "port" in r.stderr
