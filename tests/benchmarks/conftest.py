from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def synthetic_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 8x8 images of three classes (a bar across, a bar down, a diagonal) with noise."""
    rng = np.random.default_rng(seed)
    patterns = np.zeros((3, 8, 8))
    patterns[0, 3:5, :] = 1.0
    patterns[1, :, 3:5] = 1.0
    patterns[2] = np.eye(8) + np.eye(8, k=1)
    y = np.repeat(np.arange(3), n_per_class)
    X = patterns[y] * rng.uniform(0.6, 1.0, (len(y), 1, 1)) + rng.normal(0, 0.08, (len(y), 8, 8))
    return (np.clip(X, 0, 1) * 255).astype(np.uint8), y


@pytest.fixture(scope="session")
def image_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled .npz image set in the x_train / y_train / x_test / y_test form."""
    x_train, y_train = synthetic_images(60, seed=0)
    x_test, y_test = synthetic_images(20, seed=1)
    path = tmp_path_factory.mktemp("npz") / "shapes.npz"
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path
