"""Command lines for `python -m training` used across the tests."""

from __future__ import annotations

from pathlib import Path


def fit_argv(kind: str, dataset: str, name: str, models_dir: Path | str, *extra: str) -> list[str]:
    """`fit --model KIND --dataset DATASET --name NAME --models-dir DIR EXTRA...`."""
    return [
        "fit",
        "--model",
        kind,
        "--dataset",
        dataset,
        "--name",
        name,
        "--models-dir",
        str(models_dir),
        *extra,
    ]
