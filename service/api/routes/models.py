"""What the registry holds: every model, or one model's manifests."""

from fastapi import APIRouter

from service.api.deps import RegistryDep
from service.registry import VersionRecord
from service.schemas import (
    ErrorResponse,
    ModelDetailResponse,
    ModelsResponse,
    ModelSummary,
    VersionDetail,
    VersionSummary,
)

router = APIRouter(prefix="/models", tags=["models"])


def _summary(r: VersionRecord) -> VersionSummary:
    m = r.manifest
    if m is None:
        return VersionSummary(version=r.version, status=r.status, error=r.error)
    return VersionSummary(
        version=r.version,
        status=r.status,
        error=r.error,
        kind=m.kind,
        format=r.runtime.format if r.runtime is not None else m.format,
        input_shape=m.input.shape,
        layout=m.input.layout,
        latent_dim=m.latent_dim,
        latent_distribution=m.latent_distribution,
        threshold=m.threshold.value,
        metrics=m.metrics,
        created_at=m.created_at,
    )


@router.get("", response_model=ModelsResponse)
def list_models(registry: RegistryDep) -> ModelsResponse:
    """List every model with its versions, shapes, thresholds, metrics and load status."""
    return ModelsResponse(
        models=[
            ModelSummary(
                name=name,
                latest=registry.latest(name),
                versions=[_summary(versions[v]) for v in sorted(versions)],
            )
            for name, versions in sorted(registry.records().items())
        ]
    )


@router.get("/{name}", response_model=ModelDetailResponse, responses={404: {"model": ErrorResponse}})
def get_model(name: str, registry: RegistryDep) -> ModelDetailResponse:
    """Return one model's manifests, version by version, with load status."""
    versions = registry.versions(name)
    return ModelDetailResponse(
        name=name,
        latest=registry.latest(name),
        versions=[
            VersionDetail(
                version=v,
                status=r.status,
                error=r.error,
                manifest=r.manifest.model_dump(mode="json") if r.manifest is not None else None,
            )
            for v, r in sorted(versions.items())
        ],
    )
