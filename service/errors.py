"""Typed errors, each carrying its HTTP status; one handler in `service.app` maps them to JSON.

    LatentServeError                 500  (base; never raised bare)
    ├── InvalidInput                 422  a field has the wrong shape, type or value
    ├── ModelNotFound                404  unknown model or version (lists what exists)
    ├── ModelUnavailable             503  the version exists but failed to load
    ├── Unauthorized                 401  missing or wrong API key
    ├── PayloadTooLarge              413  body or row count over the limit
    ├── UnsupportedMediaType         415  a Content-Type we do not read
    ├── NotAcceptable                406  an Accept we cannot produce
    ├── RegistryError                500  the registry is inconsistent (bad manifest, checksum)
    │   └── IntegrityError           500  a file does not match its manifest sha256
    └── ExportError                  500  (training side) an export failed verification

The JSON body is always `{"error": {"type": ..., "message": ..., "field": ..., "details": ...}}`.
"""

from __future__ import annotations

from typing import Any


class LatentServeError(Exception):
    status_code = 500

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class InvalidInput(LatentServeError):
    status_code = 422


class ModelNotFound(LatentServeError):
    status_code = 404


class ModelUnavailable(LatentServeError):
    status_code = 503


class Unauthorized(LatentServeError):
    status_code = 401


class PayloadTooLarge(LatentServeError):
    status_code = 413


class UnsupportedMediaType(LatentServeError):
    status_code = 415


class NotAcceptable(LatentServeError):
    status_code = 406


class RegistryError(LatentServeError):
    status_code = 500


class IntegrityError(RegistryError):
    pass


class ExportError(LatentServeError):
    pass
