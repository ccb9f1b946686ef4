"""A live service on a tiny registry (started as `python -m service`), and a scripted stub server."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.deploy.live import fit_models, service

MODELS = [
    ["--model", "pca", "--dataset", "breast-cancer", "--name", "breast-cancer-pca", "--n-components", "0.9"],
    ["--model", "pca", "--dataset", "digits", "--name", "digits-pca", "--n-components", "8"],
]


@pytest.fixture(scope="session")
def client_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """breast-cancer-pca (30 features) and digits-pca (8x8), published by `python -m training fit`."""
    root = tmp_path_factory.mktemp("client-registry")
    fit_models(root, MODELS)
    return root


@pytest.fixture(scope="session")
def live_url(client_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of `python -m service --models-dir <registry> --port <free port>`, ready."""
    log = tmp_path_factory.mktemp("client-service") / "service.log"
    with service(client_registry, log) as url:
        yield url


@pytest.fixture(scope="session")
def cancer_rows() -> np.ndarray:
    """The 569 breast-cancer rows, (569, 30) float64."""
    from sklearn.datasets import load_breast_cancer

    return np.asarray(load_breast_cancer().data, dtype=np.float64)


@pytest.fixture(scope="session")
def digit_rows() -> np.ndarray:
    """The 1797 digits as flat rows in [0, 1], (1797, 64) float64."""
    from sklearn.datasets import load_digits

    return np.asarray(load_digits().data, dtype=np.float64) / 16.0


# ---- a scripted HTTP stub ----------------------------------------------------------------------------
@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Stub:
    """Answers requests with `replies` in turn (the last one repeats) and records what it saw."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                with stub._lock:
                    stub.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                    reply = stub.replies.pop(0) if len(stub.replies) > 1 else stub.replies[0]
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = _answer  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    try:
        yield s
    finally:
        s.close()


def error_reply(status: int, message: str, error_type: str = "InternalError") -> Reply:
    body = {"error": {"type": error_type, "message": message}}
    return Reply(status, json.dumps(body).encode())


def scores_reply(n: int, threshold: float = 0.5) -> Reply:
    """An /anomaly-score answer as the service sends it with Accept: application/x-npz."""
    buf = io.BytesIO()
    scores = np.linspace(0, 1, n, dtype=np.float32)
    np.savez(buf, scores=scores, is_anomaly=scores > threshold, p_values=1 - scores)
    headers = {"X-Model": "stub-model", "X-Model-Version": "3", "X-Threshold": repr(threshold)}
    return Reply(200, buf.getvalue(), "application/x-npz", headers)
