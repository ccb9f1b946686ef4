"""The verbs: what each inference endpoint reads, which model ops it runs, and how it answers.

`VERBS` are our own endpoints (`POST /encode`, ...); `V2_VERBS` are the Open Inference Protocol's
infer on a model, its `.decoder` and its `.sample`, with their own wire format from `service.oip`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from starlette.responses import Response

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray, Op
from service import codecs, oip
from service.admission import Ticket
from service.batching import Outputs
from service.codecs import CSV, JSON, MULTIPART, NPY, NPZ, PNG, ImageFile, Result
from service.errors import LatentServeError
from service.schemas import (
    AnomalyScoreOptions,
    DecodeOptions,
    EncodeOptions,
    InferenceOptions,
    ReconstructOptions,
    SampleRequest,
)

Array = npt.NDArray[Any]
ScoreHook = Callable[[Manifest, FloatArray], None]  # sees each /anomaly-score answer's scores


@dataclass
class Parsed:
    """One request as read: its body and where its options are, before any validation."""

    kind: str  # the body's media type (`oip.BINARY`: a /v2 body with binary tensors)
    body: bytes
    query: dict[str, str]
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    path: Mapping[str, str] = field(default_factory=dict)  # parameters in the path (/v2: model, version)
    images: list[ImageFile] | None = None
    resize: bool = False  # the `resize` query flag of image bodies
    booleans: bool = False  # a JSON body with true / false in an array: its rows are checked for them
    deadline: float | None = None  # time.monotonic() past which decoding stops (worker threads)
    ticket: Ticket | None = None  # the request's admission, which also reserves its answer


@dataclass
class Job:
    """One request, parsed and validated: the model rows to run and how to answer."""

    verb: Verb
    runtime: ModelRuntime
    opts: Any
    X: FloatArray  # validated model rows: inputs (n, *input.shape) or codes (n, latent_dim)
    shape: tuple[int, ...]  # the request rows' layout (flat or shaped), kept in the answer
    media: str
    on_scores: ScoreHook | None = None  # /anomaly-score: live drift

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

    def answer_values(self) -> int:
        """Values the answer holds per row (the answer-size limit's estimate)."""
        return self.verb.answer_values(self.runtime.manifest, self.opts)

    def respond(self, outputs: Outputs) -> Response:
        """The response: the verb's arrays from the model outputs, encoded in the verb's format."""
        return self.verb.encode(self, self.verb.finish(self, outputs))


def native_encode(job: Job, result: Result) -> Response:
    return codecs.encode_response(result, job.media)


@dataclass(frozen=True, kw_only=True)
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
    answer_values: Callable[[Manifest, Any], int]  # values answered per row
    count: Callable[[Any], int] | None = None  # rows the options ask for, when no array is sent
    parse: Callable[[Parsed, ModelRuntime], tuple[Any, Array]] | None = None  # needs path["model"]
    encode: Callable[[Job, Result], Response] = native_encode
    error: Callable[[LatentServeError], Response] = codecs.error_response


def _result(job: Job, arrays: dict[str, Array], **kw: Any) -> Result:
    m = job.runtime.manifest
    return Result(m.name, m.version, arrays, **kw)


def _inputs(rt: ModelRuntime, X: Array, opts: Any) -> FloatArray:
    return rt.check_inputs(X)


def _codes(rt: ModelRuntime, Z: Array, opts: Any) -> FloatArray:
    return rt.check_codes(Z)


def _prior(rt: ModelRuntime, _: Array, opts: SampleRequest | oip.InferRequest) -> FloatArray:
    return rt.prior_codes(opts.n, opts.seed)


def _samples(opts: SampleRequest) -> int:
    return opts.n


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
    threshold, is_anomaly, p_values = rt.judge(scores, opts.threshold, opts.alpha)
    if job.on_scores is not None:
        job.on_scores(rt.manifest, scores)
    arrays: dict[str, Array] = {"scores": scores, "is_anomaly": is_anomaly, "p_values": p_values}
    if opts.return_feature_errors:
        arrays["feature_errors"] = rt.feature_errors(job.X, out[0]).reshape(job.shape)
    return _result(job, arrays, scalars={"threshold": threshold, **rule_of(opts.alpha)})


def rule_of(alpha: float | None) -> dict[str, float | str]:
    """The answer's record of the rule that decided is_anomaly: `rule`, and `alpha` with it."""
    return {"rule": "threshold"} if alpha is None else {"rule": "alpha", "alpha": alpha}


def _always(op: Op) -> Callable[[Any], tuple[Op, ...]]:
    ops = (op,)
    return lambda _opts: ops


def _codes_per_row(m: Manifest, _opts: Any) -> int:
    return m.latent_dim


def _inputs_per_row(m: Manifest, _opts: Any) -> int:
    return m.input.size


def _reconstructed_per_row(m: Manifest, _opts: Any) -> int:
    return m.input.size + 1  # the reconstruction and its error


def _scored_per_row(m: Manifest, opts: AnomalyScoreOptions) -> int:
    return 3 + (m.input.size if opts.return_feature_errors else 0)  # score, is_anomaly, p_value


_ROWS_IN = (JSON, NPY, MULTIPART, CSV)
_ANY_OUT = (JSON, NPY, NPZ, PNG)
VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb(
            name="encode",
            options=EncodeOptions,
            field="inputs",
            rows=_inputs,
            ops=_always("encode"),
            finish=_encoded,
            reads=_ROWS_IN,
            produces=(JSON, NPY, NPZ),
            answer_values=_codes_per_row,
        ),
        Verb(
            name="decode",
            options=DecodeOptions,
            field="codes",
            rows=_codes,
            ops=_always("decode"),
            finish=_decoded,
            reads=(JSON, NPY),
            produces=_ANY_OUT,
            answer_values=_inputs_per_row,
        ),
        Verb(
            name="reconstruct",
            options=ReconstructOptions,
            field="inputs",
            rows=_inputs,
            ops=_always("reconstruct"),
            finish=_reconstructed,
            reads=_ROWS_IN,
            produces=_ANY_OUT,
            answer_values=_reconstructed_per_row,
        ),
        Verb(
            name="anomaly-score",
            options=AnomalyScoreOptions,
            field="inputs",
            rows=_inputs,
            ops=_score_op,
            finish=_scored,
            reads=_ROWS_IN,
            produces=(JSON, NPY, NPZ),
            answer_values=_scored_per_row,
        ),
        Verb(
            name="sample",
            options=SampleRequest,
            field=None,
            rows=_prior,
            ops=_always("decode"),
            finish=_decoded,
            reads=(JSON,),
            produces=_ANY_OUT,
            answer_values=_inputs_per_row,
            count=_samples,
        ),
    )
}
PATHS: dict[str, Verb] = {f"/{name}": verb for name, verb in VERBS.items()}  # what the fast paths serve


# ---- the Open Inference Protocol's infer (service.oip) -------------------------------------------
def _v2_parse(target: oip.Target) -> Callable[[Parsed, ModelRuntime], tuple[oip.InferRequest, Array]]:
    def parse(parsed: Parsed, runtime: ModelRuntime) -> tuple[oip.InferRequest, Array]:
        return oip.read_request(parsed.kind, parsed.body, parsed.headers, runtime, target)

    return parse


def _v2_inputs(rt: ModelRuntime, X: Array, opts: oip.InferRequest) -> FloatArray:
    return rt.check_inputs(X, "input")


def _v2_codes(rt: ModelRuntime, Z: Array, opts: oip.InferRequest) -> FloatArray:
    return rt.check_codes(Z, "code")


def _v2_ops(opts: oip.InferRequest) -> tuple[Op, ...]:
    return opts.ops


def _v2_per_row(m: Manifest, opts: Any) -> int:
    """The outputs asked for, in JSON values a row: a binary output's value takes 4 bytes, a
    quarter of a JSON value's (`limits.JSON_VALUE_BYTES`)."""
    if not isinstance(opts, oip.InferRequest):
        return m.input.size + m.latent_dim + 3  # at most every output
    sizes = {"code": m.latent_dim, "reconstruction": m.input.size, "sample": m.input.size}
    as_json = sum(sizes.get(name, 1) for name in opts.outputs if name not in opts.binary)
    as_binary = sum(sizes.get(name, 1) for name in opts.outputs if name in opts.binary)
    return max(1, as_json + -(-as_binary // 4))


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
    scalars: dict[str, float | str] = {}
    if any(name in opts.outputs for name in oip.JUDGED):
        threshold, found["is_anomaly"], found["p_value"] = job.runtime.judge(
            found["score"], opts.threshold, opts.alpha
        )
        if "is_anomaly" in opts.outputs:
            scalars.update(threshold=threshold, **rule_of(opts.alpha))
    return _result(job, {name: found[name] for name in opts.outputs}, scalars=scalars)


def _v2_decoded(name: str) -> Callable[[Job, Outputs], Result]:
    return lambda job, out: _result(job, {name: out[0]})


def _v2_encode(job: Job, result: Result) -> Response:
    return oip.encode_response(job.opts, result)


def _v2_verb(name: str, target: oip.Target, field: str | None, rows: Any, finish: Any) -> Verb:
    return Verb(
        name=name,
        options=None,
        field=field,
        rows=rows,
        ops=_v2_ops,
        finish=finish,
        reads=(JSON, oip.OCTET),
        produces=(JSON, oip.OCTET),
        answer_values=_v2_per_row,
        parse=_v2_parse(target),
        encode=_v2_encode,
        error=oip.error_response,
    )


V2_VERBS: dict[oip.Target, Verb] = {
    "model": _v2_verb("v2/infer", "model", "input", _v2_inputs, _v2_inferred),
    "decoder": _v2_verb("v2/decoder", "decoder", "code", _v2_codes, _v2_decoded("reconstruction")),
    "sample": _v2_verb("v2/sample", "sample", None, _prior, _v2_decoded("sample")),
}
V2_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


def no_rows(n: int) -> Array:
    """The array of a request that sends no rows but asks for `n` (a sample)."""
    return np.empty((n, 0), dtype=np.float32)
