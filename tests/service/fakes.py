"""A small fake runtime: a real `ModelRuntime` subclass computing numpy, for tests of scheduling,
batching and limits that need no trained model. Its code is a row's first `latent` values; its
decoder puts them back and zeros the rest, so a row's score is the mean square of the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray


def fake_manifest(
    name: str = "fake", version: int = 1, shape: tuple[int, ...] = (8,), latent: int = 2
) -> Manifest:
    calibration = [i / 100 for i in range(1, 101)]
    return Manifest.model_validate(
        {
            "name": name,
            "version": version,
            "kind": "pca",
            "format": "onnx",
            "files": [
                {"role": "encoder", "path": "encoder.onnx", "format": "onnx", "sha256": "0" * 64, "bytes": 0}
            ],
            "input": {"shape": list(shape)},
            "preprocessing": {"kind": "none"},
            "latent_dim": latent,
            "data": {
                "dataset": "fake",
                "rows_train": 1,
                "rows_validation": 1,
                "rows_calibration": 100,
                "seed": 0,
            },
            "metrics": {"train_error": 0.0, "validation_error": 0.0},
            "threshold": {
                "value": 0.95,
                "quantile": 0.95,
                "n_calibration": 100,
                "calibration_scores": calibration,
            },
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )


class LinearRuntime(ModelRuntime):
    """Encode: the first `latent_dim` values of a row; decode: those values, then zeros."""

    format = "fake"

    def __init__(self, manifest: Manifest | None = None) -> None:
        super().__init__(manifest if manifest is not None else fake_manifest(), Path("."))
        self.calls: list[tuple[str, int]] = []  # (op, rows) of every model call, in order

    @classmethod
    def load(cls, manifest: Manifest, folder: Path, *, threads: int = 1) -> ModelRuntime:
        return cls(manifest)

    def compute(self, op: Any, X: FloatArray) -> tuple[FloatArray, ...]:
        self.calls.append((op, len(X)))
        return super().compute(op, X)

    def _encode(self, X: FloatArray) -> FloatArray:
        return np.ascontiguousarray(X.reshape(len(X), -1)[:, : self.manifest.latent_dim])

    def _decode(self, Z: FloatArray) -> FloatArray:
        out = np.zeros((len(Z), self.row_size), dtype=np.float32)
        out[:, : Z.shape[1]] = Z
        return out
