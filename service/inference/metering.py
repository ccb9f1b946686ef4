"""Every answer of the core counted once: the response, or the error's, with its status and time."""

from __future__ import annotations

import time

from starlette.responses import Response

from service import codecs
from service.errors import LatentServeError
from service.metrics import UNKNOWN_MODEL, ServiceMetrics
from service.protocols.records import Labels, Verb


class Meter:
    """Counts each request's outcome in the metrics as it is answered."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def ok(self, verb: Verb, labels: Labels, start: float, response: Response) -> Response:
        """The 200 `response`, counted."""
        self.metrics.observe(verb.name, labels.model, 200, time.perf_counter() - start, labels.rows)
        return response

    def dropped(self, verb: Verb, start: float, exc: LatentServeError) -> None:
        """A request nobody is left to answer (its client closed mid-body), counted without an answer."""
        elapsed = time.perf_counter() - start
        self.metrics.observe(verb.name, UNKNOWN_MODEL, exc.status_code, elapsed, 0, type(exc).__name__)

    def failed(self, verb: Verb, labels: Labels, start: float, exc: BaseException) -> Response:
        """The response to `exc` in the verb's error shape (a 500 for anything but our errors), counted."""
        elapsed = time.perf_counter() - start
        if isinstance(exc, LatentServeError):
            response = verb.protocol.error(exc)
            status = response.status_code
            self.metrics.observe(verb.name, labels.model, status, elapsed, 0, type(exc).__name__)
            return response
        self.metrics.observe(verb.name, labels.model, 500, elapsed, 0, "InternalError")
        return codecs.internal_error_response("POST", f"/{verb.name}", exc, verb.protocol.error)
