"""A version's pictures, model card and reports, and its ONNX graphs for offline scorers, sha256-verified
(see `service.artifacts`)."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path
from fastapi.responses import Response

from service.api.deps import RegistryDep
from service.artifacts import artifact_response, read_artifact, read_model_file
from service.schemas import ErrorResponse

router = APIRouter(prefix="/models", tags=["models"])

_FILE_TYPES: dict[str, dict[str, object]] = {"image/png": {}, "text/markdown": {}, "application/json": {}}


def _responses(types: dict[str, dict[str, object]]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"content": types},
        304: {"description": "If-None-Match names this file's sha256"},
        404: {"model": ErrorResponse},
        409: {"model": ErrorResponse},
    }


@router.get(
    "/{name}/versions/{version}/files/{file}",
    response_class=Response,
    responses=_responses(_FILE_TYPES),
)
def get_file(
    name: str,
    version: Annotated[int, Path(ge=1)],
    file: str,
    registry: RegistryDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Return a picture, model card or report the version's manifest lists, if its sha256 still matches."""
    return artifact_response(read_artifact(registry, name, version, file), if_none_match)


@router.get(
    "/{name}/versions/{version}/artifacts/{file}",
    response_class=Response,
    responses=_responses({"application/octet-stream": {}}),
)
def get_model_file(
    name: str,
    version: Annotated[int, Path(ge=1)],
    file: str,
    registry: RegistryDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Return an ONNX graph or reference file the version's manifest lists, if its sha256 still matches."""
    return artifact_response(read_model_file(registry, name, version, file), if_none_match)
