"""A tiny real registry, trained once per session through the training package, and app clients."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.assembly import load_settings

ROOT = Path(__file__).resolve().parents[2]

# (name, kind, dataset, extra flags): fast PCA models, plus a joblib-only kernel PCA
PCA_MODELS = [  # name, kind, data set, PCA settings: fitted in process through training.fit
    ("digits-pca", "pca", "digits", {"n_components": 16}),
    ("breast-cancer-pca", "pca", "breast-cancer", {"n_components": 0.9}),
    ("digits-kernel-pca", "kernel-pca", "digits", {"n_components": 8, "max_rows": 300}),
]
VAE = (
    "digits-vae",
    [
        "--model",
        "vae",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--latent-dim",
        "4",
        "--quiet",
    ],
)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits-pca, breast-cancer-pca (ONNX), digits-kernel-pca (joblib) and digits-vae (ONNX)."""
    from training import PCAConfig, fit  # imported here: the service's own tests never need training

    root = tmp_path_factory.mktemp("registry")
    # the autoencoder trains in its own process, alongside the PCA models
    cmd = [sys.executable, "-m", "training", "fit", "--name", VAE[0], "--models-dir", str(root), *VAE[1]]
    vae = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for name, kind, dataset, pca in PCA_MODELS:
            fit(kind, dataset, name=name, models_dir=root, pca=PCAConfig(**pca))
        _, err = vae.communicate(timeout=90)
    finally:
        if vae.poll() is None:
            vae.kill()
            vae.communicate()
    assert vae.returncode == 0, f"digits-vae did not train: {err.decode()[-500:]}"
    shutil.rmtree(root / ".staging", ignore_errors=True)
    return root


@pytest.fixture
def registry_copy(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session registry that a test may change."""
    target = tmp_path / "models"
    shutil.copytree(models_dir, target)
    return target


def wait_ready(client: TestClient, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "the registry never became ready"
        time.sleep(0.02)


@contextlib.contextmanager
def serve(models_dir: Path, **overrides: Any) -> Iterator[TestClient]:
    """A TestClient over a fresh app (lifespan runs), once the registry has loaded."""
    settings = load_settings({"models_dir": models_dir, "reload_interval_s": 0, **overrides})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    with serve(models_dir) as c:
        yield c


@pytest.fixture
def make_client(models_dir: Path) -> Callable[..., contextlib.AbstractContextManager[TestClient]]:
    def make(
        directory: Path | None = None, **overrides: Any
    ) -> contextlib.AbstractContextManager[TestClient]:
        return serve(directory or models_dir, **overrides)

    return make


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """A few real digits images, (n, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().images[:12] / 16.0).astype(np.float32)


@pytest.fixture(scope="session")
def cancer() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer().data[:12].astype(np.float32)


def npy(A: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, A)
    return buf.getvalue()


def from_npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)  # type: ignore[no-any-return]


def png(pixels: np.ndarray, mode: str | None = None) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels * 255, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def error_of(response: Any, status: int) -> dict[str, Any]:
    """Assert the status and the one error shape; return the error object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"type", "message"} <= set(body["error"]), body
    return body["error"]  # type: ignore[no-any-return]


NPY_HEADERS = {"content-type": "application/x-npy"}
