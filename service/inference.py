"""The one core every inference route calls: body -> model runtime -> response, with metrics.

Where the work runs:
  - bodies up to INLINE_BYTES are parsed and validated on the event loop and their rows go to the
    micro-batcher (`service.batching`): for one row a thread hop costs more than the model call,
    and concurrent small requests share one model call;
  - `.npy` bodies up to INLINE_NPY_BYTES are validated on the loop (they are read without a copy)
    and run there too when the model version's own timings predict a call of at most
    INLINE_COMPUTE_MS (`ModelRuntime.predicted_seconds`); otherwise in a worker thread;
  - everything else (large JSON, images, /sample) in a worker thread under REQUEST_TIMEOUT_S; that
    thread has a JSON body over JSON_OFFLOAD_BYTES parsed, and a JSON answer predicted over it
    encoded, by a worker process (`service.jsonpool`), off the GIL.
An in-flight request keeps the runtime it got even if a reload swaps the registry meanwhile.

The Open Inference Protocol's infer (`POST /v2/models/{m}[/versions/{v}]/infer`) is three more
verbs (`V2_VERBS`: a model, its `.decoder`, its `.sample`) with their own wire format: the verb's
`parse`, `encode` and `error` come from `service.oip`; everything between is this same core. A
request may need more than one model op (`code` with `score`): each goes to the batcher alone.

Every request is admitted (`service.admission`) once its headers are checked, before its body is
read: past the memory budget or the queue it is a 503 with Retry-After. At most MAX_CONCURRENCY
run in worker threads; the others wait their turn within REQUEST_TIMEOUT_S. A worker-thread call
runs its rows in chunks and stops at the deadline (504), and an answer predicted over
MAX_RESPONSE_BYTES is a 413 before any model call.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from service import codecs, oip
from service.admission import BINARY_WEIGHT, JSON_WEIGHT, Admission, Ticket
from service.batching import Batcher, Outputs
from service.codecs import JSON, MULTIPART, NPY, NPZ, PNG, ImageFile, Result
from service.errors import (
    ClientClosed,
    JsonAnswerTooLarge,
    JsonBodyTooLarge,
    LatentServeError,
    NotReady,
    PayloadTooLarge,
    Timeout,
    UnsupportedMediaType,
)
from service.jsonpool import BadRows, JsonPool, Rows, read_json
from service.metrics import UNKNOWN_MODEL, Metrics
from service.registry import Registry
from service.runtime import ModelRuntime
from service.runtime.base import FloatArray, Op
from service.schemas import (
    AnomalyScoreOptions,
    DecodeOptions,
    EncodeOptions,
    InferenceOptions,
    ReconstructOptions,
    ResizeOption,
    SampleRequest,
)
from service.security import check_api_key
from service.settings import Settings

Array = npt.NDArray[Any]
Reply = Callable[[Response], None]
COMPUTE_CHUNK_ROWS = 4096  # a worker-thread call checks its deadline between chunks of this many rows
JSON_VALUE_BYTES = 16  # a float32 in a JSON answer: up to 9 significant digits, sign, exponent, comma


@dataclass
class Job:
    """One request, parsed and validated: the model rows to run and how to answer."""

    verb: Verb
    runtime: ModelRuntime
    opts: Any
    X: FloatArray  # validated model rows: inputs (n, *input.shape) or codes (n, latent_dim)
    shape: tuple[int, ...]  # the request rows' layout (flat or shaped), kept in the answer
    media: str

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.verb.ops(self.opts)

    def compute(self) -> Outputs:
        """Every op of this job on its rows, their outputs in op order."""
        outputs: Outputs = ()
        for op in self.ops:
            outputs += self.runtime.compute(op, self.X)
        return outputs

    def predicted_seconds(self) -> float | None:
        total = 0.0
        for op in self.ops:
            seconds = self.runtime.predicted_seconds(op, len(self.X))
            if seconds is None:
                return None
            total += seconds
        return total


def _native_encode(job: Job, result: Result) -> Response:
    return codecs.encode_response(result, job.media)


@dataclass(frozen=True)
class Verb:
    """One inference endpoint: what it reads, which model ops it runs, how it answers.

    `rows` validates the request's array into model rows, `ops` picks the model calls
    (`ModelRuntime.compute`, which the batcher may stack with other requests'), and `finish`
    turns their outputs into the response arrays. A verb with its own wire format (/v2) brings
    `parse` (body -> options and array), `encode` (the answer) and `error` (the error shape).
    """

    name: str
    options: type[InferenceOptions] | None  # the envelope our own routes validate (None: `parse` does)
    field: str | None  # the array field of the body ("inputs", "codes", "input"), None for samples
    rows: Callable[[ModelRuntime, Array, Any], FloatArray]
    ops: Callable[[Any], tuple[Op, ...]]
    finish: Callable[[Job, Outputs], Result]
    reads: tuple[str, ...]
    produces: tuple[str, ...]
    parse: Callable[[_Parsed, ModelRuntime], tuple[Any, Array]] | None = None  # needs path["model"]
    encode: Callable[[Job, Result], Response] = _native_encode
    error: Callable[[LatentServeError], Response] = codecs.error_response


def _result(job: Job, arrays: dict[str, Array], **kw: Any) -> Result:
    m = job.runtime.manifest
    return Result(m.name, m.version, arrays, **kw)


def _inputs(rt: ModelRuntime, X: Array, opts: Any) -> FloatArray:
    return rt.check_inputs(X)


def _codes(rt: ModelRuntime, Z: Array, opts: Any) -> FloatArray:
    return rt.check_codes(Z)


def _prior(rt: ModelRuntime, _: Array, opts: SampleRequest) -> FloatArray:
    return rt.prior_codes(opts.n, opts.seed)


def _encoded(job: Job, out: Outputs) -> Result:
    return _result(job, {"codes": out[0]})


def _decoded(job: Job, out: Outputs) -> Result:
    return _result(job, {"outputs": out[0]}, images=out[0], image_spec=job.runtime.manifest.input)


def _reconstructed(job: Job, out: Outputs) -> Result:
    X_hat, scores = out
    return _result(
        job,
        {"reconstructions": X_hat.reshape(job.shape), "errors": scores},  # in the rows' own layout
        images=X_hat,
        image_spec=job.runtime.manifest.input,
    )


def _score_op(opts: AnomalyScoreOptions) -> tuple[Op, ...]:
    return ("reconstruct",) if opts.return_feature_errors else ("scores",)


def _scored(job: Job, out: Outputs) -> Result:
    rt, opts = job.runtime, job.opts
    scores = out[-1]
    threshold, is_anomaly, p_values = rt.judge(scores, opts.threshold)
    arrays: dict[str, Array] = {"scores": scores, "is_anomaly": is_anomaly, "p_values": p_values}
    if opts.return_feature_errors:
        arrays["feature_errors"] = rt.feature_errors(job.X, out[0]).reshape(job.shape)
    return _result(job, arrays, scalars={"threshold": threshold})


def _always(op: Op) -> Callable[[Any], tuple[Op, ...]]:
    ops = (op,)
    return lambda _opts: ops


_ROWS_IN = (JSON, NPY, MULTIPART)
_ANY_OUT = (JSON, NPY, NPZ, PNG)
VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb(
            "encode",
            EncodeOptions,
            "inputs",
            _inputs,
            _always("encode"),
            _encoded,
            _ROWS_IN,
            (JSON, NPY, NPZ),
        ),
        Verb("decode", DecodeOptions, "codes", _codes, _always("decode"), _decoded, (JSON, NPY), _ANY_OUT),
        Verb(
            "reconstruct",
            ReconstructOptions,
            "inputs",
            _inputs,
            _always("reconstruct"),
            _reconstructed,
            _ROWS_IN,
            _ANY_OUT,
        ),
        Verb(
            "anomaly-score",
            AnomalyScoreOptions,
            "inputs",
            _inputs,
            _score_op,
            _scored,
            _ROWS_IN,
            (JSON, NPY, NPZ),
        ),
        Verb("sample", SampleRequest, None, _prior, _always("decode"), _decoded, (JSON,), _ANY_OUT),
    )
}
PATHS: dict[str, Verb] = {f"/{name}": verb for name, verb in VERBS.items()}  # what the fast paths serve


# ---- the Open Inference Protocol's infer (service.oip) -------------------------------------------
def _v2_parse(target: oip.Target) -> Callable[[_Parsed, ModelRuntime], tuple[oip.InferRequest, Array]]:
    def parse(parsed: _Parsed, runtime: ModelRuntime) -> tuple[oip.InferRequest, Array]:
        return oip.read_request(parsed.kind, parsed.body, parsed.headers, runtime, target)

    return parse


def _v2_inputs(rt: ModelRuntime, X: Array, opts: oip.InferRequest) -> FloatArray:
    return rt.check_inputs(X, "input")


def _v2_codes(rt: ModelRuntime, Z: Array, opts: oip.InferRequest) -> FloatArray:
    return rt.check_codes(Z, "code")


def _v2_prior(rt: ModelRuntime, _: Array, opts: oip.InferRequest) -> FloatArray:
    return rt.prior_codes(opts.n, opts.seed)


def _v2_ops(opts: oip.InferRequest) -> tuple[Op, ...]:
    return opts.ops


def _v2_inferred(job: Job, out: Outputs) -> Result:
    """The requested outputs of `{model}`, from the outputs of `oip.ops_for`'s ops in order."""
    opts: oip.InferRequest = job.opts
    found: dict[str, Array] = {}
    rest = list(out)
    for op in job.ops:
        if op == "encode":
            found["code"] = rest.pop(0)
        elif op == "reconstruct":
            found["reconstruction"] = rest.pop(0).reshape(job.shape)  # in the rows' own layout
            found["score"] = rest.pop(0)
        else:
            found["score"] = rest.pop(0)
    scalars: dict[str, float] = {}
    if any(name in opts.outputs for name in oip.JUDGED):
        threshold, found["is_anomaly"], found["p_value"] = job.runtime.judge(found["score"], opts.threshold)
        if "is_anomaly" in opts.outputs:
            scalars["threshold"] = threshold
    return _result(job, {name: found[name] for name in opts.outputs}, scalars=scalars)


def _v2_decoded(name: str) -> Callable[[Job, Outputs], Result]:
    return lambda job, out: _result(job, {name: out[0]})


def _v2_encode(job: Job, result: Result) -> Response:
    return oip.encode_response(job.opts, result)


def _v2_verb(name: str, target: oip.Target, field: str | None, rows: Any, finish: Any) -> Verb:
    return Verb(
        name,
        None,
        field,
        rows,
        _v2_ops,
        finish,
        (JSON, oip.OCTET),
        (JSON, oip.OCTET),
        parse=_v2_parse(target),
        encode=_v2_encode,
        error=oip.error_response,
    )


V2_VERBS: dict[oip.Target, Verb] = {
    "model": _v2_verb("v2/infer", "model", "input", _v2_inputs, _v2_inferred),
    "decoder": _v2_verb("v2/decoder", "decoder", "code", _v2_codes, _v2_decoded("reconstruction")),
    "sample": _v2_verb("v2/sample", "sample", None, _v2_prior, _v2_decoded("sample")),
}
_V2_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
_ZERO_COPY = (NPY, oip.BINARY)  # bodies whose arrays are read without a copy


@dataclass
class _Parsed:
    kind: str
    body: bytes
    query: dict[str, str]
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    path: Mapping[str, str] = field(default_factory=dict)  # parameters in the path (/v2: model, version)
    images: list[ImageFile] | None = None
    resize: bool = False  # the `resize` query flag of image bodies
    booleans: bool = False  # a JSON body with true / false in an array: its rows are checked for them
    deadline: float | None = None  # time.monotonic() past which decoding stops (worker threads)
    ticket: Ticket | None = None  # the request's admission, which also reserves its answer


class _Labels:
    """What the metrics learn as a request goes: the model (once it exists) and the rows."""

    __slots__ = ("model", "rows")

    def __init__(self) -> None:
        self.model = UNKNOWN_MODEL
        self.rows = 0


class InferenceService:
    """Holds the registry, settings and metrics; `handle` serves any verb of `VERBS`."""

    def __init__(
        self, registry: Registry, settings: Settings, metrics: Metrics, admission: Admission | None = None
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.admission = admission if admission is not None else Admission(settings)
        self.batcher = Batcher(settings.batch_max_rows, on_batch=metrics.observe_batch)
        self.json_pool = JsonPool(settings, self.admission)  # large JSON bodies, parsed off the GIL
        self._tasks: set[asyncio.Task[None]] = set()  # worker-thread requests in flight

    # ---- entries: the ASGI one (routes, ASGI fast path) and the raw one (service.http) ------------
    def find(self, path: str) -> tuple[Verb, dict[str, str]] | None:
        """The verb that serves POST `path` and the parameters in the path, or None."""
        verb = PATHS.get(path)
        if verb is not None:
            return verb, {}
        match = _V2_INFER.fullmatch(path)
        if match is None:
            return None
        return self.v2_verb(unquote(match[1]), match[2] and unquote(match[2]))

    def v2_verb(self, name: str, version: str | None) -> tuple[Verb, dict[str, str]]:
        """The /v2 infer verb for model `name` (`{model}`, `.decoder`, `.sample`) and its path parameters."""
        model, target = oip.split_name(name, self.registry.records())
        return V2_VERBS[target], {"model": model, "version": version or ""}

    async def handle(self, request: Request, verb: Verb, path: Mapping[str, str] | None = None) -> Response:
        """Serve one ASGI request: admit its headers, read its body, then `submit` it."""
        start = time.perf_counter()
        ticket: Ticket | None = None
        try:
            try:
                media, kind = self.admit(verb, request.headers)
                declared = request.headers.get("content-length")
                size = int(declared) if declared is not None and declared.isdigit() else None
                limit = self.body_limit(kind)
                if size is not None and size > limit:
                    raise self.too_large(kind, size)
                ticket = self.admission.enter(size, JSON_WEIGHT if kind == JSON else BINARY_WEIGHT)
                body = await codecs.read_body(request, limit, ticket, partial(self.too_large, kind))
                query = dict(request.query_params) if kind != JSON else {}  # JSON bodies carry options
                parsed = _Parsed(kind, body, query, request.headers, path or {}, ticket=ticket)
                if kind == MULTIPART:
                    parsed.images = await codecs.read_images(request, self.settings.max_rows)
            except ClientDisconnect:
                raise ClientClosed("the client closed the connection before its body was read") from None
            except Exception:
                return self._failed(verb, _Labels(), start)
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            self.submit(verb, parsed, media, partial(_settle, future), start)
            return await future
        except ClientClosed:
            return self._failed(verb, _Labels(), start)
        finally:
            if ticket is not None:
                ticket.release()

    def handle_raw(
        self,
        verb: Verb,
        headers: Mapping[str, str],
        query: str,
        body: bytes,
        reply: Reply,
        path: Mapping[str, str] | None = None,
        ticket: Ticket | None = None,
    ) -> None:
        """Serve one request read by the HTTP fast path (`service.http`): lower-case header names, the
        raw query string, the whole body and the path's parameters (`find`); `reply` gets the
        response, in this loop turn or later."""
        start = time.perf_counter()
        try:
            media, kind = self.admit(verb, headers)
            if kind == MULTIPART:  # service.http hands multipart bodies to the ASGI app instead
                raise UnsupportedMediaType("multipart bodies are read by the ASGI path", field="content-type")
            options = dict(parse_qsl(query, keep_blank_values=True)) if kind != JSON else {}
            parsed = _Parsed(kind, body, options, headers, path or {}, ticket=ticket)
        except Exception:
            reply(self._failed(verb, _Labels(), start))
            return
        self.submit(verb, parsed, media, reply, start)

    def refuse_body(self, verb: Verb, headers: Mapping[str, str], declared: int | None) -> Response:
        """The answer to a body over MAX_BODY_BYTES read by the HTTP fast path: the header checks'
        error if any (as on the ASGI path, where they come first), else the 413; counted."""
        start = time.perf_counter()
        try:
            _, kind = self.admit(verb, headers)
            raise self.too_large(kind, declared)
        except Exception:
            return self._failed(verb, _Labels(), start)

    def body_limit(self, kind: str) -> int:
        """The largest body of this kind: MAX_BODY_BYTES, and MAX_JSON_BODY_BYTES for JSON."""
        if kind == JSON:
            return min(self.settings.max_body_bytes, self.settings.max_json_body_bytes)
        return self.settings.max_body_bytes

    def too_large(self, kind: str, declared: int | None = None) -> PayloadTooLarge:
        """The 413 for a body of this kind over `body_limit`: declared, or found while reading."""
        limit = self.body_limit(kind)
        if kind == JSON and limit < self.settings.max_body_bytes:
            return JsonBodyTooLarge(limit, declared)
        return codecs.body_too_large(limit, declared)

    def refused(self, verb: Verb) -> Response:
        """The answer to the exception being handled for a request refused on its headers by the
        HTTP fast path (`admit`'s checks, the admission's 503), counted in the metrics."""
        return self._failed(verb, _Labels(), time.perf_counter())

    def admit(self, verb: Verb, headers: Mapping[str, str]) -> tuple[str, str]:
        """The checks that need only the headers, in order: API key (401), Accept (406),
        Content-Type and Content-Encoding (415). Returns the response and request media types (a /v2
        body with Inference-Header-Content-Length: `oip.BINARY`)."""
        check_api_key(headers, self.settings.api_key)
        media = codecs.negotiate(headers.get("accept"), verb.produces)
        kind = codecs.check_content_type(codecs.media_type(headers.get("content-type")), verb.reads)
        codecs.check_content_encoding(headers.get("content-encoding"))
        if verb.parse is not None and (kind == oip.OCTET or oip.HEADER_LENGTH in headers):
            kind = oip.BINARY
        return media, kind

    # ---- the core ----------------------------------------------------------------------------------
    def submit(self, verb: Verb, parsed: _Parsed, media: str, reply: Reply, start: float) -> None:
        """Serve a request whose body is read; call `reply` exactly once with the response.

        Small bodies are parsed and validated here, on the event loop, and their rows go to the
        batcher (the reply comes at the end of this loop turn); larger .npy bodies are validated
        here and run here too when their model call is predicted short; the others run in a
        worker thread (see the module doc).
        """
        labels = _Labels()
        try:
            if not self.runs_inline(verb, parsed):
                work = partial(self.serve, verb, parsed, media, labels)
                if parsed.kind in _ZERO_COPY and len(parsed.body) <= self.settings.inline_npy_bytes:
                    # a .npy (or /v2 binary) body is read without a copy: validate it here, and run
                    # the model here too when this version's own timings say the call is short
                    job = self.prepare(verb, parsed, media, labels)
                    predicted = job.predicted_seconds()
                    if predicted is not None and predicted <= self.settings.inline_compute_ms / 1000:
                        self._finish(job, labels, start, reply, job.compute())
                        return
                    work = partial(self._compute_and_respond, job)
                task = asyncio.get_running_loop().create_task(
                    self._threaded(verb, work, labels, start, reply)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            job = self.prepare(verb, parsed, media, labels)
            if self.settings.batching:
                self._batch(job, partial(self._finish, job, labels, start, reply))
            else:
                self._finish(job, labels, start, reply, job.compute())
        except Exception:
            reply(self._failed(verb, labels, start))

    def _batch(self, job: Job, done: Callable[[Outputs | BaseException], None]) -> None:
        """Hand each op of the job to the batcher; `done` gets their outputs in op order, or the
        first exception, once all of them ran (in the same flush)."""
        ops = job.ops
        if len(ops) == 1:
            self.batcher.submit(job.runtime, ops[0], job.X, done)
            return
        parts: list[Outputs | BaseException | None] = [None] * len(ops)

        def part(i: int, result: Outputs | BaseException) -> None:
            parts[i] = result
            if any(p is None for p in parts):
                return
            outputs: Outputs = ()
            for p in parts:
                if isinstance(p, BaseException):
                    done(p)
                    return
                assert p is not None
                outputs += p
            done(outputs)

        for i, op in enumerate(ops):
            self.batcher.submit(job.runtime, op, job.X, partial(part, i))

    def runs_inline(self, verb: Verb, parsed: _Parsed) -> bool:
        """Small bodies run on the event loop (through the batcher); the rest in a worker thread.
        Only a body that bounds the work qualifies: /sample decodes `n` rows from a tiny body."""
        return (
            len(parsed.body) <= self.settings.inline_bytes
            and parsed.kind != MULTIPART
            and verb.field is not None
        )

    def _finish(
        self, job: Job, labels: _Labels, start: float, reply: Reply, outputs: Outputs | BaseException
    ) -> None:
        try:
            if isinstance(outputs, BaseException):
                raise outputs
            response = self.respond(job, outputs)
        except Exception:
            reply(self._failed(job.verb, labels, start))
            return
        self.metrics.observe(job.verb.name, labels.model, 200, time.perf_counter() - start, labels.rows)
        reply(response)

    async def _threaded(
        self, verb: Verb, work: Callable[[float], Response], labels: _Labels, start: float, reply: Reply
    ) -> None:
        try:
            response = await self._in_thread(work, verb)
        except Exception:
            reply(self._failed(verb, labels, start))
            return
        self.metrics.observe(verb.name, labels.model, 200, time.perf_counter() - start, labels.rows)
        reply(response)

    def _failed(self, verb: Verb, labels: _Labels, start: float) -> Response:
        """The response for the exception being handled, counted in the metrics."""
        exc = sys.exc_info()[1]
        elapsed = time.perf_counter() - start
        if isinstance(exc, LatentServeError):
            response = verb.error(exc)
            status = response.status_code
            self.metrics.observe(verb.name, labels.model, status, elapsed, 0, type(exc).__name__)
            return response
        self.metrics.observe(verb.name, labels.model, 500, elapsed, 0, "InternalError")
        return codecs.internal_error_response("POST", f"/{verb.name}", verb.error)

    async def _in_thread(self, work: Callable[[float], Response], verb: Verb) -> Response:
        """Run `work(deadline)` in a worker thread once one of MAX_CONCURRENCY slots is free; the
        wait counts against REQUEST_TIMEOUT_S, and the work itself stops at the deadline."""
        timeout = self.settings.request_timeout_s
        deadline = time.monotonic() + timeout
        try:
            with anyio.fail_after(timeout):
                async with self.admission.slot():
                    return await anyio.to_thread.run_sync(work, deadline, abandon_on_cancel=True)
        except TimeoutError:
            raise _timeout(verb, timeout) from None

    def serve(self, verb: Verb, parsed: _Parsed, media: str, labels: _Labels, deadline: float) -> Response:
        """Parse, compute and encode in one synchronous, CPU-bound call (the worker-thread path)."""
        parsed.deadline = deadline
        return self._compute_and_respond(self.prepare(verb, parsed, media, labels), deadline)

    def _compute_and_respond(self, job: Job, deadline: float) -> Response:
        """The model calls in chunks of COMPUTE_CHUNK_ROWS, checking the deadline between them."""
        n = len(job.X)
        if n <= 2 * COMPUTE_CHUNK_ROWS:
            return self._respond_in_thread(job, job.compute(), deadline)
        parts = []
        for i in range(0, n, COMPUTE_CHUNK_ROWS):
            if time.monotonic() > deadline:
                raise _timeout(job.verb, self.settings.request_timeout_s)
            parts.append(replace(job, X=job.X[i : i + COMPUTE_CHUNK_ROWS]).compute())
        outputs = tuple(np.concatenate(column) for column in zip(*parts, strict=True))
        return self._respond_in_thread(job, outputs, deadline)

    def _respond_in_thread(self, job: Job, outputs: Outputs, deadline: float) -> Response:
        """`respond`; a JSON answer of more values than JSON_OFFLOAD_BYTES / JSON_VALUE_BYTES is
        encoded in a JSON worker process (`service.jsonpool`), off the GIL."""
        if job.media != JSON or job.verb.encode is not _native_encode:
            return self.respond(job, outputs)
        result = job.verb.finish(job, outputs)
        values = sum(A.size for A in result.arrays.values())
        if not self.json_pool.takes_answer(values * JSON_VALUE_BYTES):
            return _native_encode(job, result)
        try:
            return codecs.encode_response(result, JSON, partial(self.json_pool.dumps, deadline=deadline))
        except TimeoutError:
            raise _timeout(job.verb, self.settings.request_timeout_s) from None

    def prepare(self, verb: Verb, parsed: _Parsed, media: str, labels: _Labels) -> Job:
        """Parse the body, find the runtime and validate the rows: every 4xx is raised here."""
        if not self.registry.loaded:
            raise NotReady("the model registry is still loading; try again shortly")
        if verb.parse is not None:  # a verb with its own wire format (/v2) names the model in the path
            version = oip.parse_version(parsed.path.get("version"))
            runtime = self.registry.get(parsed.path["model"], version)
            labels.model = runtime.manifest.name
            opts, X = verb.parse(parsed, runtime)
            if len(X) > self.settings.max_rows:
                raise self._too_many(len(X), verb.field or "n")
        else:
            opts, rows = self._options_and_rows(verb, parsed)
            runtime = self.registry.get(opts.model, opts.version)
            labels.model = runtime.manifest.name
            X = self._to_array(verb, parsed, rows, runtime, opts)
        model_rows = verb.rows(runtime, X, opts)
        labels.rows = len(model_rows)
        job = Job(verb, runtime, opts, model_rows, X.shape, media)
        self._check_answer_size(job, parsed.ticket)
        return job

    def _check_answer_size(self, job: Job, ticket: Ticket | None) -> None:
        """Refuse (413) before computing an answer predicted over MAX_RESPONSE_BYTES: rows x the
        values each row answers x the bytes a value takes in the response's media type. The
        request's admission ticket then reserves that answer too (encoded, then copied into the
        socket's buffer: twice its size), so concurrent large answers are shed (503)."""
        m = job.runtime.manifest
        size = m.input.size
        per_row = {
            "encode": m.latent_dim,
            "decode": size,
            "sample": size,
            "reconstruct": size + 1,
            "anomaly-score": 3 + (size if getattr(job.opts, "return_feature_errors", False) else 0),
        }.get(job.verb.name, size + m.latent_dim + 3)
        n = len(job.X)
        per_value = JSON_VALUE_BYTES if job.media == JSON else 4
        predicted = n * per_row * per_value
        limit = self.settings.max_response_bytes
        json_limit = self.settings.max_json_response_bytes
        if job.media == JSON and json_limit < limit and predicted > json_limit:
            raise JsonAnswerTooLarge(json_limit, predicted, n, per_row)
        if predicted > limit:
            hint = "send fewer rows"
            if job.media == JSON:
                hint = "send Accept: application/x-npy (4 bytes a value) or fewer rows"
            raise PayloadTooLarge(
                f"the answer would be about {predicted} bytes ({n} rows x {per_row} values), over the "
                f"limit of {limit} bytes (LATENTSERVE_MAX_RESPONSE_BYTES); {hint}",
                field="accept",
                details={"limit": limit, "predicted": predicted},
            )
        if ticket is not None:
            ticket.reserve(2 * predicted)

    @staticmethod
    def respond(job: Job, outputs: Outputs) -> Response:
        return job.verb.encode(job, job.verb.finish(job, outputs))

    def _options_and_rows(self, verb: Verb, parsed: _Parsed) -> tuple[Any, object]:
        assert verb.options is not None
        if parsed.kind != JSON:
            query = dict(parsed.query)
            if MULTIPART in verb.reads and "resize" in query:
                flag = {"resize": query.pop("resize")}
                parsed.resize = codecs.validate_options(ResizeOption, flag, "query").resize
            return codecs.validate_options(verb.options, query, "query"), None
        rows: object
        if verb.field is not None and parsed.deadline is not None and self.json_pool.takes(parsed.body):
            data, rows = self._parse_in_pool(verb, verb.field, parsed.body, parsed.deadline)
        else:  # booleans: the rows are walked for them
            data, rows, parsed.booleans = read_json(parsed.body, verb.field)
        if isinstance(rows, (list, np.ndarray, BadRows)) and len(rows) > self.settings.max_rows:
            raise self._too_many(len(rows))
        opts = codecs.validate_options(verb.options, data, "body")
        if isinstance(opts, SampleRequest) and opts.n > self.settings.max_rows:
            raise self._too_many(opts.n, "n")
        return opts, rows

    def _parse_in_pool(
        self, verb: Verb, field: str, body: bytes, deadline: float
    ) -> tuple[dict[str, Any], Rows]:
        """A large JSON body parsed in a worker process (`service.jsonpool`), waited for off the GIL."""
        try:
            return self.json_pool.parse(body, field, deadline)
        except TimeoutError:
            raise _timeout(verb, self.settings.request_timeout_s) from None

    def _to_array(
        self, verb: Verb, parsed: _Parsed, rows: object, runtime: ModelRuntime, opts: InferenceOptions
    ) -> Array:
        if verb.field is None:
            return np.empty((getattr(opts, "n", 0), 0), dtype=np.float32)
        if isinstance(rows, BadRows):  # found by a JSON worker; raised where the rows are converted
            raise rows.error
        if parsed.kind == JSON:
            return codecs.rows_to_array(rows, verb.field, parsed.booleans)
        if parsed.kind == NPY:
            X = codecs.load_npy(parsed.body, verb.field)
        else:
            assert parsed.images is not None
            X = codecs.images_to_array(
                parsed.images,
                runtime.manifest.input,
                parsed.resize,
                self.settings.max_request_pixels,
                parsed.deadline,
            )
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


def _timeout(verb: Verb, timeout: float) -> Timeout:
    return Timeout(
        f"/{verb.name}: the request took longer than {timeout:g} s (LATENTSERVE_REQUEST_TIMEOUT_S)"
    )


def _settle(future: asyncio.Future[Response], response: Response) -> None:
    if not future.done():  # done: the ASGI request was cancelled (client gone) meanwhile
        future.set_result(response)
