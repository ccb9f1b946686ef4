"""The registry UI: `/ui` (every model and version) and `/ui/models/{name}/versions/{v}` (one version,
its card, pictures, score histogram and Try-it form). Server-rendered Jinja2, no JavaScript.

With LATENTSERVE_API_KEY set, the pages sit behind the key like /models. A browser cannot send an
`X-API-Key`, so these routes also take HTTP Basic credentials whose password is the key (any user
name) and answer a missing key with a Basic challenge: the browser asks once. The pictures are
served under /ui too (the same sha256-checked files as /models/.../files/...) so that they go out
with those credentials.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from service.api.deps import MetricsDep, RegistryDep
from service.artifacts import artifact_response, read_artifact, read_evaluation
from service.errors import ClientClosed, LatentServeError
from service.protocols.native import NATIVE
from service.security import check_ui_key
from service.ui import render, tryit
from service.ui.pages import registry_views


async def require_ui_key(request: Request) -> None:
    """The API key as X-API-Key, Bearer, or the password of HTTP Basic; a Basic challenge when missing."""
    check_ui_key(request.headers, request.app.state.settings.api_key)


router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(require_ui_key)])
Version = Annotated[int, PathParam(ge=1)]


@router.get("", response_class=HTMLResponse)
def registry_page(registry: RegistryDep, metrics: MetricsDep) -> HTMLResponse:
    """Every model and version: status, kind, shapes, threshold, key metrics, evaluation, drift."""
    return render.page("registry.html", models=registry_views(registry, metrics.drift))


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(name: str, version: Version, registry: RegistryDep, metrics: MetricsDep) -> HTMLResponse:
    """One version: model card, pictures, score histogram (calibration and live), Try-it form."""
    return render.version_page(registry, metrics.drift, name, version)


_READERS = {"files": read_artifact, "evaluations": read_evaluation}


@router.get("/models/{name}/versions/{version}/{where}/{file}", response_class=Response)
def version_file(
    name: str,
    version: Version,
    where: Literal["files", "evaluations"],
    file: str,
    registry: RegistryDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """files/: the same sha256-checked file as /models/{name}/versions/{v}/files/{file};
    evaluations/: a report or ROC curve of `training evaluate` (not pinned by the manifest)."""
    return artifact_response(_READERS[where](registry, name, version, file), if_none_match)


@router.post("/models/{name}/versions/{version}/try", response_class=HTMLResponse)
async def try_it(name: str, version: Version, request: Request) -> Response:
    """Score one uploaded image (`file`) or pasted rows (`row`); the page shows the results or the error."""
    return await try_page(request, name, version)


async def try_page(request: Request, name: str, version: int) -> Response:
    """Try-it, scored through the dataplane's door (`tryit.tried`), then the version's page with
    the results or the error. Also served by the ASGI shortcut (`service.fastpath.asgi`), before
    FastAPI's router: an aborted upload costs no routing or dependency solving."""
    state = request.app.state
    try:
        check_ui_key(request.headers, state.settings.api_key)
        tried = await tryit.tried(request, state.service, name, version)
        return render.version_page(
            state.registry,
            state.metrics.drift,
            name,
            version,
            error=tried.error,
            results=tried.results,
            row=tried.row,
        )
    except ClientClosed as exc:  # nobody to show a page to: rendering it per abort took the loop
        return Response(status_code=exc.status_code)
    except LatentServeError as exc:  # the key, or no such version: the API's error
        return NATIVE.error(exc)
    finally:
        tryit.release_upload(request.scope)  # read by the connection: its ticket, whatever happened
