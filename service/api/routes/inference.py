"""Encode, decode, reconstruct, score, sample: each route hands its request to the dataplane's door.

The JSON body is read raw and parsed with orjson (see `service.codecs`), so the request schema is
declared through `openapi_extra`; `.npy` and image bodies take model and version as query parameters.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from service.api.deps import ServiceDep
from service.codecs import CSV, JSON, MULTIPART, NPY
from service.inference import VERBS, Verb
from service.schemas import (
    AnomalyScoreRequest,
    AnomalyScoreResponse,
    DecodeRequest,
    DecodeResponse,
    EncodeRequest,
    EncodeResponse,
    ErrorResponse,
    ReconstructRequest,
    ReconstructResponse,
    SampleRequest,
    SampleResponse,
)

router = APIRouter(tags=["inference"])

_BINARY = {"type": "string", "format": "binary"}
_QUERY: dict[str, dict[str, Any]] = {
    "model": {"type": "string", "description": "model name (.npy, CSV and image bodies)"},
    "version": {"type": "integer", "minimum": 1, "description": "model version (.npy, CSV and image bodies)"},
    "resize": {"type": "boolean", "description": "resize images to the model's input size"},
    "threshold": {"type": "number", "description": "override the calibrated threshold"},
    "alpha": {
        "type": "number",
        "exclusiveMinimum": 0,
        "exclusiveMaximum": 1,
        "description": "a false-positive rate: is_anomaly = p_value <= alpha (not with threshold)",
    },
    "return_feature_errors": {"type": "boolean", "description": "add the per-feature errors"},
}


def _spec(verb: Verb, request_model: type[BaseModel], query: tuple[str, ...]) -> dict[str, Any]:
    """The OpenAPI request body and query parameters of an inference route."""
    schema = request_model.model_json_schema()
    content: dict[str, Any] = {JSON: {"schema": schema, "example": schema["examples"][0]}}
    if NPY in verb.reads:
        content[NPY] = {"schema": _BINARY}
    if CSV in verb.reads:  # rows by column name, ordered by the model's feature names
        content[CSV] = {
            "schema": {"type": "string"},
            "example": "mean radius,mean texture,...\n17.99,10.38,...\n",
        }
    if MULTIPART in verb.reads:
        content[MULTIPART] = {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {"files": {"type": "array", "items": _BINARY}},
            }
        }
    params = [{"name": q, "in": "query", "required": False, "schema": _QUERY[q]} for q in query]
    return {"requestBody": {"required": True, "content": content}, "parameters": params}


def _responses(verb: Verb) -> dict[int | str, dict[str, Any]]:
    binary = {media: {"schema": _BINARY} for media in verb.produces if media != JSON}
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse} for code in (401, 404, 406, 413, 415, 422, 503, 504)
    }
    return {200: {"content": binary}, **errors}


def _route(
    path: str,
    verb: Verb,
    request_model: type[BaseModel],
    response_model: type[BaseModel],
    query: tuple[str, ...] = ("model", "version"),
) -> dict[str, Any]:
    return {
        "path": path,
        "response_model": response_model,
        "response_class": Response,
        "openapi_extra": _spec(verb, request_model, query),
        "responses": _responses(verb),
    }


_ENCODE, _DECODE, _RECON, _SCORE, _SAMPLE = (
    VERBS[v] for v in ("encode", "decode", "reconstruct", "anomaly-score", "sample")
)


@router.post(**_route("/encode", _ENCODE, EncodeRequest, EncodeResponse, ("model", "version", "resize")))
async def encode(request: Request, service: ServiceDep) -> Response:
    """Map input rows (JSON, .npy or images) to latent codes."""
    return await service.serve(request, _ENCODE)


@router.post(**_route("/decode", _DECODE, DecodeRequest, DecodeResponse))
async def decode(request: Request, service: ServiceDep) -> Response:
    """Map latent codes back to input space."""
    return await service.serve(request, _DECODE)


@router.post(
    **_route("/reconstruct", _RECON, ReconstructRequest, ReconstructResponse, ("model", "version", "resize"))
)
async def reconstruct(request: Request, service: ServiceDep) -> Response:
    """Encode then decode rows; return reconstructions and per-row errors (one image: PNG too)."""
    return await service.serve(request, _RECON)


@router.post(
    **_route(
        "/anomaly-score",
        _SCORE,
        AnomalyScoreRequest,
        AnomalyScoreResponse,
        ("model", "version", "resize", "threshold", "alpha", "return_feature_errors"),
    )
)
async def anomaly_score(request: Request, service: ServiceDep) -> Response:
    """Score rows by reconstruction error against the calibrated threshold, with p-values."""
    return await service.serve(request, _SCORE)


@router.post(**_route("/sample", _SAMPLE, SampleRequest, SampleResponse, ()))
async def sample(request: Request, service: ServiceDep) -> Response:
    """Decode draws from the latent prior (models with a standard-normal latent; 422 otherwise)."""
    return await service.serve(request, _SAMPLE)
