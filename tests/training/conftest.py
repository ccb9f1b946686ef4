from __future__ import annotations

from pathlib import Path

import pytest

# The real MNIST files sit beside the checkout on the development machines and in CI.
MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not present at {MNIST_DIR} (optional data; the core tests use digits)")
    return MNIST_DIR
