"""From a request to a `Job`: the header checks, the body, the options and the validated rows.

Every 4xx of an inference request is raised here: the headers' (401, 406, 415) before a byte of
body is kept, the body's size (413) while it is read, then the options' and the rows' (404, 413,
422, 503 while the registry loads).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
from starlette.requests import Request

from latentserve_core.runtime import ModelRuntime
from service import codecs, oip
from service.admission import Ticket
from service.codecs import CSV, JSON, MULTIPART, NPY, NamedRows
from service.errors import NotReady, Timeout, UnsupportedMediaType
from service.inference.limits import Limits
from service.inference.metering import Labels
from service.inference.verbs import Array, Job, Parsed, ScoreHook, Verb, no_rows
from service.jsonpool import BadRows, JsonPool, Rows
from service.registry import Registry
from service.schemas import ResizeOption
from service.security import check_api_key
from service.settings import Settings


class Intake:
    """Reads and validates requests for the core, within `Limits`."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        limits: Limits,
        json_pool: JsonPool,
        on_scores: ScoreHook | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.limits = limits
        self.json_pool = json_pool  # large JSON bodies, parsed off the GIL
        self.on_scores = on_scores  # each /anomaly-score answer's scores (live drift)

    # ---- headers ---------------------------------------------------------------------------------
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

    # ---- bodies ----------------------------------------------------------------------------------
    async def read(
        self, request: Request, kind: str, ticket: Ticket | None, path: Mapping[str, str]
    ) -> Parsed:
        """Read an ASGI request's body within its limit (a multipart body's files too)."""
        body = await codecs.read_body(
            request, self.limits.body(kind), ticket, partial(self.limits.too_large, kind)
        )
        query = dict(request.query_params) if kind != JSON else {}  # JSON bodies carry options
        parsed = Parsed(kind, body, query, request.headers, path, ticket=ticket)
        if kind == MULTIPART:
            parsed.images = await codecs.read_images(request.headers, body, self.settings.max_rows)
        return parsed

    def raw(
        self,
        kind: str,
        headers: Mapping[str, str],
        query: str,
        body: bytes,
        path: Mapping[str, str],
        ticket: Ticket | None,
    ) -> Parsed:
        """A request read whole by the HTTP fast path: the raw query string, the body as bytes."""
        if kind == MULTIPART:  # service.fastpath.protocol hands multipart bodies to the ASGI app instead
            raise UnsupportedMediaType("multipart bodies are read by the ASGI path", field="content-type")
        options = dict(parse_qsl(query, keep_blank_values=True)) if kind != JSON else {}
        return Parsed(kind, body, options, headers, path, ticket=ticket)

    # ---- options and rows ------------------------------------------------------------------------
    def prepare(self, verb: Verb, parsed: Parsed, media: str, labels: Labels) -> Job:
        """Parse the body, find the runtime and validate the rows."""
        if not self.registry.loaded:
            raise NotReady("the model registry is still loading; try again shortly")
        if verb.parse is not None:  # a verb with its own wire format (/v2) names the model in the path
            version = oip.parse_version(parsed.path.get("version"))
            runtime = self.registry.get(parsed.path["model"], version)
            labels.model = runtime.manifest.name
            opts, X = verb.parse(parsed, runtime)
        else:
            opts, rows = self._options_and_rows(verb, parsed)
            runtime = self.registry.get(opts.model, opts.version)
            labels.model = runtime.manifest.name
            X = self._to_array(verb, parsed, rows, runtime, opts)
        self.limits.check_rows(len(X), verb.field)
        model_rows = verb.rows(runtime, X, opts)
        labels.rows = len(model_rows)
        job = Job(verb, runtime, opts, model_rows, X.shape, media, self.on_scores)
        self.limits.check_answer(job, parsed.ticket)
        return job

    def _options_and_rows(self, verb: Verb, parsed: Parsed) -> tuple[Any, object]:
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
            data, rows, parsed.booleans = codecs.read_json(parsed.body, verb.field)
        if isinstance(rows, (list, np.ndarray, BadRows, NamedRows)):  # before a large list becomes an array
            self.limits.check_rows(len(rows), verb.field)
        return codecs.validate_options(verb.options, data, "body"), rows

    def _parse_in_pool(
        self, verb: Verb, field: str, body: bytes, deadline: float
    ) -> tuple[dict[str, Any], Rows]:
        """A large JSON body parsed in a worker process (`service.jsonpool`), waited for off the GIL."""
        try:
            return self.json_pool.parse(body, field, deadline)
        except TimeoutError:
            raise Timeout.of_request(verb.name, self.settings.request_timeout_s) from None

    def _to_array(self, verb: Verb, parsed: Parsed, rows: object, runtime: ModelRuntime, opts: Any) -> Array:
        if verb.field is None:
            assert verb.count is not None
            return no_rows(verb.count(opts))
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
        return codecs.images_to_array(
            parsed.images,
            runtime.manifest.input,
            parsed.resize,
            self.settings.max_request_pixels,
            parsed.deadline,
        )
