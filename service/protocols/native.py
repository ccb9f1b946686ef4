"""Our own inference API: `POST /encode`, `/decode`, `/reconstruct`, `/anomaly-score`, `/sample`.

Bodies are JSON (options beside the rows), `.npy`, CSV or images (options in the query); answers
are JSON, `.npy`, `.npz` or PNG (`service.codecs`); errors are `{"error": {"type", "message",
"field", "details"}}` with the error's own status.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.responses import Response

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray, Op
from service import codecs
from service.batching import Outputs
from service.codecs import CSV, JSON, MULTIPART, NPY, NPZ, PNG, NamedRows, Result
from service.errors import LatentServeError, Timeout
from service.jsonpool import BadRows, Rows
from service.protocols import Protocol, Reader, result_of, rule_of
from service.protocols.records import Array, Job, Labels, Parsed, Verb
from service.schemas import (
    AnomalyScoreOptions,
    DecodeOptions,
    EncodeOptions,
    ReconstructOptions,
    ResizeOption,
    SampleRequest,
)

_OPS: dict[str, Op] = {
    "encode": "encode",
    "decode": "decode",
    "reconstruct": "reconstruct",
    "sample": "decode",
}


class NativeProtocol(Protocol):
    """Our endpoints' wire format; a verb's `target` is its endpoint's name."""

    name = "native"

    # ---- parse -----------------------------------------------------------------------------------
    def parse(
        self, verb: Verb, parsed: Parsed, reader: Reader, labels: Labels
    ) -> tuple[ModelRuntime, Any, Array]:
        opts, rows = self._options_and_rows(verb, parsed, reader)
        runtime = reader.registry.get(opts.model, opts.version)
        labels.model = runtime.manifest.name
        return runtime, opts, self._to_array(verb, parsed, rows, runtime, opts, reader)

    def _options_and_rows(self, verb: Verb, parsed: Parsed, reader: Reader) -> tuple[Any, object]:
        assert verb.options is not None
        if parsed.kind != JSON:
            query = dict(parsed.query)
            if MULTIPART in verb.reads and "resize" in query:
                flag = {"resize": query.pop("resize")}
                parsed.resize = codecs.validate_options(ResizeOption, flag, "query").resize
            return codecs.validate_options(verb.options, query, "query"), None
        rows: object
        field, pool = verb.field, reader.json_pool
        if field is not None and parsed.deadline is not None and pool.takes(parsed.body):
            data, rows = self._parse_in_pool(verb, field, parsed.body, parsed.deadline, reader)
        else:  # booleans: the rows are walked for them
            data, rows, parsed.booleans = codecs.read_json(parsed.body, field)
        if isinstance(rows, (list, np.ndarray, BadRows, NamedRows)):  # before a large list becomes an array
            reader.limits.check_rows(len(rows), field)
        return codecs.validate_options(verb.options, data, "body"), rows

    @staticmethod
    def _parse_in_pool(
        verb: Verb, field: str, body: bytes, deadline: float, reader: Reader
    ) -> tuple[dict[str, Any], Rows]:
        """A large JSON body parsed in a worker process (`service.jsonpool`), waited for off the GIL."""
        try:
            return reader.json_pool.parse(body, field, deadline)
        except TimeoutError:
            raise Timeout.of_request(verb.name, reader.settings.request_timeout_s) from None

    @staticmethod
    def _to_array(
        verb: Verb, parsed: Parsed, rows: object, runtime: ModelRuntime, opts: Any, reader: Reader
    ) -> Array:
        if verb.field is None:  # /sample: n rows asked for, none sent
            return np.empty((opts.n, 0), dtype=np.float32)
        if isinstance(rows, BadRows):  # found by a JSON worker; raised where the rows are converted
            raise rows.error
        if parsed.kind == JSON:
            if codecs.is_records(rows):  # rows by name: one check on the first row
                rows = codecs.records_to_rows(rows, verb.field)  # type: ignore[arg-type]
            if isinstance(rows, NamedRows):
                return rows.ordered(runtime.manifest, verb.field)
            return codecs.rows_to_array(rows, verb.field, parsed.booleans)
        if parsed.kind == NPY:
            return codecs.load_npy(parsed.body, verb.field)
        if parsed.kind == CSV:
            table = codecs.load_csv(parsed.body, verb.field)
            return table.ordered(runtime.manifest, "body") if isinstance(table, NamedRows) else table
        assert parsed.images is not None
        spec, pixels = runtime.manifest.input, reader.settings.max_request_pixels
        return codecs.images_to_array(parsed.images, spec, parsed.resize, pixels, parsed.deadline)

    # ---- run -------------------------------------------------------------------------------------
    def rows(self, verb: Verb, runtime: ModelRuntime, X: Array, opts: Any) -> FloatArray:
        if verb.target == "decode":
            return runtime.check_codes(X)
        if verb.target == "sample":
            return runtime.prior_codes(opts.n, opts.seed)
        return runtime.check_inputs(X)

    def ops(self, verb: Verb, opts: Any) -> tuple[Op, ...]:
        if verb.target == "anomaly-score":
            return ("reconstruct",) if opts.return_feature_errors else ("scores",)
        return (_OPS[verb.target],)

    def finish(self, job: Job, outputs: Outputs) -> Result:
        target, spec = job.verb.target, job.runtime.manifest.input
        if target == "encode":
            return result_of(job, {"codes": outputs[0]})
        if target in ("decode", "sample"):
            return result_of(job, {"outputs": outputs[0]}, images=outputs[0], image_spec=spec)
        if target == "reconstruct":
            X_hat, scores = outputs
            arrays = {"reconstructions": X_hat.reshape(job.shape), "errors": scores}  # the rows' layout
            return result_of(job, arrays, images=X_hat, image_spec=spec)
        return self._scored(job, outputs)

    @staticmethod
    def _scored(job: Job, outputs: Outputs) -> Result:
        rt, opts = job.runtime, job.opts
        scores = outputs[-1]
        threshold, is_anomaly, p_values = rt.judge(scores, opts.threshold, opts.alpha)
        if job.on_scores is not None:
            job.on_scores(rt.manifest, scores)
        arrays: dict[str, Array] = {"scores": scores, "is_anomaly": is_anomaly, "p_values": p_values}
        if opts.return_feature_errors:
            arrays["feature_errors"] = rt.feature_errors(job.X, outputs[0]).reshape(job.shape)
        return result_of(job, arrays, scalars={"threshold": threshold, **rule_of(opts.alpha)})

    def answer_values(self, verb: Verb, manifest: Manifest, opts: Any) -> int:
        if verb.target == "encode":
            return manifest.latent_dim
        if verb.target == "reconstruct":
            return manifest.input.size + 1  # the reconstruction and its error
        if verb.target == "anomaly-score":  # score, is_anomaly, p_value
            return 3 + (manifest.input.size if opts.return_feature_errors else 0)
        return manifest.input.size

    # ---- the wire --------------------------------------------------------------------------------
    def encode(self, job: Job, result: Result) -> Response:
        return codecs.encode_response(result, job.media)

    def error(self, exc: LatentServeError) -> Response:
        return codecs.error_response(exc)


NATIVE = NativeProtocol()
_ROWS_IN = (JSON, NPY, MULTIPART, CSV)
_ANY_OUT = (JSON, NPY, NPZ, PNG)
VERBS: dict[str, Verb] = {
    v.name: v
    for v in (
        Verb(
            name="encode",
            protocol=NATIVE,
            target="encode",
            options=EncodeOptions,
            field="inputs",
            reads=_ROWS_IN,
            produces=(JSON, NPY, NPZ),
        ),
        Verb(
            name="decode",
            protocol=NATIVE,
            target="decode",
            options=DecodeOptions,
            field="codes",
            reads=(JSON, NPY),
            produces=_ANY_OUT,
        ),
        Verb(
            name="reconstruct",
            protocol=NATIVE,
            target="reconstruct",
            options=ReconstructOptions,
            field="inputs",
            reads=_ROWS_IN,
            produces=_ANY_OUT,
        ),
        Verb(
            name="anomaly-score",
            protocol=NATIVE,
            target="anomaly-score",
            options=AnomalyScoreOptions,
            field="inputs",
            reads=_ROWS_IN,
            produces=(JSON, NPY, NPZ),
        ),
        Verb(
            name="sample",
            protocol=NATIVE,
            target="sample",
            options=SampleRequest,
            field=None,
            reads=(JSON,),
            produces=_ANY_OUT,
        ),
    )
}
PATHS: dict[str, Verb] = {f"/{name}": verb for name, verb in VERBS.items()}  # POST paths of the verbs
