"""`python -m service` answers over a real socket."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson

from tests.deploy.live import clean_env, free_port, running, service
from tests.service.conftest import ROOT


def test_live_server_over_a_socket(models_dir: Path, digits, tmp_path: Path):
    with service(models_dir, tmp_path / "service.log", LATENTSERVE_LOG_LEVEL="warning") as base:
        r = httpx.post(f"{base}/anomaly-score", json={"model": "digits-pca", "inputs": digits[:2].tolist()})
        assert r.status_code == 200 and r.json()["version"] == 1 and len(r.json()["scores"]) == 2
        r = httpx.post(f"{base}/encode", json={"model": "nope", "inputs": [[0.0]]})
        assert r.status_code == 404 and r.json()["error"]["type"] == "ModelNotFound"


def test_the_trace_log_level_serves_and_names_each_connections_client(models_dir: Path, tmp_path: Path):
    """`--log-level trace` (a level the settings accept) made `logging.basicConfig` raise before
    the server started; uvicorn's trace lines name the client of each connection."""
    log = tmp_path / "service.log"
    with service(models_dir, log, LATENTSERVE_LOG_LEVEL="trace") as base:
        assert httpx.get(f"{base}/health/live").status_code == 200
    text = log.read_text()
    made = [line for line in text.splitlines() if "HTTP connection made" in line]
    assert made and all("127.0.0.1:" in line for line in made), text[-2000:]


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


def _fresh_request(port: int, request: bytes) -> str:
    """One request on a new connection: its status line's code, 'refused' (connect failed: nothing
    was received), or 'reset' / 'unanswered' once the request was fully sent."""
    sock = socket.socket()
    sock.settimeout(30)
    try:
        sock.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        return "refused"
    try:
        try:
            sock.sendall(request)
        except (ConnectionResetError, BrokenPipeError):
            return "refused"  # closed before the whole request was sent: it was not received
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            return "reset"
        return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "unanswered"
    finally:
        sock.close()


def test_sigterm_connections_during_the_drain_are_answered_or_refused(
    models_dir: Path, digits: np.ndarray, tmp_path: Path
) -> None:
    """48 clients open a connection per request from the signal on, up to and past the listener's
    close: each gets an answer (200, or a counted 503 when shed) or a refused connect, never a reset
    of a request that was fully sent (the red-team's break 14: the listener's close reset the
    connections in its backlog)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "service", "--models-dir", str(models_dir), "--port", str(port)]
    env = clean_env(LATENTSERVE_LOG_LEVEL="warning", LATENTSERVE_SHUTDOWN_DRAIN_S="0.5")
    rows = np.tile(digits.reshape(len(digits), 64), (24, 1))
    payload = orjson.dumps({"model": "digits-pca", "inputs": rows.tolist()})
    request = (
        "POST /anomaly-score HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    outcomes: list[str] = []
    with running(argv, env, url, tmp_path / "service.log") as proc, ThreadPoolExecutor(48) as pool:

        def client() -> list[str]:
            seen: list[str] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                seen.append(_fresh_request(port, request))
                if seen[-1] == "refused":
                    return seen
            return seen

        proc.send_signal(signal.SIGTERM)
        for f in [pool.submit(client) for _ in range(48)]:
            outcomes += f.result()
        assert proc.wait(timeout=30) == 0
    counts = {o: outcomes.count(o) for o in set(outcomes)}
    assert set(counts) <= {"200", "503", "refused"}, counts
    assert counts.get("200", 0) > 0 and counts.get("refused") == 48, counts
