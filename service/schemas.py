"""Wire models: `<Verb>Request` / `<Verb>Response`. Requests forbid unknown fields.

Inference requests are split in two: `<Verb>Options` holds the small envelope (model, version,
options) that pydantic validates, also read from the query string for .npy and image bodies; the
`<Verb>Request` adds the array field (`inputs` or `codes`), which numpy converts in one pass. The
`<Verb>Request` classes describe the JSON body in the OpenAPI schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationInfo, field_validator

from latentserve_core.manifest import NAME_PATTERN, Metrics

# One row: flat values, or nested lists in the manifest's input shape (e.g. 8x8 for an image).
Row = list[float] | list[list[float]] | list[list[list[float]]]
# An input row may also be a record, {column: value}, put in the order of the model's feature names
# (`service.codecs.table`).
InputRow = Row | dict[str, float]

_DIGIT_ROW: list[JsonValue] = [0.0, 0.2, 0.8, 1.0, 0.9, 0.3, 0.0, 0.0] * 8


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model: str = Field(description="the model that answered")
    version: int = Field(description="the version that answered")


class InferenceOptions(_Request):
    """Which model answers; in the JSON body, or as query parameters for .npy and image bodies."""

    model: str = Field(pattern=NAME_PATTERN, description="model name", examples=["digits-pca"])
    version: int | None = Field(default=None, ge=1, description="version (default: the newest that loaded)")


class ResizeOption(_Request):
    """The query flag of image bodies: resize to the model's input size instead of refusing."""

    resize: bool = Field(default=False, description="resize images to the model's input size")


class EncodeOptions(InferenceOptions):
    pass


class DecodeOptions(InferenceOptions):
    pass


class ReconstructOptions(InferenceOptions):
    pass


class AnomalyScoreOptions(InferenceOptions):
    threshold: float | None = Field(
        default=None, allow_inf_nan=False, description="override the calibrated threshold"
    )
    alpha: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="a false-positive rate: is_anomaly = p_value <= alpha instead of score > threshold "
        "(not with threshold)",
    )
    return_feature_errors: bool = Field(
        default=False, description="add the squared error per feature (per pixel for images)"
    )

    @field_validator("alpha")
    @classmethod
    def _one_rule(cls, alpha: float | None, info: ValidationInfo) -> float | None:
        if alpha is not None and info.data.get("threshold") is not None:
            raise ValueError("give threshold (a score) or alpha (a false-positive rate), not both")
        return alpha


class EncodeRequest(EncodeOptions):
    """Rows to encode; each row flat (input size values) or shaped like the manifest's input."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "digits-pca", "inputs": [_DIGIT_ROW]}]}
    )
    inputs: list[InputRow] = Field(
        min_length=1, description="rows, flat or shaped, or records by column name (features with names)"
    )


class EncodeResponse(_Response):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "digits-pca", "version": 1, "codes": [[0.41, -1.2, 0.07]]}]}
    )

    codes: list[list[float]] = Field(description="latent codes, one row per input row")


class DecodeRequest(DecodeOptions):
    """Latent codes to map back to input space; each row has latent_dim values."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "digits-pca", "codes": [[0.0] * 28]}]}
    )
    codes: list[list[float]] = Field(min_length=1, description="codes, latent_dim values per row")


class DecodeResponse(_Response):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "breast-cancer-pca", "version": 1, "outputs": [[14.1, 19.3, 92.0]]}]
        }
    )

    outputs: list[Row] = Field(description="rows in the manifest's input shape")


class ReconstructRequest(ReconstructOptions):
    """Rows to encode then decode."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "breast-cancer-pca", "inputs": [[14.0] * 30]}]}
    )
    inputs: list[InputRow] = Field(
        min_length=1, description="rows, flat or shaped, or records by column name (features with names)"
    )


class ReconstructResponse(_Response):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "breast-cancer-pca",
                    "version": 1,
                    "reconstructions": [[14.1, 19.3, 92.0]],
                    "errors": [0.21],
                }
            ]
        }
    )

    reconstructions: list[Row] = Field(description="reconstructed rows, shaped as the rows were sent")
    errors: list[float] = Field(description="per-row reconstruction error (the anomaly score)")


class AnomalyScoreRequest(AnomalyScoreOptions):
    """Rows to score against the model's calibrated threshold."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "digits-pca", "inputs": [_DIGIT_ROW], "return_feature_errors": True}]
        }
    )
    inputs: list[InputRow] = Field(
        min_length=1, description="rows, flat or shaped, or records by column name (features with names)"
    )


class AnomalyScoreResponse(_Response):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "digits-pca",
                    "version": 1,
                    "scores": [0.012, 0.094],
                    "threshold": 0.031,
                    "is_anomaly": [False, True],
                    "p_values": [0.41, 0.004],
                    "rule": "threshold",
                }
            ]
        }
    )

    scores: list[float] = Field(description="per-row reconstruction error")
    threshold: float = Field(
        description="the threshold the scores were compared with (rule alpha: the score cut-off alpha "
        "amounts to)"
    )
    is_anomaly: list[bool] = Field(
        description="rule threshold: score > threshold; rule alpha: p_value <= alpha"
    )
    p_values: list[float] = Field(description="conformal p-value against the calibration scores")
    rule: Literal["threshold", "alpha"] = Field(description="which rule decided is_anomaly")
    alpha: float | None = Field(
        default=None, description="with rule alpha: the false-positive rate asked for"
    )
    feature_errors: list[Row] | None = Field(
        default=None, description="squared error per feature, with return_feature_errors"
    )


class SampleRequest(InferenceOptions):
    """Draw codes from N(0, I) and decode them (models with a standard-normal latent, e.g. a VAE)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"model": "digits-vae", "n": 4, "seed": 0}]})
    n: int = Field(default=1, ge=1, description="how many samples")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="random seed")


class SampleResponse(_Response):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"model": "digits-vae", "version": 1, "outputs": [[[0.0, 0.3], [0.8, 0.1]]]}]
        }
    )

    outputs: list[Row] = Field(description="decoded samples in the manifest's input shape")


class VersionSummary(BaseModel):
    version: int
    status: str = Field(description="ready, or failed (see error)")
    error: str | None = None
    kind: str | None = None
    format: str | None = Field(default=None, description="the format it is served from")
    input_shape: list[int] | None = None
    layout: str | None = None
    latent_dim: int | None = None
    latent_distribution: str | None = None
    threshold: float | None = None
    metrics: Metrics | None = None
    created_at: datetime | None = None


class ModelSummary(BaseModel):
    name: str
    latest: int | None = Field(description="the version served by default (newest that loaded)")
    versions: list[VersionSummary]


class ModelsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "models": [
                        {
                            "name": "digits-pca",
                            "latest": 1,
                            "versions": [
                                {
                                    "version": 1,
                                    "status": "ready",
                                    "kind": "pca",
                                    "format": "onnx",
                                    "input_shape": [8, 8],
                                    "layout": "image",
                                    "latent_dim": 16,
                                    "threshold": 0.031,
                                }
                            ],
                        }
                    ]
                }
            ]
        }
    )

    models: list[ModelSummary]


class VersionDetail(BaseModel):
    version: int
    status: str
    error: str | None = None
    manifest: dict[str, Any] | None = Field(description="the version's manifest.json, when readable")


class ModelDetailResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "digits-pca",
                    "latest": 1,
                    "versions": [
                        {
                            "version": 1,
                            "status": "ready",
                            "error": None,
                            "manifest": {"name": "digits-pca", "version": 1, "kind": "pca"},
                        }
                    ],
                }
            ]
        }
    )

    name: str
    latest: int | None
    versions: list[VersionDetail]


class HealthResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ready", "models": 9}]})

    status: str
    models: int | None = None


class ReloadResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"added": {"digits-pca": [2]}, "models": {"digits-pca": [1, 2]}, "failed": {}}]
        }
    )

    added: dict[str, list[int]] = Field(description="versions that appeared or changed")
    models: dict[str, list[int]] = Field(description="every model's versions after the reload")
    failed: dict[str, list[int]] = Field(description="versions that failed to load")


class ErrorBody(BaseModel):
    type: str
    message: str
    field: str | None = None
    details: Any = None


class ErrorResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "type": "ModelNotFound",
                        "message": "model 'nope' not found; available models: ['digits-pca']",
                        "field": "model",
                        "details": {"available": ["digits-pca"]},
                    }
                }
            ]
        }
    )

    error: ErrorBody


# ---- the Open Inference Protocol (/v2, `service.protocols.v2`) --------------------------------------------
# Field names and required fields follow the protocol's open_inference_rest.yaml. Tensor `data` is
# read by numpy (`service.protocols.v2.wire`), not by pydantic; it is described here for the OpenAPI schema.
# Unlike our own requests these ignore unknown fields: the protocol's clients send more than it
# names (KServe's InferenceRESTClient adds `model_name` to the body).
TensorData = list[Any]
# Free-form parameters of any JSON value; the few read (`threshold`, `alpha`, `seed` of `.sample`,
# `binary_data_output`, `binary_data`, `binary_data_size`) are checked where they are read.
V2Params = dict[str, Any]


class _V2Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class V2RequestInput(_V2Request):
    name: str = Field(description="the input tensor's name: input, code (decoder) or n (sample)")
    shape: list[int] = Field(description="rows first, e.g. [2, 8, 8] or [2, 64]")
    datatype: str = Field(description="FP32 (FP16 and FP64 are converted); INT64 for n")
    parameters: V2Params | None = None
    data: TensorData | None = Field(
        default=None, description="values, flat or nested, row-major; absent with binary_data_size"
    )

    @field_validator("shape")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        if any(d < 0 for d in v):
            raise ValueError("shape holds sizes, no negative one")
        return v


class V2RequestOutput(_V2Request):
    name: str = Field(description="an output of the model's metadata")
    parameters: V2Params | None = Field(
        default=None, description='{"binary_data": true} answers this output in binary'
    )


class V2InferenceRequest(_V2Request):
    """An inference request; the tensors' `data` may also follow the JSON in binary."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": _DIGIT_ROW}],
                    "outputs": [{"name": "score"}, {"name": "is_anomaly"}],
                }
            ]
        }
    )
    id: str | None = None
    parameters: V2Params | None = None
    inputs: list[V2RequestInput]
    outputs: list[V2RequestOutput] | None = None


class V2ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: V2Params | None = None
    data: TensorData | None = Field(default=None, description="flat, row-major; absent when binary")


class V2InferenceResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model_name": "digits-pca",
                    "model_version": "1",
                    "id": "42",
                    "parameters": {"threshold": 0.031, "rule": "threshold"},
                    "outputs": [
                        {"name": "score", "datatype": "FP32", "shape": [1], "data": [0.012]},
                        {"name": "is_anomaly", "datatype": "BOOL", "shape": [1], "data": [False]},
                    ],
                }
            ]
        }
    )
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: V2Params | None = None
    outputs: list[V2ResponseOutput]


class V2ServerLive(BaseModel):
    live: bool


class V2ServerReady(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2ServerMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "latentserve", "version": "0.1.0", "extensions": ["binary_tensor_data"]}]
        }
    )
    name: str
    version: str
    extensions: list[str]


class V2Tensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "digits-pca",
                    "versions": ["1"],
                    "platform": "onnxruntime_onnx",
                    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8]}],
                    "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1]}],
                }
            ]
        }
    )
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2Tensor]
    outputs: list[V2Tensor]


class V2RepositoryModel(BaseModel):
    name: str
    version: str
    state: str = Field(description="READY, or UNAVAILABLE (see reason)")
    reason: str


class V2Error(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": "model 'nope' not found"}]})
    error: str
