# ruff: noqa: N818  (the exception names are the API's error types)
"""The errors the scoring core raises; each names the model version it is about.

    LatentServeError        (base; never raised bare)
    ├── InvalidInput        a field (rows, codes, a column) has the wrong shape, type or value
    │   └── InputOutOfRange a request far outside the training range (0-255 pixels to [0, 1])
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


class InputOutOfRange(InvalidInput):
    """A request whose values lie far outside the range the model was trained on (e.g. 0-255 pixels
    sent to a model of [0, 1] images): its scores would say nothing; the message gives the fix."""

    def __init__(
        self,
        field: str,
        label: str,
        observed: tuple[float, float],
        expected: tuple[float, float],
        rows: int,
        total: int,
        margin: float,
    ) -> None:
        (a, b), (lo, hi) = observed, expected
        if lo >= 0.0 and hi <= 1.0 and a >= 0.0 and 1.0 < b <= 255.0:
            fix = "scale the inputs by 1/255 (8-bit pixels to [0, 1])"
        else:
            fix = (
                f"send values in the units the model was trained on, about [{lo:.4g}, {hi:.4g}] "
                "(any standardisation is part of the model: send raw values)"
            )
        super().__init__(
            f"{field}: values span [{a:.4g}, {b:.4g}], but {label} was trained on values in "
            f"[{lo:.4g}, {hi:.4g}]: {rows} of its {total} rows have values more than {margin:g} "
            f"training ranges outside it; {fix}",
            field=field,
            details={"observed": [a, b], "expected": [lo, hi], "rows_outside": rows, "rows": total},
        )


class RegistryError(LatentServeError):
    status_code = 500


class IntegrityError(RegistryError):
    pass
