"""The one core every inference route calls: body -> model runtime -> response, with metrics.

Small bodies (up to INLINE_BYTES) are parsed and run on the event loop: for one row the model call
takes tens of microseconds and a thread hop costs more than the work. Larger bodies go to a worker
thread under REQUEST_TIMEOUT_S; an in-flight request keeps the runtime it got even if a reload
swaps the registry meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from starlette.requests import Request
from starlette.responses import Response

from service import codecs
from service.codecs import JSON, MULTIPART, NPY, NPZ, PNG, ImageFile, Result
from service.errors import InvalidInput, LatentServeError, NotReady, PayloadTooLarge, Timeout
from service.metrics import UNKNOWN_MODEL, Metrics
from service.registry import Registry
from service.runtime import ModelRuntime
from service.schemas import (
    AnomalyScoreOptions,
    DecodeOptions,
    EncodeOptions,
    InferenceOptions,
    ReconstructOptions,
    SampleRequest,
)
from service.settings import Settings

Array = npt.NDArray[Any]
Compute = Callable[[ModelRuntime, Array, Any], Result]


@dataclass(frozen=True)
class Verb:
    """One inference endpoint: what it reads, how it computes, what it can answer with."""

    name: str
    options: type[InferenceOptions]
    field: str | None  # the array field of the JSON body ("inputs", "codes"), None for /sample
    compute: Compute
    reads: tuple[str, ...]
    produces: tuple[str, ...]


def _result(rt: ModelRuntime, arrays: dict[str, Array], **kw: Any) -> Result:
    return Result(rt.manifest.name, rt.manifest.version, arrays, **kw)


def _encode(rt: ModelRuntime, X: Array, opts: EncodeOptions) -> Result:
    return _result(rt, {"codes": rt.encode(X)})


def _decode(rt: ModelRuntime, Z: Array, opts: DecodeOptions) -> Result:
    X_hat = rt.decode(Z)
    return _result(rt, {"outputs": X_hat}, images=X_hat, image_spec=rt.manifest.input)


def _reconstruct(rt: ModelRuntime, X: Array, opts: ReconstructOptions) -> Result:
    rec = rt.reconstruct(X)
    X_hat = rec.X_hat.reshape(X.shape)  # answer in the layout the rows came in (flat or shaped)
    return _result(
        rt, {"reconstructions": X_hat, "errors": rec.scores}, images=rec.X_hat, image_spec=rt.manifest.input
    )


def _anomaly_score(rt: ModelRuntime, X: Array, opts: AnomalyScoreOptions) -> Result:
    res = rt.anomaly(X, threshold=opts.threshold)
    arrays: dict[str, Array] = {"scores": res.scores, "is_anomaly": res.is_anomaly, "p_values": res.p_values}
    if opts.return_feature_errors:
        arrays["feature_errors"] = rt.feature_errors(res.X, res.X_hat).reshape(X.shape)
    return _result(rt, arrays, scalars={"threshold": res.threshold})


def _sample(rt: ModelRuntime, _: Array, opts: SampleRequest) -> Result:
    m = rt.manifest
    if m.latent_distribution != "standard-normal":
        raise InvalidInput(
            f"model {m.name!r} version {m.version} ({m.kind}) has no generative latent "
            f"(latent_distribution={m.latent_distribution!r}); "
            "/sample needs a standard-normal one, e.g. a VAE",
            field="model",
        )
    X = rt.sample(opts.n, opts.seed)
    return _result(rt, {"outputs": X}, images=X, image_spec=m.input)


_ROWS_IN = (JSON, NPY, MULTIPART)
VERBS: dict[str, Verb] = {
    "encode": Verb("encode", EncodeOptions, "inputs", _encode, _ROWS_IN, (JSON, NPY, NPZ)),
    "decode": Verb("decode", DecodeOptions, "codes", _decode, (JSON, NPY), (JSON, NPY, NPZ, PNG)),
    "reconstruct": Verb(
        "reconstruct", ReconstructOptions, "inputs", _reconstruct, _ROWS_IN, (JSON, NPY, NPZ, PNG)
    ),
    "anomaly-score": Verb(
        "anomaly-score", AnomalyScoreOptions, "inputs", _anomaly_score, _ROWS_IN, (JSON, NPY, NPZ)
    ),
    "sample": Verb("sample", SampleRequest, None, _sample, (JSON,), (JSON, NPY, NPZ, PNG)),
}


@dataclass
class _Parsed:
    kind: str
    body: bytes
    query: dict[str, str]
    images: list[ImageFile] | None = None


class _Labels:
    """What the metrics learn as a request goes: the model (once it exists) and the rows."""

    __slots__ = ("model", "rows")

    def __init__(self) -> None:
        self.model = UNKNOWN_MODEL
        self.rows = 0


class InferenceService:
    """Holds the registry, settings and metrics; `handle` serves any verb of `VERBS`."""

    def __init__(self, registry: Registry, settings: Settings, metrics: Metrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics

    async def handle(self, request: Request, verb: Verb) -> Response:
        start = time.perf_counter()
        labels = _Labels()
        try:
            media = codecs.negotiate(request.headers.get("accept"), verb.produces)
            kind = codecs.check_content_type(
                codecs.media_type(request.headers.get("content-type")), verb.reads
            )
            body = await codecs.read_body(request, self.settings.max_body_bytes)
            query = dict(request.query_params) if kind != JSON else {}  # JSON bodies carry their options
            parsed = _Parsed(kind, body, query)
            if kind == MULTIPART:
                parsed.images = await codecs.read_images(request, self.settings.max_rows)
            work = partial(self.serve, verb, parsed, media, labels)
            # inline only when the body bounds the work: /sample decodes `n` rows from a tiny body
            if len(body) <= self.settings.inline_bytes and kind != MULTIPART and verb.field is not None:
                response = work()
            else:
                response = await self._in_thread(work, verb)
        except LatentServeError as exc:
            self.metrics.observe(
                verb.name, labels.model, exc.status_code, time.perf_counter() - start, 0, type(exc).__name__
            )
            raise
        except Exception:
            elapsed = time.perf_counter() - start
            self.metrics.observe(verb.name, labels.model, 500, elapsed, 0, "InternalError")
            raise
        self.metrics.observe(verb.name, labels.model, 200, time.perf_counter() - start, labels.rows)
        return response

    async def _in_thread(self, work: Callable[[], Response], verb: Verb) -> Response:
        timeout = self.settings.request_timeout_s
        try:
            with anyio.fail_after(timeout):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError:
            raise Timeout(f"/{verb.name}: the model call took longer than {timeout:g} s") from None

    def serve(self, verb: Verb, parsed: _Parsed, media: str, labels: _Labels) -> Response:
        """Parse the body, find the runtime, compute, encode: synchronous, CPU-bound."""
        if not self.registry.loaded:
            raise NotReady("the model registry is still loading; try again shortly")
        opts, rows = self._options_and_rows(verb, parsed)
        runtime = self.registry.get(opts.model, opts.version)
        labels.model = runtime.manifest.name
        X = self._to_array(verb, parsed, rows, runtime, opts)
        labels.rows = len(X)
        return codecs.encode_response(verb.compute(runtime, X, opts), media)

    def _options_and_rows(self, verb: Verb, parsed: _Parsed) -> tuple[Any, object]:
        if parsed.kind != JSON:
            query = dict(parsed.query)
            query.pop("resize", None)
            return codecs.validate_options(verb.options, query, "query"), None
        fast = codecs.load_json_rows(parsed.body, verb.field) if verb.field is not None else None
        rows: object = None
        if fast is not None:
            data, rows = fast
        else:
            data = codecs.load_json(parsed.body)
            if verb.field is not None:
                if verb.field not in data:
                    raise InvalidInput(f"{verb.field}: field required", field=verb.field)
                rows = data.pop(verb.field)
        if isinstance(rows, (list, np.ndarray)) and len(rows) > self.settings.max_rows:
            raise self._too_many(len(rows))
        opts = codecs.validate_options(verb.options, data, "body")
        if isinstance(opts, SampleRequest) and opts.n > self.settings.max_rows:
            raise self._too_many(opts.n, "n")
        return opts, rows

    def _to_array(
        self, verb: Verb, parsed: _Parsed, rows: object, runtime: ModelRuntime, opts: InferenceOptions
    ) -> Array:
        field = verb.field or "n"
        if verb.field is None:
            return np.empty((getattr(opts, "n", 0), 0), dtype=np.float32)
        if parsed.kind == JSON:
            return codecs.rows_to_array(rows, field)
        if parsed.kind == NPY:
            X = codecs.load_npy(parsed.body, field)
        else:
            assert parsed.images is not None
            resize = parsed.query.get("resize", "false").lower() in ("1", "true", "yes", "on")
            X = codecs.images_to_array(parsed.images, runtime.manifest.input, resize)
        if len(X) > self.settings.max_rows:
            raise self._too_many(len(X))
        return X

    def _too_many(self, n: int, field: str = "inputs") -> PayloadTooLarge:
        limit = self.settings.max_rows
        return PayloadTooLarge(
            f"{field}: {n} rows is over the limit of {limit} rows per request; split the batch",
            field=field,
            details={"limit": limit, "got": n},
        )
