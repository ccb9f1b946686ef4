"""Liveness and readiness (never behind the API key)."""

from fastapi import APIRouter, Request

from service.api.deps import RegistryDep
from service.errors import NotReady
from service.schemas import ErrorResponse, HealthResponse

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=HealthResponse)
async def live() -> HealthResponse:
    """Answer while the process runs."""
    # async: answered on the event loop, never waiting for the worker threads that read files,
    # reload models, render /metrics and /ui
    return HealthResponse(status="ok")


@router.get("/ready", response_model=HealthResponse, responses={503: {"model": ErrorResponse}})
def ready(registry: RegistryDep, request: Request) -> HealthResponse:
    """Answer 200 once the registry has loaded, 503 before and once shutdown began (draining)."""
    if not registry.loaded:
        raise NotReady("the model registry is still loading")
    if request.app.state.draining:
        raise NotReady("shutting down: draining the requests in flight")
    return HealthResponse(status="ready", models=len(registry.records()))
