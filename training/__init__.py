"""Offline training: the PCA family and PyTorch autoencoders, exported into the registry.

The Python API (`training.api`): `fit(config, data, name=..., models_dir=...)` trains one model and
publishes it as a new version (`data`: a data set, a path, or rows in memory); `bootstrap(models_dir)`
trains the defaults. `Detector` (`training.detector`) is the estimator PyOD and scikit-learn users
expect (`fit(X)`, `decision_function`, `predict`, `p_values`, `publish`). The configs
(`training.config`) are frozen dataclasses holding every default; presets are configs too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.api import bootstrap, fit
from training.config import DataConfig, FitConfig, PCAConfig, ScoreConfig
from training.nn.config import NetConfig, TrainConfig
from training.presets import PRESETS, preset

if TYPE_CHECKING:
    from training.detector import Detector

__all__ = [
    "PRESETS",
    "DataConfig",
    "Detector",
    "FitConfig",
    "NetConfig",
    "PCAConfig",
    "ScoreConfig",
    "TrainConfig",
    "bootstrap",
    "fit",
    "preset",
]


def __getattr__(name: str) -> Any:
    """`Detector` is imported on first use: scikit-learn's import would slow every CLI start."""
    if name == "Detector":
        from training.detector import Detector

        return Detector
    raise AttributeError(f"module 'training' has no attribute {name!r}")
