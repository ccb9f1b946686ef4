"""The registry UI: `/ui` (every model and version) and `/ui/models/{name}/versions/{v}` (one version,
its card, pictures, score histogram and Try-it form). Server-rendered Jinja2, no JavaScript.

With LATENTSERVE_API_KEY set, the pages sit behind the key like /models. A browser cannot send an
`X-API-Key`, so these routes also take HTTP Basic credentials whose password is the key (any user
name) and answer a missing key with a Basic challenge: the browser asks once. The pictures are
served under /ui too (the same sha256-checked files as /models/.../files/...) so that they go out
with those credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.api.deps import MetricsDep, RegistryDep
from service.artifacts import artifact_response, read_artifact, read_evaluation
from service.drift import Drift
from service.errors import ClientClosed, LatentServeError, Unauthorized
from service.registry import Registry
from service.security import check_api_key
from service.ui import tryit
from service.ui.charts import score_histogram_svg
from service.ui.pages import registry_views, render_card, version_view

BASIC_CHALLENGE = 'Basic realm="latentserve", charset="UTF-8"'
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


async def require_ui_key(request: Request) -> None:
    """The API key as X-API-Key, Bearer, or the password of HTTP Basic; a Basic challenge when missing."""
    key = request.app.state.settings.api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() == "basic":
            try:
                password = base64.b64decode(token.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("malformed Basic credentials", field="api_key") from None
            if not hmac.compare_digest(password.encode(), key.get_secret_value().encode()):
                raise Unauthorized("wrong API key", field="api_key")
            return
        check_api_key(request.headers, key)
    except Unauthorized as exc:
        exc.headers["WWW-Authenticate"] = BASIC_CHALLENGE
        raise


router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(require_ui_key)])
Version = Annotated[int, PathParam(ge=1)]


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


@router.get("", response_class=HTMLResponse)
def registry_page(registry: RegistryDep, metrics: MetricsDep) -> HTMLResponse:
    """Every model and version: status, kind, shapes, threshold, key metrics, evaluation, drift."""
    return _page("registry.html", models=registry_views(registry, metrics.drift))


@router.get("/models/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(name: str, version: Version, registry: RegistryDep, metrics: MetricsDep) -> HTMLResponse:
    """One version: model card, pictures, score histogram (calibration and live), Try-it form."""
    return _version(registry, metrics.drift, name, version)


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
async def try_it(
    name: str, version: Version, request: Request, registry: RegistryDep, metrics: MetricsDep
) -> HTMLResponse:
    """Score one uploaded image (`file`) or pasted rows (`row`); the page shows the results or the error."""
    try:
        runtime = registry.get(name, version)
        tried = await tryit.from_request(
            request, runtime, request.app.state.settings, request.app.state.service.admission
        )
    except ClientClosed as exc:  # nobody to show a page to: rendering it per abort took the loop
        return HTMLResponse(status_code=exc.status_code)
    except LatentServeError as exc:  # shown on the page, with the API's message and status
        return _version(registry, metrics.drift, name, version, error=exc)
    return _version(
        registry, metrics.drift, name, version, error=tried.error, results=tried.results, row=tried.row
    )


def _version(registry: Registry, drift: Drift, name: str, version: int, **extra: Any) -> HTMLResponse:
    view = version_view(registry, drift, name, version)
    card = render_card(registry, view)
    chart = score_histogram_svg(view.drift) if view.drift is not None else None
    error: LatentServeError | None = extra.get("error")
    page = _page(
        "version.html",
        status_code=error.status_code if error is not None else 200,
        v=view,
        card=card,
        chart=chart,
        **extra,
    )
    page.headers.update(getattr(error, "headers", None) or {})  # a 503's Retry-After
    return page
