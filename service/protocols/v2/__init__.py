"""The Open Inference Protocol (KServe V2): its infer verbs, its answers and its errors.

`wire` reads request bodies and writes answers (JSON and the binary tensor extension) and holds
the models' signatures and metadata; `V2Protocol` runs the verbs: `{model}` (its requested
outputs pick the model calls), `{model}.decoder` and `{model}.sample`. Errors are
`{"error": message}` with `STATUS` where the protocol's clients expect another status than ours.
"""

from __future__ import annotations

import re
from collections.abc import Container, Mapping
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.responses import Response

from latentserve_core.layout import parse_version
from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray, Op
from service.batching import Outputs
from service.codecs import JSON, Result
from service.errors import InvalidInput, LatentServeError, ModelUnavailable, response_headers
from service.protocols import Protocol, Reader, result_of, rule_of
from service.protocols.records import Array, Job, Labels, ModelRef, Parsed, Verb
from service.protocols.v2 import wire

INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
# the statuses the protocol's clients expect where they differ from ours: 400 for a bad request
# (not 422) and for a version that failed to load ("model not ready", not 503)
STATUS: dict[type[LatentServeError], int] = {InvalidInput: 400, ModelUnavailable: 400}
_SIZES = ("code", "reconstruction", "sample")


class V2Protocol(Protocol):
    """The protocol's infer; a verb's `target` is `wire.Target` ("model", "decoder", "sample")."""

    name = "v2"

    def route(self, path: str, models: Container[str]) -> tuple[Verb, ModelRef] | None:
        """The verb and model of an infer path, its name resolved once (`wire.split_name`)."""
        match = INFER_PATH.fullmatch(path)
        if match is None:
            return None
        return self.verb(unquote(match[1]), match[2] and unquote(match[2]), models)

    def verb(self, name: str, version: str | None, models: Container[str]) -> tuple[Verb, ModelRef]:
        """The verb for model `name` (`{model}`, `.decoder`, `.sample`) and the model it names."""
        model, target = wire.split_name(name, models)
        return V2_VERBS[target], ModelRef(model, version or None)

    def body_kind(self, verb: Verb, headers: Mapping[str, str]) -> str:
        """A body with binary tensors (`Inference-Header-Content-Length`, or octets) is `wire.BINARY`."""
        kind = super().body_kind(verb, headers)
        return wire.BINARY if kind == wire.OCTET or wire.HEADER_LENGTH in headers else kind

    # ---- parse and run ---------------------------------------------------------------------------
    def parse(
        self, verb: Verb, parsed: Parsed, reader: Reader, labels: Labels
    ) -> tuple[ModelRuntime, Any, Array]:
        assert parsed.ref is not None
        runtime = reader.registry.get(parsed.ref.name, parse_version(parsed.ref.version))
        labels.model = runtime.manifest.name
        target: wire.Target = verb.target  # type: ignore[assignment]
        req, X = wire.read_request(parsed.kind, parsed.body, parsed.headers, runtime, target)
        return runtime, req, X

    def rows(self, verb: Verb, runtime: ModelRuntime, X: Array, opts: wire.InferRequest) -> FloatArray:
        if verb.target == "model":
            return runtime.check_inputs(X, "input")
        if verb.target == "decoder":
            return runtime.check_codes(X, "code")
        return runtime.prior_codes(opts.n, opts.seed)

    def ops(self, verb: Verb, opts: wire.InferRequest) -> tuple[Op, ...]:
        return opts.ops

    def finish(self, job: Job, outputs: Outputs) -> Result:
        if job.verb.target == "decoder":
            return result_of(job, {"reconstruction": outputs[0]})
        if job.verb.target == "sample":
            return result_of(job, {"sample": outputs[0]})
        return self._inferred(job, outputs)

    @staticmethod
    def _inferred(job: Job, outputs: Outputs) -> Result:
        """The requested outputs of `{model}`, from the outputs of `wire.ops_for`'s ops in order."""
        opts: wire.InferRequest = job.opts
        found: dict[str, Array] = {}
        rest = list(outputs)
        for op in job.ops:
            if op == "encode":
                found["code"] = rest.pop(0)
            elif op == "reconstruct":
                found["reconstruction"] = rest.pop(0).reshape(job.shape)  # in the rows' own layout
                found["score"] = rest.pop(0)
            else:
                found["score"] = rest.pop(0)
        scalars: dict[str, float | str] = {}
        if any(name in opts.outputs for name in wire.JUDGED):
            threshold, found["is_anomaly"], found["p_value"] = job.runtime.judge(
                found["score"], opts.threshold, opts.alpha
            )
            if "is_anomaly" in opts.outputs:
                scalars.update(threshold=threshold, **rule_of(opts.alpha))
        return result_of(job, {name: found[name] for name in opts.outputs}, scalars=scalars)

    def answer_values(self, verb: Verb, manifest: Manifest, opts: Any) -> int:
        """The outputs asked for, in JSON values a row: a binary output's value takes 4 bytes, a
        quarter of a JSON value's (`limits.JSON_VALUE_BYTES`)."""
        if not isinstance(opts, wire.InferRequest):
            return manifest.input.size + manifest.latent_dim + 3  # at most every output
        sizes = {
            "code": manifest.latent_dim,
            "reconstruction": manifest.input.size,
            "sample": manifest.input.size,
        }
        as_json = sum(sizes.get(name, 1) for name in opts.outputs if name not in opts.binary)
        as_binary = sum(sizes.get(name, 1) for name in opts.outputs if name in opts.binary)
        return max(1, as_json + -(-as_binary // 4))

    # ---- the wire --------------------------------------------------------------------------------
    def encode(self, job: Job, result: Result) -> Response:
        return wire.encode_response(job.opts, result)

    def status(self, exc: LatentServeError) -> int:
        """The status under /v2: `STATUS` where it differs from the error's own."""
        for cls in type(exc).__mro__:
            if cls in STATUS:
                return STATUS[cls]
        return exc.status_code

    def error(self, exc: LatentServeError) -> Response:
        """The protocol's error shape, `{"error": message}`."""
        return Response(
            orjson.dumps({"error": exc.message}),
            status_code=self.status(exc),
            media_type=JSON,
            headers=response_headers(exc),
        )


V2 = V2Protocol()
_READS = (JSON, wire.OCTET)


def _verb(name: str, target: wire.Target, field: str | None) -> Verb:
    return Verb(
        name=name, protocol=V2, target=target, options=None, field=field, reads=_READS, produces=_READS
    )


V2_VERBS: dict[wire.Target, Verb] = {
    "model": _verb("v2/infer", "model", "input"),
    "decoder": _verb("v2/decoder", "decoder", "code"),
    "sample": _verb("v2/sample", "sample", None),
}
