"""A pure-ASGI shortcut for the inference POSTs and Try-it, taken before FastAPI's middleware and router.

FastAPI's middleware stack, router matching and dependency solving cost about as much as a one-row
model call, and these POSTs need none of them: `LatentServeApp.__call__` hands `POST /encode`,
`/decode`, `/reconstruct`, `/anomaly-score`, `/sample` and the Open Inference Protocol's
`/v2/models/{m}[/versions/{v}]/infer` (`Dataplane.route`) straight to the dataplane's door
(`Dataplane.serve`: `ticket`, then `infer`), the same door the routes in
`service.api.routes.inference` and `.v2` call (those stay the OpenAPI definitions, and the path
taken with LATENTSERVE_FAST_PATH=false). The registry page's Try-it POST goes the same way
(`service.ui.routes.try_page`), so that an aborted upload costs no routing. The door answers every
error itself. `python -m service` goes one step further down, see `service.fastpath.protocol`.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service.codecs import internal_error_response
from service.inference import Dataplane
from service.protocols.native import NATIVE


class InferenceFastPath:
    def __init__(self, service: Dataplane) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Serve the request if it is an inference or Try-it POST; return False to let FastAPI have it."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        path: str = scope["path"]
        if path.startswith("/ui/"):
            return await self._try_it(scope, receive, send)
        found = self.service.route(path)
        if found is None:
            return False
        verb, ref = found
        response: Response
        try:
            response = await self.service.serve(Request(scope, receive), verb, ref)
        except Exception as exc:  # the door answers every error itself; this is the last guard
            response = internal_error_response("POST", path, exc, verb.protocol.error)
        await response(scope, receive, send)
        return True

    @staticmethod
    async def _try_it(scope: Scope, receive: Receive, send: Send) -> bool:
        from service.ui.routes import try_page  # the UI imports the door: imported when used
        from service.ui.tryit import TRY_PATH

        match = TRY_PATH.fullmatch(scope["path"])
        if match is None:
            return False
        response: Response
        try:
            response = await try_page(Request(scope, receive), match[1], int(match[2]))
        except Exception as exc:  # try_page answers every error itself; this is the last guard
            response = internal_error_response("POST", scope["path"], exc, NATIVE.error)
        await response(scope, receive, send)
        return True


class LatentServeApp(FastAPI):
    """FastAPI, with the inference POSTs served first by the fast path (`create_app` sets it)."""

    fast_path: InferenceFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # as Starlette does: the shortcut's requests reach `request.app` too
        if self.fast_path is not None and await self.fast_path(scope, receive, send):
            return
        await super().__call__(scope, receive, send)
