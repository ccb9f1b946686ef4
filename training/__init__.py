"""Offline training: the PCA family and PyTorch autoencoders, exported into the registry.

The Python API (`training.api`): `fit(config, data, name=..., models_dir=...)` trains one model and
publishes it as a new version; `bootstrap(models_dir)` trains the defaults. The configs
(`training.config`) are frozen dataclasses holding every default; presets are configs too.
"""

from training.api import bootstrap, fit
from training.config import DataConfig, FitConfig, PCAConfig, ScoreConfig
from training.nn.config import NetConfig, TrainConfig
from training.presets import PRESETS, preset

__all__ = [
    "PRESETS",
    "DataConfig",
    "FitConfig",
    "NetConfig",
    "PCAConfig",
    "ScoreConfig",
    "TrainConfig",
    "bootstrap",
    "fit",
    "preset",
]
