"""What a request brings besides its arrays: its body (read once, within its size limit), its
media type and content coding, and the small envelope of options validated against a schema."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from service.codecs.media import JSON
from service.errors import PayloadTooLarge, UnsupportedMediaType, invalid_input

if TYPE_CHECKING:
    from service.admission import Ticket


def content_length(value: str | None) -> int | None:
    """A Content-Length header's value as a number, or None when absent or not plain ASCII digits
    (`'²'.isdigit()` is true, and `int('²')` fails)."""
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def declared_length(headers: Mapping[str, str]) -> int | None:
    """The request's Content-Length, when it is a plain number."""
    return content_length(headers.get("content-length"))


async def read_body(
    request: Request,
    limit: int,
    ticket: Ticket | None = None,
    too_large: Callable[[int | None], PayloadTooLarge] | None = None,
) -> bytes:
    """Return the whole body, or raise PayloadTooLarge (413, `too_large(declared)` when given) once
    it passes `limit` bytes; a body longer than the admission `ticket` reserved (no Content-Length)
    grows it, or is shed (503)."""
    return b"".join(await read_body_chunks(request, limit, ticket, too_large))


async def read_body_chunks(
    request: Request,
    limit: int,
    ticket: Ticket | None = None,
    too_large: Callable[[int | None], PayloadTooLarge] | None = None,
) -> list[bytes]:
    """`read_body`, as the chunks received: for a reader that takes them one at a time (and can
    drop each once read) without the whole body's joined copy."""
    refuse = too_large if too_large is not None else functools.partial(body_too_large, limit)
    declared = declared_length(request.headers)
    if declared is not None and declared > limit:
        raise refuse(declared)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refuse(None)
        if ticket is not None:
            ticket.cover(size)
        chunks.append(chunk)
    return chunks


def body_too_large(limit: int, declared: int | None = None) -> PayloadTooLarge:
    """The 413 for a body over `limit` bytes: its declared Content-Length, or found while reading."""
    if declared is not None:
        return PayloadTooLarge(
            f"body: {declared} bytes is over the limit of {limit} bytes",
            field="body",
            details={"limit": limit, "got": declared},
        )
    return PayloadTooLarge(
        f"body: more than the limit of {limit} bytes", field="body", details={"limit": limit}
    )


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type header, lower case ("" when absent)."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def check_content_type(ctype: str, accepted: tuple[str, ...]) -> str:
    """Map a Content-Type onto one we read (JSON when absent), or raise 415."""
    if ctype in ("", JSON) or (ctype.startswith("application/") and ctype.endswith("+json")):
        ctype = JSON
    if ctype not in accepted:
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r} is not supported here; send one of {list(accepted)}",
            field="content-type",
            details={"supported": list(accepted)},
        )
    return ctype


def check_content_encoding(header: str | None) -> None:
    """Bodies are read as sent: a Content-Encoding other than identity is a 415 (not decoded)."""
    if header is None:
        return
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    if any(c != "identity" for c in codings):
        raise UnsupportedMediaType(
            f"Content-Encoding {header!r} is not supported; send the body uncompressed "
            "(Content-Encoding: identity or none)",
            field="content-encoding",
            details={"supported": ["identity"]},
        )


def validate_options(model: type[BaseModel], data: Mapping[str, Any], source: str) -> Any:
    """Validate the small envelope of a request; pydantic errors become one 422 in our shape."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_input(exc.errors(include_url=False, include_input=False), source) from None
