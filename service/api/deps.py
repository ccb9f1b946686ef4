"""`Annotated[..., Depends(...)]` aliases so route signatures stay short."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.errors import Unauthorized
from service.inference import InferenceService
from service.metrics import Metrics
from service.registry import Registry
from service.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def require_api_key(request: Request) -> None:
    """When LATENTSERVE_API_KEY is set, demand it as `X-API-Key` or `Authorization: Bearer`."""
    key = request.app.state.settings.api_key
    if key is None:
        return
    given = request.headers.get("x-api-key")
    if given is None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            given = token.strip()
    if given is None:
        raise Unauthorized(
            "missing API key: send it as X-API-Key or Authorization: Bearer <key>", field="api_key"
        )
    if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise Unauthorized("wrong API key", field="api_key")


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
ServiceDep = Annotated[InferenceService, Depends(get_service)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
APIKey = Depends(require_api_key)
