"""`Annotated[..., Depends(...)]` aliases so route signatures stay short.

The dependencies are `async def` on purpose: they only read app state, and FastAPI would run a
plain `def` dependency in the thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.inference import Dataplane
from service.metrics import ServiceMetrics
from service.registry import Registry
from service.security import check_api_key


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def get_service(request: Request) -> Dataplane:
    service: Dataplane = request.app.state.service
    return service


async def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


async def require_api_key(request: Request) -> None:
    """The LATENTSERVE_API_KEY check as a dependency."""
    check_api_key(request.headers, request.app.state.settings.api_key)


RegistryDep = Annotated[Registry, Depends(get_registry)]
ServiceDep = Annotated[Dataplane, Depends(get_service)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
APIKey = Depends(require_api_key)
