# ruff: noqa: N818  (the exception names are the API's error types)
"""Typed errors, each carrying its HTTP status; one handler in `service.app` maps them to JSON.
LatentServeError, InvalidInput, RegistryError and IntegrityError come from the scoring core
(`latentserve_core.errors`), which knows no HTTP; the wire shapes are written here.

    LatentServeError                 500  (base; never raised bare)
    ├── InvalidInput                 422  a field has the wrong shape, type or value
    │   ├── InputOutOfRange          422  the request lies far outside the training range (the fix)
    │   ├── ColumnsMismatch          422  rows by name lack a feature, or name a column the model lacks
    │   ├── NoFeatureNames           422  rows by name for a model that records no feature names
    │   ├── RecordKeysDiffer         422  a JSON record's keys differ from the first record's
    │   └── BadCell                  422  a named cell (JSON record, CSV line) is not a finite number
    ├── ModelNotFound                404  unknown model or version (lists what exists)
    ├── ModelUnavailable             503  the version exists but failed to load
    ├── Unauthorized                 401  missing or wrong API key
    ├── BadRequest                   400  not a request we serve (an Upgrade on a POST)
    ├── PayloadTooLarge              413  body, rows, pixels or predicted answer over the limit
    ├── HeadersTooLarge              431  request headers over MAX_HEADER_BYTES / MAX_HEADERS
    ├── UnsupportedMediaType         415  a Content-Type or Content-Encoding we do not read
    ├── NotAcceptable                406  an Accept we cannot produce
    ├── RegistryError                500  the registry is inconsistent (bad manifest, checksum)
    │   └── IntegrityError           500  a file does not match its manifest sha256
    │       └── ArtifactTampered     409  a served file (picture, card) no longer matches its sha256
    ├── NotReady                     503  the registry has not finished its first load, or draining
    ├── Overloaded                   503  shed before the body is read (Retry-After); see admission
    ├── ClientClosed                 499  the client left before its request was read (never sent)
    ├── Timeout                      504  a model call ran past REQUEST_TIMEOUT_S
    ├── RouteNotFound                404  no route at this path
    ├── MethodNotAllowed             405  the route exists, the method does not
    └── InternalError                500  anything unexpected (no stack trace in the body)

An error carries no wire shape: each protocol renders it (`service.protocols`): the native API
as `{"error": {"type": ..., "message": ..., "field": ..., "details": ...}}` (`error_body`), the
Open Inference Protocol as `{"error": message}` with its own statuses (`V2Protocol.error`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# the scoring core's errors (what loading and scoring a version raise) are the roots of this tree
from latentserve_core.errors import InputOutOfRange as InputOutOfRange
from latentserve_core.errors import IntegrityError as IntegrityError
from latentserve_core.errors import InvalidInput as InvalidInput
from latentserve_core.errors import LatentServeError as LatentServeError
from latentserve_core.errors import RegistryError as RegistryError


def invalid_input(errors: Sequence[Mapping[str, Any]], source: str = "body") -> InvalidInput:
    """One 422 from a list of pydantic-style errors (`loc`, `msg`, `type`), the first in the message."""
    details = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    if not details:
        return InvalidInput(f"{source}: invalid request", field=source)
    first = details[0]
    # FastAPI prefixes locations with body/query/path; our fields are named without it
    loc = [p for p in first["loc"] if p not in ("body", "query", "path", "header")] or [source]
    where = ".".join(loc)
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return InvalidInput(f"{where}: {first['msg']}{more}", field=where, details=details)


def error_body(exc: LatentServeError) -> dict[str, Any]:
    """The one JSON error shape: `{"error": {"type", "message", "field"?, "details"?}}`."""
    body: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message}
    if exc.field is not None:
        body["field"] = exc.field
    if exc.details is not None:
        body["details"] = exc.details
    return {"error": body}


def response_headers(exc: LatentServeError) -> dict[str, str] | None:
    """Extra response headers an error carries (WWW-Authenticate on a 401, Retry-After on a shed 503)."""
    headers: dict[str, str] | None = getattr(exc, "headers", None)
    return headers or None


class Unauthorized(LatentServeError):
    status_code = 401

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message, field=field, details=details)
        self.headers = {"WWW-Authenticate": "Bearer"}


def _names(names: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class ColumnsMismatch(InvalidInput):
    """Rows sent by name (JSON records, a CSV header) whose names are not the model's features."""

    def __init__(
        self, field: str, missing: Sequence[str], unknown: Sequence[str], model: str, version: int
    ) -> None:
        parts = []
        if missing:
            parts.append(f"missing feature column{'s' if len(missing) > 1 else ''} {_names(missing)}")
        if unknown:
            parts.append(
                f"unknown column{'s' if len(unknown) > 1 else ''} {_names(unknown)} (the model has no "
                "such feature; leave it out of the request)"
            )
        super().__init__(
            f"{field}: " + "; ".join(parts),
            field=field,
            details={"missing": list(missing), "unknown": list(unknown)},
            model=model,
            version=version,
        )


class NoFeatureNames(InvalidInput):
    """Rows sent by name to a model trained without column names: only rows by position fit it."""

    def __init__(self, field: str, model: str, version: int) -> None:
        super().__init__(
            f"{field}: rows sent by column name, but the model records no feature names (it was not "
            "trained on a table with a header); send each row as a list of values in training order",
            field=field,
            model=model,
            version=version,
        )


class RecordKeysDiffer(InvalidInput):
    """A JSON record whose keys are not those of the first record."""

    def __init__(self, field: str, row: int, missing: Sequence[str], extra: Sequence[str]) -> None:
        parts = [f"lacks {_names(missing)}"] if missing else []
        parts += [f"adds {_names(extra)}"] if extra else []
        super().__init__(
            f"{field}: row {row} has other keys than row 0: it {' and '.join(parts)}; every row by name "
            "has the same keys",
            field=field,
            details={"row": row, "missing": list(missing), "extra": list(extra)},
        )


class BadCell(InvalidInput):
    """A cell of a row sent by name (a JSON record's value, a CSV field) that is not a finite number."""

    def __init__(self, field: str, where: str, column: str, value: object) -> None:
        if value is None or isinstance(value, bool):
            shown = "null" if value is None else str(value).lower()
        else:
            shown = "empty" if value == "" else repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
        super().__init__(
            f"{field}: {where}: column {column!r} is {shown}, not a finite number",
            field=field,
            details={"where": where, "column": column},
        )


class ModelNotFound(LatentServeError):
    status_code = 404


class ModelUnavailable(LatentServeError):
    status_code = 503


class BadRequest(LatentServeError):
    status_code = 400


class HeadersTooLarge(LatentServeError):
    status_code = 431


class PayloadTooLarge(LatentServeError):
    status_code = 413


class JsonBodyTooLarge(PayloadTooLarge):
    """A JSON body over MAX_JSON_BODY_BYTES: parsing it would hold the GIL (and stall every other
    request and the health probes) for too long; the same rows go as .npy."""

    def __init__(self, limit: int, got: int | None) -> None:
        size = f"{got} bytes" if got is not None else "more than the limit"
        super().__init__(
            f"body: {size} of JSON is over the limit of {limit} bytes for a JSON body "
            "(LATENTSERVE_MAX_JSON_BODY_BYTES); send the rows as Content-Type: application/x-npy "
            "(any size up to LATENTSERVE_MAX_BODY_BYTES) or split the batch",
            field="body",
            details={"limit": limit, "got": got, "setting": "MAX_JSON_BODY_BYTES"},
        )


class JsonAnswerTooLarge(PayloadTooLarge):
    """A JSON answer predicted over MAX_JSON_RESPONSE_BYTES: encoding it would hold the GIL too long."""

    def __init__(self, limit: int, predicted: int, rows: int, per_row: int) -> None:
        super().__init__(
            f"accept: the JSON answer would be about {predicted} bytes ({rows} rows x {per_row} values), "
            f"over the limit of {limit} bytes for a JSON answer (LATENTSERVE_MAX_JSON_RESPONSE_BYTES); "
            "send Accept: application/x-npy (4 bytes a value) or fewer rows",
            field="accept",
            details={"limit": limit, "predicted": predicted, "setting": "MAX_JSON_RESPONSE_BYTES"},
        )


class UnsupportedMediaType(LatentServeError):
    status_code = 415


class NotAcceptable(LatentServeError):
    status_code = 406


class ArtifactTampered(IntegrityError):
    """A listed file asked for over HTTP does not match its manifest sha256: its bytes are never sent."""

    status_code = 409

    def __init__(self, name: str, version: int, file: str) -> None:
        super().__init__(
            f"model {name!r} version {version}: file {file!r} does not match the sha256 in its manifest "
            "(changed after publishing); refusing to serve it; republish the version",
            field="file",
            details={"model": name, "version": version, "file": file},
        )


class NotReady(LatentServeError):
    """The registry has not finished its first load."""

    status_code = 503


class Overloaded(LatentServeError):
    """Admission control shed this request before reading its body; retry after `retry_after` s."""

    status_code = 503

    def __init__(self, reason: str, limit: str, retry_after: int) -> None:
        super().__init__(
            f"server busy: {reason} (LATENTSERVE_{limit}); retry after {retry_after} s",
            field="body",
            details={"limit": limit, "retry_after_s": retry_after},
        )
        self.headers = {"Retry-After": str(retry_after)}


class ClientClosed(LatentServeError):
    """The connection closed (or timed out) before the request body was read; nobody gets this."""

    status_code = 499


class Timeout(LatentServeError):
    """A model call ran past REQUEST_TIMEOUT_S."""

    status_code = 504

    @classmethod
    def of_request(cls, verb: str, seconds: float) -> Timeout:
        """The 504 of a request to /`verb` that took longer than REQUEST_TIMEOUT_S (`seconds`)."""
        return cls(f"/{verb}: the request took longer than {seconds:g} s (LATENTSERVE_REQUEST_TIMEOUT_S)")


class RouteNotFound(LatentServeError):
    """No route at this path."""

    status_code = 404


class MethodNotAllowed(LatentServeError):
    status_code = 405


class InternalError(LatentServeError):
    """Anything unexpected; the message never carries a stack trace."""
