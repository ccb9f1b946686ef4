"""The parsed deployment files and a one-model registry trained by the CLI, shared by the deploy tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from service.app import create_app
from service.settings import Settings
from tests.deploy import dockerfile
from tests.deploy.live import ROOT, fit_models


@pytest.fixture(scope="session")
def image() -> dockerfile.Dockerfile:
    return dockerfile.parse(ROOT / "Dockerfile")


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def served_paths() -> set[str]:
    """Every path the app serves, as its OpenAPI document lists them."""
    return set(create_app(Settings()).openapi()["paths"])


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits-pca (8 components, ONNX) published by `python -m training fit` into a temporary registry."""
    root = tmp_path_factory.mktemp("deploy-registry")
    spec = ["--model", "pca", "--dataset", "digits", "--name", "digits-pca", "--n-components", "8"]
    fit_models(root, [spec])
    return root
