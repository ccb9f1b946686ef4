"""Operator actions."""

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from service.api.deps import RegistryDep
from service.schemas import ErrorResponse, ReloadResponse

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/reload", response_model=ReloadResponse, responses={401: {"model": ErrorResponse}})
async def reload(registry: RegistryDep) -> ReloadResponse:
    """Rescan the registry now and load new or changed versions."""
    added = await run_in_threadpool(registry.reload)
    records = registry.records()
    return ReloadResponse(
        added=added,
        models={name: sorted(versions) for name, versions in records.items()},
        failed={
            name: sorted(v for v, r in versions.items() if r.runtime is None)
            for name, versions in records.items()
            if any(r.runtime is None for r in versions.values())
        },
    )
