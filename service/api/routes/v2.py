"""The Open Inference Protocol (KServe V2) beside our routes: health, metadata, readiness, infer.

Model `{name}` encodes, reconstructs and scores (its outputs pick the ops), `{name}.decoder`
decodes, `{name}.sample` samples (see `service.protocols.v2`). The model repository extension maps `load`
onto the registry's reload; `unload` is refused (the registry serves its whole folder). Infer goes
through the dataplane's door like our routes (`Dataplane.serve`; both fast paths serve it too);
errors under /v2 are `{"error": message}` (`V2Protocol.error`; `service.app` maps them).
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from latentserve_core.layout import parse_version
from latentserve_core.runtime import ModelRuntime
from service.api.deps import APIKey, RegistryDep, ServiceDep
from service.errors import InvalidInput
from service.protocols.v2 import V2, wire
from service.registry import Registry
from service.schemas import (
    V2Error,
    V2InferenceRequest,
    V2InferenceResponse,
    V2ModelMetadata,
    V2ModelReady,
    V2RepositoryModel,
    V2ServerLive,
    V2ServerMetadata,
    V2ServerReady,
)

router = APIRouter(prefix="/v2", tags=["open inference protocol"])
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": V2Error} for code in (400, 401, 404)}


@router.get("/health/live", response_model=V2ServerLive)
async def server_live() -> V2ServerLive:  # async: never waits for a worker thread (see /health/live)
    """Answer while the process runs."""
    return V2ServerLive(live=True)


@router.get("/health/ready", response_model=V2ServerReady, responses={400: {"model": V2ServerReady}})
def server_ready(registry: RegistryDep, request: Request) -> Response:
    """Answer 200 once the registry has loaded; 400 (the protocol's "false") before and once
    shutdown began (draining)."""
    ready = registry.loaded and not request.app.state.draining
    body = V2ServerReady(ready=ready).model_dump_json()
    return Response(body, 200 if ready else 400, media_type="application/json")


@router.get("", response_model=V2ServerMetadata, dependencies=[APIKey], responses=_ERRORS)
def server_metadata(request: Request) -> V2ServerMetadata:
    """Name, version and the protocol extensions served."""
    return V2ServerMetadata(name="latentserve", version=request.app.version, extensions=wire.EXTENSIONS)


def _model(registry: Registry, name: str, version: str | None) -> tuple[str, wire.Target, ModelRuntime]:
    """The model behind `name` (`{model}`, `.decoder`, `.sample`) at `version` (default: newest)."""
    model, target = wire.split_name(name, registry.records())
    runtime = registry.get(model, parse_version(version))
    wire.check_target(runtime, target)
    return model, target, runtime


def _metadata(registry: Registry, name: str, version: str | None) -> V2ModelMetadata:
    model, target, runtime = _model(registry, name, version)
    versions = sorted(
        v
        for v, r in registry.versions(model).items()
        if r.runtime is not None and (target != "sample" or wire.can_sample(r.runtime.manifest))
    )
    doc = wire.model_metadata(name, versions, runtime.manifest, runtime.format, target)
    return V2ModelMetadata.model_validate(doc)


def _ready(registry: Registry, name: str, version: str | None) -> V2ModelReady:
    _model(registry, name, version)  # raises when unknown (404) or failed to load (400)
    return V2ModelReady(name=name, ready=True)


@router.get("/models/{name}", response_model=V2ModelMetadata, dependencies=[APIKey], responses=_ERRORS)
def model_metadata(name: str, registry: RegistryDep) -> V2ModelMetadata:
    """The model's inputs and outputs (datatype, shape; -1 is the batch axis) at its newest version."""
    return _metadata(registry, name, None)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=V2ModelMetadata,
    dependencies=[APIKey],
    responses=_ERRORS,
)
def model_version_metadata(name: str, version: str, registry: RegistryDep) -> V2ModelMetadata:
    """The inputs and outputs of one version of the model."""
    return _metadata(registry, name, version)


@router.get("/models/{name}/ready", response_model=V2ModelReady, dependencies=[APIKey], responses=_ERRORS)
def model_ready(name: str, registry: RegistryDep) -> V2ModelReady:
    """200 when the model's newest version loaded; 404 unknown; 400 when no version loaded."""
    return _ready(registry, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    response_model=V2ModelReady,
    dependencies=[APIKey],
    responses=_ERRORS,
)
def model_version_ready(name: str, version: str, registry: RegistryDep) -> V2ModelReady:
    """200 when this version loaded; 404 unknown; 400 when it failed to load."""
    return _ready(registry, name, version)


def _inlined(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """A JSON schema with its `$defs` references written out, for `openapi_extra`."""
    if defs is None:
        defs = schema.pop("$defs", {})
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(dict(defs[ref.removeprefix("#/$defs/")]), defs)
        return {k: _inlined(v, defs) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


_REQUEST_SCHEMA = _inlined(V2InferenceRequest.model_json_schema())
_INFER: dict[str, Any] = {
    "response_model": V2InferenceResponse,
    "response_class": Response,
    "responses": {
        200: {"content": {wire.OCTET: {"schema": {"type": "string", "format": "binary"}}}},
        **{code: {"model": V2Error} for code in (400, 401, 404, 406, 413, 415, 503, 504)},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _REQUEST_SCHEMA,
                    "example": _REQUEST_SCHEMA["examples"][0],
                }
            },
        }
    },
}


@router.post("/models/{name}/infer", **_INFER)
async def infer(name: str, request: Request, service: ServiceDep) -> Response:
    """Run the model on the input tensor; the requested outputs pick what is computed."""
    verb, ref = V2.verb(name, None, service.registry.records())
    return await service.serve(request, verb, ref)


@router.post("/models/{name}/versions/{version}/infer", **_INFER)
async def infer_version(name: str, version: str, request: Request, service: ServiceDep) -> Response:
    """Run one version of the model on the input tensor."""
    verb, ref = V2.verb(name, version, service.registry.records())
    return await service.serve(request, verb, ref)


# ---- the model repository extension, mapped onto the registry's reload ------------------------------
@router.post(
    "/repository/index", response_model=list[V2RepositoryModel], dependencies=[APIKey], responses=_ERRORS
)
def repository_index(registry: RegistryDep) -> list[V2RepositoryModel]:
    """Every version in the registry, READY or UNAVAILABLE (with the reason)."""
    return [
        V2RepositoryModel(
            name=name,
            version=str(v),
            state="READY" if r.runtime is not None else "UNAVAILABLE",
            reason=r.error or "",
        )
        for name, versions in sorted(registry.records().items())
        for v, r in sorted(versions.items())
    ]


@router.post("/repository/models/{name}/load", dependencies=[APIKey], responses=_ERRORS)
async def repository_load(name: str, registry: RegistryDep) -> dict[str, str]:
    """Rescan the registry (as POST /admin/reload), then answer 200 if `name` has a loaded version."""
    await run_in_threadpool(registry.reload)
    _model(registry, name, None)  # 404 unknown, 400 no version loaded
    return {}


@router.post("/repository/models/{name}/unload", dependencies=[APIKey], responses=_ERRORS)
def repository_unload(name: str, registry: RegistryDep) -> dict[str, str]:
    """Refused: the registry serves every version in MODELS_DIR."""
    _model(registry, name, None)
    raise InvalidInput(
        f"model {name!r}: unload is not supported; the registry serves every version in its folder, "
        "remove the version folder (then reload) to stop serving it",
        field="model",
    )
