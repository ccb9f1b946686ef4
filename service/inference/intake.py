"""From a request to a `Job`: the header checks, then the body's options and validated rows.

Every 4xx of an inference request is raised here or in its protocol's `parse`: the headers' (401,
406, 415) before a byte of body is kept, then the options' and the rows' (404, 413, 422, 503 while
the registry loads).
"""

from __future__ import annotations

from collections.abc import Mapping

from service import codecs
from service.errors import NotReady
from service.protocols import Reader
from service.protocols.records import Job, Labels, Parsed, ScoreHook, Verb
from service.settings import Settings


class Intake:
    """Reads and validates requests for the core, within `Limits`."""

    def __init__(self, reader: Reader, settings: Settings, on_scores: ScoreHook | None = None) -> None:
        self.reader = reader
        self.settings = settings
        self.on_scores = on_scores  # each /anomaly-score answer's scores (live drift)

    # ---- headers ---------------------------------------------------------------------------------
    def admit(self, verb: Verb, headers: Mapping[str, str]) -> tuple[str, str]:
        """The checks that need only the headers, in order: API key (401), Accept (406),
        Content-Type and Content-Encoding (415). Returns the response and request media types (a /v2
        body with Inference-Header-Content-Length: `wire.BINARY`)."""
        verb.protocol.check_key(headers, self.settings.api_key)
        media = codecs.negotiate(headers.get("accept"), verb.produces)
        kind = verb.protocol.body_kind(verb, headers)
        codecs.check_content_encoding(headers.get("content-encoding"))
        return media, kind

    # ---- options and rows ------------------------------------------------------------------------
    def prepare(self, verb: Verb, parsed: Parsed, media: str, labels: Labels) -> Job:
        """Parse the body, find the runtime and validate the rows."""
        if not self.reader.registry.loaded:
            raise NotReady("the model registry is still loading; try again shortly")
        protocol, limits = verb.protocol, self.reader.limits
        runtime, opts, X = protocol.parse(verb, parsed, self.reader, labels)
        limits.check_rows(len(X), verb.field)
        model_rows = protocol.rows(verb, runtime, X, opts)
        labels.rows = len(model_rows)
        job = Job(verb, runtime, opts, model_rows, X.shape, media, self.on_scores)
        limits.check_answer(job, parsed.ticket)
        return job
