"""The ASGI app: `create_app(settings)`; `uvicorn --factory service.app:create_app` reads the env.

Start-up loads the registry in a worker thread (liveness answers at once, readiness once loaded)
and starts the reload poller; one exception handler maps every error to the one JSON shape (under
/v2, the Open Inference Protocol's `{"error": message}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from http import HTTPStatus

import anyio.to_thread
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from service.allocator import tune_allocator
from service.api.deps import APIKey
from service.api.main import api_router
from service.assembly import assemble, load_settings
from service.codecs import internal_error_response
from service.errors import (
    LatentServeError,
    MethodNotAllowed,
    RouteNotFound,
    invalid_input,
)
from service.fastpath.asgi import InferenceFastPath, LatentServeApp
from service.gcfreeze import freeze_heap, thaw_heap
from service.jsonpool import JsonPool
from service.protocols.native import NATIVE
from service.protocols.v2 import V2
from service.registry import Registry
from service.settings import Settings
from service.ui import router as ui_router

log = logging.getLogger("latentserve.app")

DESCRIPTION = """Serve trained encoders and decoders; score anomalies by reconstruction error.

Inference endpoints read JSON (`inputs` / `codes`), `.npy` (`Content-Type: application/x-npy`, model
and version as query parameters) and, for image models, `multipart/form-data` files under `files`.
They answer JSON, or with `Accept: application/x-npy` the primary array (codes, outputs,
reconstructions or scores), `application/x-npz` every array by name, `image/png` one image; binary
answers name the model in the `X-Model` and `X-Model-Version` headers. Every error is
`{"error": {"type", "message", "field", "details"}}`.
"""


async def _on_error(request: Request, exc: Exception) -> Response:
    path = request.url.path
    render = V2.error if path == "/v2" or path.startswith("/v2/") else NATIVE.error
    if isinstance(exc, LatentServeError):
        return render(exc)
    if isinstance(exc, RequestValidationError):
        return render(invalid_input(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        return render(_from_http(request, exc))
    return internal_error_response(request.method, path, exc, render)


def _from_http(request: Request, exc: StarletteHTTPException) -> LatentServeError:
    if exc.status_code == 404:
        return RouteNotFound(f"no route {request.url.path!r}; see /docs for the API", field="path")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path!r}; allowed: {allowed}", field="method"
        )
    err = LatentServeError(str(exc.detail) or HTTPStatus(exc.status_code).phrase)
    err.status_code = exc.status_code
    return err


async def _poll(registry: Registry, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            added = await anyio.to_thread.run_sync(registry.reload)
            if added:
                log.info("reload: new or changed versions %s", added)
        except Exception:
            log.exception("registry reload failed; keeping the previous snapshot")


async def _initial_load(registry: Registry, json_pool: JsonPool, freeze: bool) -> None:
    try:  # readiness waits for the JSON workers too, so no request finds them starting
        await anyio.to_thread.run_sync(json_pool.start)
        await anyio.to_thread.run_sync(registry.reload)
        log.info("registry loaded: %d models from %s", len(registry.records()), registry.models_dir)
    except Exception:
        log.exception("initial registry load failed")
        registry.loaded = True  # serve what is there (nothing); the poller retries
    if freeze:  # the one full collection it costs falls as readiness turns, before traffic comes
        freeze_heap()


def _docs_behind_key(app: FastAPI) -> None:
    """/openapi.json, /docs and /redoc as routes behind the API key (LATENTSERVE_DOCS_PUBLIC=false)."""
    key = [APIKey]

    @app.get("/openapi.json", include_in_schema=False, dependencies=key)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=key)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", include_in_schema=False, dependencies=key)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; with no settings, read them from the environment (uvicorn --factory)."""
    parts = assemble(settings if settings is not None else load_settings())
    settings, registry = parts.settings, parts.registry
    if settings.tune_malloc:
        tune_allocator()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        json_pool = app.state.service.json_pool
        tasks = [asyncio.create_task(_initial_load(registry, json_pool, settings.freeze_heap))]
        if settings.reload_interval_s > 0:
            tasks.append(asyncio.create_task(_poll(registry, settings.reload_interval_s)))
        try:
            yield
        finally:
            if settings.freeze_heap:
                thaw_heap()
            await asyncio.to_thread(json_pool.close)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    docs_open = settings.api_key is None or settings.docs_public
    app = LatentServeApp(
        title="latentserve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs_open else None,
        docs_url="/docs" if docs_open else None,
        redoc_url="/redoc" if docs_open else None,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = parts.metrics
    app.state.service = parts.dataplane
    app.state.draining = False  # set on SIGTERM by service.server: readiness answers 503
    for exc_type in (LatentServeError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(exc_type, _on_error)
    app.include_router(api_router)
    app.include_router(ui_router)
    if not docs_open:
        _docs_behind_key(app)
    if settings.fast_path:
        app.fast_path = InferenceFastPath(app.state.service)
    return app
