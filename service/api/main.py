"""Gathers the routers: health (ours and /v2's) is open, everything else sits behind the API key
(when one is set).

The inference routes check the key in the dataplane (`Dataplane.ticket`, shared with both fast
paths, which also counts the 401 in the metrics), so they take no dependency for it here."""

from fastapi import APIRouter

from service.api.deps import APIKey
from service.api.routes import admin, files, health, inference, metrics, models, v2

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(inference.router)
api_router.include_router(models.router, dependencies=[APIKey])
api_router.include_router(files.router, dependencies=[APIKey])
api_router.include_router(metrics.router, dependencies=[APIKey])
api_router.include_router(admin.router, dependencies=[APIKey])
api_router.include_router(v2.router)  # health open, the rest behind the key (per route, and the core)
