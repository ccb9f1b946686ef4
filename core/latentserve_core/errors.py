# ruff: noqa: N818  (the exception names are the API's error types)
"""The errors the scoring core raises; each names the model version it is about.

    LatentServeError        (base; never raised bare)
    ├── InvalidInput        a field (rows, codes, a column) has the wrong shape, type or value
    └── RegistryError       a version folder is inconsistent (bad manifest, missing artifact)
        └── IntegrityError  a file does not match its manifest sha256

`status_code` is a hint for a server that answers with them (the service maps every error to
its one JSON shape in `service.errors`); the core itself knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Any


class LatentServeError(Exception):
    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        details: Any = None,
        model: str | None = None,
        version: int | str | None = None,
    ) -> None:
        """With `model` (and `version`) the error is about that model version, and the message
        names it first: "model 'x' version 3: <message>"."""
        if model is not None:
            where = f"model {model!r}" if version is None else f"model {model!r} version {version}"
            message = f"{where}: {message}"
        super().__init__(message)
        self.message = message
        self.model = model
        self.version = version
        self.field = field
        self.details = details


class InvalidInput(LatentServeError):
    status_code = 422


class RegistryError(LatentServeError):
    status_code = 500


class IntegrityError(RegistryError):
    pass
