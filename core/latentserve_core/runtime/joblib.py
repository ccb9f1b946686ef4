"""Pickled scikit-learn estimators (transform / inverse_transform), loaded only when allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latentserve_core.errors import RegistryError
from latentserve_core.manifest import Manifest
from latentserve_core.runtime.base import FloatArray, ModelRuntime, verify_file


class JoblibRuntime(ModelRuntime):
    """estimator.joblib: a fitted scikit-learn object (often a Pipeline) on flat rows.

    Unpickling runs code from the file, so the registry calls `load` only for models the operator
    trusts; the sha256 is checked first either way.
    """

    format = "joblib"

    def __init__(self, manifest: Manifest, folder: Path, estimator: Any) -> None:
        super().__init__(manifest, folder)
        self._est = estimator

    @classmethod
    def load(cls, manifest: Manifest, folder: Path, *, threads: int = 1) -> JoblibRuntime:
        import joblib

        entry = manifest.file("estimator", "joblib")
        if entry is None:
            raise RegistryError(
                "manifest lists no joblib estimator",
                field="files",
                model=manifest.name,
                version=manifest.version,
            )
        path = verify_file(folder, entry, manifest)
        try:
            estimator = joblib.load(path)
        except Exception as exc:
            raise RegistryError(
                f"{entry.path} does not load: {exc}",
                field="files",
                model=manifest.name,
                version=manifest.version,
            ) from exc
        for method in ("transform", "inverse_transform"):
            if not hasattr(estimator, method):
                raise RegistryError(
                    f"the estimator has no {method}",
                    field="files",
                    model=manifest.name,
                    version=manifest.version,
                )
        return cls(manifest, folder, estimator)

    def _encode(self, X: FloatArray) -> FloatArray:
        Z = self._est.transform(X.reshape(len(X), -1).astype(np.float64))
        return np.asarray(Z, dtype=np.float32)

    def _decode(self, Z: FloatArray) -> FloatArray:
        X_hat = self._est.inverse_transform(Z.astype(np.float64))
        return np.asarray(X_hat, dtype=np.float32)
