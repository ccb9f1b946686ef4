"""A pure-ASGI shortcut for the inference POSTs, taken before FastAPI's middleware and router.

FastAPI's middleware stack, router matching and dependency solving cost about as much as a one-row
model call, and the inference routes need none of them: `LatentServeApp.__call__` hands
`POST /encode`, `/decode`, `/reconstruct`, `/anomaly-score`, `/sample` and the Open Inference
Protocol's `/v2/models/{m}[/versions/{v}]/infer` (`InferenceService.find`) straight to
`InferenceService.handle`, the same core the routes in `service.api.routes.inference` and `.v2` call (those
stay the OpenAPI definitions, and the path taken with LATENTSERVE_FAST_PATH=false). The API key
check and the error shape are the core's: `InferenceService.handle` answers every error itself.
`python -m service` goes one step further down, see `service.fastpath.protocol`.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.codecs import internal_error_response
from service.inference import InferenceService


class InferenceFastPath:
    def __init__(self, service: InferenceService) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request if it is an inference POST; return False to let FastAPI have it."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        found = self.service.find(scope["path"])
        if found is None:
            return False
        verb, path = found
        response: Response
        try:
            response = await self.service.handle(Request(scope, receive), verb, path)
        except Exception as exc:  # handle answers every error itself; this is the last guard
            response = internal_error_response("POST", scope["path"], exc, verb.error)
        await response(scope, receive, send)
        return True


class LatentServeApp(FastAPI):
    """FastAPI, with the inference POSTs served first by the fast path (`create_app` sets it)."""

    fast_path: InferenceFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None and await self.fast_path(scope, receive, send):
            return
        await super().__call__(scope, receive, send)
