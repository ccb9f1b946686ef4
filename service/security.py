"""The API key check, shared by the routes' dependency, the ASGI fast path and the HTTP fast path."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from service.errors import Unauthorized


def check_api_key(headers: Mapping[str, str], key: SecretStr | None) -> None:
    """When a key is set, demand it as `X-API-Key` or `Authorization: Bearer` (constant-time compare).

    `headers` maps lower-case names to values (starlette's `Headers` or a plain dict)."""
    if key is None:
        return
    given = headers.get("x-api-key")
    if given is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            given = token.strip()
    if given is None:
        raise Unauthorized(
            "missing API key: send it as X-API-Key or Authorization: Bearer <key>", field="api_key"
        )
    if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise Unauthorized("wrong API key", field="api_key")
