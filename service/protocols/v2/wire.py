"""The Open Inference Protocol (KServe V2, `inference_rest.md`) on the wire: tensors in and out.

This module only translates. `service.inference.dataplane` runs a /v2 inference like any other request (API
key, limits, batching, metrics, the runtime's validation); here a request body becomes an
`InferRequest` and one array of rows, and the core's `Result` becomes the protocol's response.

Models as the protocol sees them (`signature`):
  - `{name}`: input `input` (FP32, [-1, *input.shape]); outputs `code`, `reconstruction`, `score`,
    `is_anomaly` (BOOL) and `p_value`; `parameters.threshold` (a score) or `parameters.alpha` (a
    false-positive rate: p_value <= alpha) decide is_anomaly, and the answer's parameters say
    which (`rule`). The requested outputs pick the model ops (`ops_for`): `score`
    alone is one scorer call, `code` alone one encoder call;
  - `{name}.decoder`: input `code` (FP32, [-1, latent_dim]); output `reconstruction`;
  - `{name}.sample` (versions with a standard-normal latent): input `n` (INT64, [1]), the seed in
    `parameters.seed`; output `sample`.
Bodies are JSON, or with the binary tensor extension a JSON header of
`Inference-Header-Content-Length` bytes followed by each binary input's raw little-endian bytes
(`parameters.binary_data_size`). Answers are JSON, or binary for the outputs asked so
(`parameters.binary_data` per output, `binary_data_output` per request). Errors are rendered by
`service.protocols.v2.V2Protocol.error`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import Response

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import Op
from service.codecs import JSON, Result, has_array_boolean, load_json, validate_options
from service.errors import InvalidInput, ModelNotFound, PayloadTooLarge
from service.schemas import V2InferenceRequest

try:
    import simdjson as _simdjson
except ImportError:  # optional: without it every body takes the orjson path
    _simdjson = None  # type: ignore[assignment]

HEADER_LENGTH = "inference-header-content-length"
OCTET = "application/octet-stream"
BINARY = "application/vnd.latentserve.oip-binary"  # a body's kind: the binary tensor extension
EXTENSIONS = ["binary_tensor_data", "model_repository"]
PLATFORMS = {"onnx": "onnxruntime_onnx", "joblib": "scikit-learn_joblib"}

Target = Literal["model", "decoder", "sample"]
SUFFIXES: dict[str, Target] = {".decoder": "decoder", ".sample": "sample"}
FLOATS: dict[str, np.dtype[Any]] = {"FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
INTEGERS: dict[str, np.dtype[Any]] = {
    f"{p}INT{b}": np.dtype(f"<{'u' if p else 'i'}{b // 8}") for p in ("", "U") for b in (8, 16, 32, 64)
}
JUDGED = ("is_anomaly", "p_value")  # outputs that compare the scores with the calibration

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


def signature(manifest: Manifest, target: Target) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of a version as `target` (-1: the batch axis)."""
    rows = [-1, *manifest.input.shape]
    codes = [-1, manifest.latent_dim]
    if target == "decoder":
        return [TensorSpec("code", "FP32", codes)], [TensorSpec("reconstruction", "FP32", rows)]
    if target == "sample":
        return [TensorSpec("n", "INT64", [1])], [TensorSpec("sample", "FP32", rows)]
    outputs = [
        TensorSpec("code", "FP32", codes),
        TensorSpec("reconstruction", "FP32", rows),
        TensorSpec("score", "FP32", [-1]),
        TensorSpec("is_anomaly", "BOOL", [-1]),
        TensorSpec("p_value", "FP32", [-1]),
    ]
    return [TensorSpec("input", "FP32", rows)], outputs


def can_sample(manifest: Manifest) -> bool:
    return manifest.latent_distribution == "standard-normal"


def split_name(name: str, models: Container[str]) -> tuple[str, Target]:
    """`{model}`, `{model}.decoder` or `{model}.sample`; a registry model of the full name wins."""
    if name not in models:
        for suffix, target in SUFFIXES.items():
            if name.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)], target
    return name, "model"


def ops_for(outputs: list[str]) -> tuple[Op, ...]:
    """The fewest model calls that produce the outputs of `{model}`: encode for `code`, then
    reconstruct for `reconstruction` (its scores come with it), else the scorer for the scores."""
    ops: list[Op] = ["encode"] if "code" in outputs else []
    if "reconstruction" in outputs:
        ops.append("reconstruct")
    elif any(name in outputs for name in ("score", *JUDGED)):
        ops.append("scores")
    return tuple(ops)


def model_metadata(
    name: str, versions: list[int], manifest: Manifest, format: str, target: Target
) -> dict[str, Any]:
    inputs, outputs = signature(manifest, target)
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORMS.get(format, format),
        "inputs": [t.to_dict() for t in inputs],
        "outputs": [t.to_dict() for t in outputs],
    }


# ---- requests ---------------------------------------------------------------------------------
@dataclass
class InferRequest:
    """A /v2 inference request, parsed: what the core needs (the ops, options) and how to answer."""

    target: Target
    outputs: list[str]  # the outputs to answer, in order
    binary: set[str]  # those answered in binary
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)  # echoed in the answer
    threshold: float | None = None
    alpha: float | None = None  # a false-positive rate: is_anomaly = p_value <= alpha
    n: int = 0  # {model}.sample: how many
    seed: int | None = None
    ops: tuple[Op, ...] = ("decode",)  # the model ops that produce the outputs


def check_target(runtime: ModelRuntime, target: Target) -> None:
    """`{model}.sample` exists only for versions that can sample."""
    m = runtime.manifest
    if target == "sample" and not can_sample(m):
        raise ModelNotFound(
            f"model {m.name + '.sample'!r} not found: {m.name!r} version {m.version} has no "
            "standard-normal latent to sample from",
            field="model",
        )


def read_request(
    kind: str, body: bytes, headers: Mapping[str, str], runtime: ModelRuntime, target: Target
) -> tuple[InferRequest, Array]:
    """Parse a /v2 inference body for `runtime` as `target` into the request and its one input
    tensor (rows first), or raise InvalidInput naming the tensor and what was expected."""
    check_target(runtime, target)
    m = runtime.manifest
    header, binary_at = _split_body(kind, body, headers)
    if binary_at >= 0 and target != "sample" and len(header) <= CACHED_HEADER_BYTES:
        cached = _binary_request(header, target)
        if cached is not None:  # a header seen before: only the binary section is new
            req, tensor = cached
            X, offset = _tensor(tensor, None, body, binary_at, True, target)
            _check_binary_end(body, binary_at, offset)
            return req, X
    envelope, datas = _envelope(header, binary_at >= 0)
    input_name = _NAMES[target][0]
    if len(envelope.inputs) != 1 or envelope.inputs[0].name != input_name:
        spec = signature(m, target)[0][0]
        given = [t.name for t in envelope.inputs]
        got = f"the request has {given}" if given else "the request has none"
        raise InvalidInput(
            f"inputs: {_label(m, target)} takes one input {spec.name!r} ({spec.datatype}, shape "
            f"{spec.shape}); {got}",
            field="inputs",
            details={"expected": [spec.name], "got": given},
        )
    # the binary inputs' bytes follow the header in the order of the inputs
    offset, tensors = binary_at, []
    for tensor, data in zip(envelope.inputs, datas, strict=True):
        A, offset = _tensor(tensor, data, body, offset, binary_at >= 0, target)
        tensors.append(A)
    if binary_at >= 0:
        _check_binary_end(body, binary_at, offset)
    X = tensors[0]
    req = _request(envelope, target, m)
    if target == "sample":
        req.n = int(X.reshape(-1)[0]) if X.size == 1 else 0
        if X.size != 1 or req.n < 1:
            raise InvalidInput(
                f"n: {_label(m, target)} takes n as one positive integer, shape [1], got "
                f"{X.reshape(-1)[:4].tolist()}",
                field="n",
            )
        req.seed = _seed(req.parameters.get("seed"))
        # a placeholder of n rows (nothing allocated) for MAX_ROWS to refuse; numpy refuses a
        # dimension past intp, so a count past any row limit stands in for it
        X = np.empty((min(req.n, MAX_SAMPLE_COUNT), 0), dtype=np.float32)
    return req, X


def _request(envelope: V2InferenceRequest, target: Target, m: Manifest | None) -> InferRequest:
    """What the envelope asks of `target`: the outputs, their ops, the parameters (`m` names the
    model in the errors; None only where `_binary_request` checked the outputs beforehand)."""
    params = dict(envelope.parameters or {})
    all_binary = params.pop("binary_data_output", False) is True
    req = InferRequest(target, [], set(), envelope.id, params)
    _select_outputs(req, envelope, _NAMES[target][1], all_binary, m, target)
    if target == "model":
        req.ops = ops_for(req.outputs)
    req.threshold = _number(params, "threshold")
    req.alpha = _number(params, "alpha")
    if req.alpha is not None and not 0.0 < req.alpha < 1.0:
        raise InvalidInput(
            f"parameters.alpha: expected a false-positive rate in (0, 1), got {req.alpha!r}",
            field="parameters.alpha",
        )
    if req.alpha is not None and req.threshold is not None:
        raise InvalidInput(
            "parameters.alpha: give threshold (a score) or alpha (a false-positive rate), not both",
            field="parameters.alpha",
        )
    return req


@functools.lru_cache(maxsize=256)
def _binary_request(header: bytes, target: Target) -> tuple[InferRequest, Any] | None:
    """The request and input tensor of a binary header already seen for `target` (not
    `{model}.sample`, whose request depends on its input's value): with the envelope
    (`_binary_envelope`), the outputs, their ops and the parameters are worked out once per
    header too. The request is shared by every body with this header, so nothing changes it
    after `read_request`. None: a header `read_request` reads in full every time, which is also
    how a header with an error gets its message, naming the model."""
    envelope = _binary_envelope(header)
    input_name, known = _NAMES[target]
    if envelope is None or len(envelope.inputs) != 1 or envelope.inputs[0].name != input_name:
        return None
    if any(out.name not in known for out in envelope.outputs or ()):
        return None
    try:
        return _request(envelope, target, None), envelope.inputs[0]
    except InvalidInput:
        return None


def _check_binary_end(body: bytes, binary_at: int, offset: int) -> None:
    if offset != len(body):
        raise InvalidInput(
            f"body: the binary section holds {len(body) - binary_at} bytes after the {binary_at}-byte "
            f"JSON header, the inputs' binary_data_size add up to {offset - binary_at}",
            field="body",
            details={"expected": offset - binary_at, "got": len(body) - binary_at},
        )


_NAMES: dict[Target, tuple[str, tuple[str, ...]]] = {  # the input and outputs of `signature`
    "model": ("input", ("code", "reconstruction", "score", "is_anomaly", "p_value")),
    "decoder": ("code", ("reconstruction",)),
    "sample": ("n", ("sample",)),
}
_SUFFIX: dict[Target, str] = {"model": "", "decoder": ".decoder", "sample": ".sample"}


def _label(m: Manifest, target: Target) -> str:
    return f"model {m.name + _SUFFIX[target]!r} version {m.version}"


def _split_body(kind: str, body: bytes, headers: Mapping[str, str]) -> tuple[bytes, int]:
    """The JSON header, and where the binary section starts (-1: the whole body is JSON)."""
    if kind != BINARY:
        return body, -1
    declared = headers.get(HEADER_LENGTH, "")
    if not (declared.isascii() and declared.isdigit()) or not 0 < int(declared) <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length: expected the JSON header's length in bytes, at most the "
            f"body's {len(body)}, got {declared!r}",
            field="inference-header-content-length",
        )
    n = int(declared)
    if n > MAX_V2_HEADER_BYTES:  # parsed as JSON at the binary price: refused before parsing
        raise PayloadTooLarge(
            f"Inference-Header-Content-Length: a {n}-byte JSON header is over the limit of "
            f"{MAX_V2_HEADER_BYTES} bytes for the header of a binary body; send tensors' values in "
            "the binary section, or the whole request as Content-Type: application/json",
            field="inference-header-content-length",
            details={"limit": MAX_V2_HEADER_BYTES, "got": n},
        )
    return body[:n], n


MAX_SAMPLE_COUNT = 1 << 40  # a larger n is refused as this many rows (over any MAX_ROWS)
MAX_V2_HEADER_BYTES = 1 << 20  # the JSON header of a binary body: names, shapes, parameters

# simdjson's fixed cost is larger; above about 1 KiB of JSON (a row of 64 values) it is the faster
SIMDJSON_MIN_BYTES = 1024
CACHED_HEADER_BYTES = 4096  # binary requests' JSON headers up to this size are parsed once


def _envelope(header: bytes, binary: bool) -> tuple[V2InferenceRequest, list[object]]:
    """The validated request (never changed afterwards) and each input's JSON data."""
    if binary and len(header) <= CACHED_HEADER_BYTES:
        cached = _binary_envelope(header)
        if cached is not None:
            return cached, [None] * len(cached.inputs)
    doc, datas = _load_header(header)
    envelope: V2InferenceRequest = validate_options(V2InferenceRequest, doc, "body")
    return envelope, datas


@functools.lru_cache(maxsize=256)
def _binary_envelope(header: bytes) -> V2InferenceRequest | None:
    """The request of a binary header whose inputs are all binary: a client sends the same few
    headers (shape, outputs) again and again, so each is parsed and validated once (None: a
    header with JSON data, which `_envelope` reads every time)."""
    doc, datas = _load_header(header)
    envelope: V2InferenceRequest = validate_options(V2InferenceRequest, doc, "body")
    return envelope if all(data is None for data in datas) else None


def _load_header(header: bytes) -> tuple[dict[str, Any], list[object]]:
    """The request object with each input's `data` taken out, and those data (None when absent).

    A JSON body of more than SIMDJSON_MIN_BYTES is read by simdjson: each input's data, flat or
    nested, goes straight into one float64 buffer without a Python float per value (numbers only;
    anything else falls back to orjson, whose parse the messages describe)."""
    if _simdjson is not None and len(header) >= SIMDJSON_MIN_BYTES:
        fast = _load_header_simdjson(header)
        if fast is not None:
            return fast
    doc = load_json(header)
    datas: list[object] = []
    inputs = doc.get("inputs")
    booleans = has_array_boolean(header)
    if isinstance(inputs, list):
        for tensor in inputs:
            data = tensor.pop("data", None) if isinstance(tensor, dict) else None
            if booleans and isinstance(data, list):  # numpy would read true among numbers as 1.0
                name = str(tensor.get("name", "input"))
                try:
                    _flatten(name, data)
                except TypeError:
                    raise InvalidInput(
                        f"{name}: data must hold numbers only; it holds a non-number (a boolean?)",
                        field=name,
                    ) from None
            datas.append(data)
    return doc, datas


def _load_header_simdjson(header: bytes) -> tuple[dict[str, Any], list[object]] | None:
    try:
        doc = _simdjson.Parser().parse(header)
        if not isinstance(doc, _simdjson.Object):
            return None
        out: dict[str, Any] = {}
        datas: list[object] = []
        keys = list(doc.keys())
        if len(keys) != len(set(keys)):  # repeated keys: orjson's rule (the last counts) decides
            return None
        for key in keys:
            if key != "inputs":
                out[key] = _plain(doc[key])
                continue
            inputs = doc[key]
            if not isinstance(inputs, _simdjson.Array):
                return None
            plain_inputs = []
            for tensor in inputs:
                if not isinstance(tensor, _simdjson.Object):
                    return None
                tensor_keys = list(tensor.keys())
                if len(tensor_keys) != len(set(tensor_keys)):
                    return None
                plain_inputs.append({k: _plain(tensor[k]) for k in tensor_keys if k != "data"})
                data = tensor.get("data")
                if data is None:
                    datas.append(None)
                elif isinstance(data, _simdjson.Array):
                    datas.append(np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64))
                else:
                    return None
            out[key] = plain_inputs
        return out, datas
    except (ValueError, TypeError, RuntimeError, KeyError):
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, _simdjson.Object):
        return value.as_dict()
    if isinstance(value, _simdjson.Array):
        return value.as_list()
    return value


def _tensor(
    tensor: Any, data: object, body: bytes, offset: int, binary: bool, target: Target
) -> tuple[Array, int]:
    """One input as an array of its declared shape; `offset` moves past its binary bytes."""
    name = tensor.name
    accepted = INTEGERS if target == "sample" else FLOATS
    dtype = accepted.get(tensor.datatype)
    if dtype is None:
        expected = "INT64 (or another integer type)" if target == "sample" else "FP32 (or FP16, FP64)"
        raise InvalidInput(
            f"{name}: datatype {tensor.datatype!r} is not accepted; expected {expected}",
            field=name,
            details={"expected": "INT64" if target == "sample" else "FP32", "got": tensor.datatype},
        )
    shape = tuple(tensor.shape)
    if not shape or any(d < 0 for d in shape):
        raise InvalidInput(
            f"{name}: shape {list(shape)} is not a tensor's shape; expected one or more sizes >= 0, "
            "rows first",
            field=name,
            details={"got": list(shape)},
        )
    count = math.prod(shape)
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        return _binary_tensor(tensor, data, size, dtype, body, offset, binary)
    if data is None:
        raise InvalidInput(f"{name}: data is missing (and no binary_data_size)", field=name)
    A = data if isinstance(data, np.ndarray) else _json_data(name, data)
    if A.size != count:
        raise InvalidInput(
            f"{name}: shape {list(shape)} holds {count} values, data has {A.size}",
            field=name,
            details={"expected": count, "got": int(A.size)},
        )
    if target == "sample" and A.dtype.kind == "f" and bool(np.any(np.mod(A, 1.0))):
        raise InvalidInput(f"{name}: {tensor.datatype} holds integers; data has fractions", field=name)
    return A.reshape(shape), offset


def _binary_tensor(
    tensor: Any, data: object, size: object, dtype: np.dtype[Any], body: bytes, offset: int, binary: bool
) -> tuple[Array, int]:
    """An input of `binary_data_size` bytes at `offset` of the body's binary section."""
    name, shape = tensor.name, tuple(tensor.shape)
    count = math.prod(shape)
    need = count * dtype.itemsize
    if not binary:
        raise InvalidInput(
            f"{name}: parameters.binary_data_size is set but the request has no binary section; "
            "send the Inference-Header-Content-Length header with the JSON header's length",
            field=name,
        )
    if data is not None:
        raise InvalidInput(f"{name}: has both data and binary_data_size; send one", field=name)
    if not isinstance(size, int) or isinstance(size, bool) or size != need:
        raise InvalidInput(
            f"{name}: binary_data_size is {size!r} bytes, but shape {list(shape)} of "
            f"{tensor.datatype} needs {need}",
            field=name,
            details={"expected": need, "got": size},
        )
    if offset + need > len(body):
        raise InvalidInput(
            f"{name}: binary_data_size {need} runs past the end of the body "
            f"({len(body) - offset} bytes left)",
            field=name,
            details={"expected": need, "got": len(body) - offset},
        )
    return np.frombuffer(body, dtype=dtype, count=count, offset=offset).reshape(shape), offset + need


def _json_data(name: str, data: object) -> Array:
    """JSON `data`, flat or nested in row-major order, as one flat numeric array."""
    if not isinstance(data, list):
        raise InvalidInput(f"{name}: data must be a list of numbers (flat or nested)", field=name)
    try:
        A = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        A = None
    if A is None or A.dtype.kind not in "fiu":
        try:  # nested lists of different lengths still hold their values in row-major order
            A = np.asarray(list(_flatten(name, data)))
        except (ValueError, TypeError, OverflowError):
            A = None
    if A is None or (A.size and A.dtype.kind not in "fiu"):
        raise InvalidInput(f"{name}: data must hold numbers only (flat or nested lists)", field=name)
    return A.reshape(-1)


def _flatten(name: str, data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:  # iterative: a body nested a thousand lists deep must not exhaust the C stack
        if len(stack) > 32:
            raise InvalidInput(f"{name}: data nests lists more than 32 deep", field=name)
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            out.append(item)
        else:
            raise TypeError(item)
    return out


_END = object()


def _select_outputs(
    req: InferRequest,
    envelope: V2InferenceRequest,
    known: tuple[str, ...],
    all_binary: bool,
    m: Manifest | None,
    target: Target,
) -> None:
    if not envelope.outputs:
        req.outputs = list(known)
        req.binary = set(known) if all_binary else set()
        return
    for out in envelope.outputs:
        if out.name not in known:
            where = _label(m, target) if m is not None else f"the {target}"
            raise InvalidInput(
                f"outputs: {where} has no output {out.name!r}; it has {list(known)}",
                field="outputs",
                details={"expected": list(known), "got": out.name},
            )
        if out.name in req.outputs:
            continue
        req.outputs.append(out.name)
        flag = (out.parameters or {}).get("binary_data", all_binary)
        if flag is True:
            req.binary.add(out.name)


def _seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InvalidInput(f"parameters.seed: expected an integer in [0, 2**63), got {seed!r}", field="seed")
    return seed


def _number(params: Mapping[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidInput(
            f"parameters.{name}: expected a finite number, got {value!r}", field=f"parameters.{name}"
        )
    return float(value)


# ---- responses --------------------------------------------------------------------------------
def encode_response(req: InferRequest, result: Result) -> Response:
    """The inference response: JSON, or a JSON header then the binary outputs' bytes."""
    doc: dict[str, Any] = {
        "model_name": result.model + _SUFFIX[req.target],
        "model_version": str(result.version),
    }
    if req.id is not None:
        doc["id"] = req.id
    params = {**req.parameters, **result.scalars}
    if params:
        doc["parameters"] = params
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, A in result.arrays.items():
        boolean = A.dtype.kind == "b"
        datatype = "BOOL" if boolean else "FP32"
        out: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(A.shape)}
        if name in req.binary:
            raw = A.tobytes() if boolean else A.astype("<f4", copy=False).tobytes()  # row-major
            out["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            out["data"] = np.ascontiguousarray(A).reshape(-1)
        outputs.append(out)
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return Response(header, media_type=JSON)
    return Response(
        b"".join([header, *chunks]),
        media_type=OCTET,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
