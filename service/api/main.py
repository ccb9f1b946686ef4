"""Gathers the routers: health is open, everything else sits behind the API key (when one is set).

The inference routes check the key in the core (`InferenceService.admit`, shared with both fast
paths, which also counts the 401 in the metrics), so they take no dependency for it here."""

from fastapi import APIRouter

from service.api.deps import APIKey
from service.api.routes import admin, health, inference, metrics, models

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(inference.router)
api_router.include_router(models.router, dependencies=[APIKey])
api_router.include_router(metrics.router, dependencies=[APIKey])
api_router.include_router(admin.router, dependencies=[APIKey])
