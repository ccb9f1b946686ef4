from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from training.data import Splits, load_dataset, split


@pytest.fixture(scope="session")
def digits() -> Splits:
    """The 8x8 digits in [0, 1], split 70 / 15 / 15."""
    ds = load_dataset("digits")
    return split(ds.X, ds.y, seed=0)


@pytest.fixture()
def registry(tmp_path: Path) -> Path:
    return tmp_path / "models"


def spectral_gap_data(n: int = 1500, d: int = 10, seed: int = 0) -> npt.NDArray[np.float32]:
    """Rows with three strong directions (variances 9, 6, 4) over isotropic noise (variance 0.01)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((d, d)))
    latent = rng.standard_normal((n, 3)) * np.array([3.0, 2.45, 2.0])
    X = latent @ basis[:, :3].T + 0.1 * rng.standard_normal((n, d)) + 5.0
    return np.asarray(X, dtype=np.float32)
