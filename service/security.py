"""The API key checks: the API's (routes, both fast paths) and the registry pages' (`check_ui_key`)."""

from __future__ import annotations

import base64
import binascii
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


BASIC_CHALLENGE = 'Basic realm="latentserve", charset="UTF-8"'


def check_ui_key(headers: Mapping[str, str], key: SecretStr | None) -> None:
    """The registry pages' check: the key as X-API-Key, Bearer, or the password of HTTP Basic (a
    browser cannot send a header of its own); a missing or wrong key asks for Basic credentials."""
    if key is None:
        return
    scheme, _, token = headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() == "basic":
            try:
                password = base64.b64decode(token.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("malformed Basic credentials", field="api_key") from None
            if not hmac.compare_digest(password.encode(), key.get_secret_value().encode()):
                raise Unauthorized("wrong API key", field="api_key")
            return
        check_api_key(headers, key)
    except Unauthorized as exc:
        exc.headers["WWW-Authenticate"] = BASIC_CHALLENGE
        raise
