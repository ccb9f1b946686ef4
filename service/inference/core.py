"""`InferenceService`: the entries of the core (ASGI, raw) and the path of a request through it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from functools import partial
from urllib.parse import unquote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from service import codecs, oip
from service.admission import BINARY_WEIGHT, JSON_WEIGHT, Admission, Ticket
from service.batching import Batcher, Outputs
from service.codecs import CSV, JSON
from service.errors import ClientClosed, PayloadTooLarge
from service.inference.intake import Intake
from service.inference.limits import JSON_VALUE_BYTES, Limits
from service.inference.metering import Labels, Meter
from service.inference.scheduling import Scheduler
from service.inference.verbs import PATHS, V2_INFER, V2_VERBS, Job, Parsed, Verb, native_encode
from service.jsonpool import JsonPool
from service.metrics import ServiceMetrics
from service.registry import Registry
from service.settings import Settings

Reply = Callable[[Response], None]


class InferenceService:
    """The core: `handle` (ASGI) and `handle_raw` (the HTTP fast path) serve any verb of `VERBS`
    and `V2_VERBS`, through `Intake` (headers, body, options, rows), `Scheduler` (loop, batcher
    or thread) and `Meter` (metrics); the verb encodes the answer."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        metrics: ServiceMetrics,
        admission: Admission | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.admission = admission if admission is not None else Admission(settings)
        self.limits = Limits(settings)
        self.json_pool = JsonPool(settings, self.admission)  # large JSON bodies and answers, off the GIL
        self.intake = Intake(registry, settings, self.limits, self.json_pool, metrics.drift.observe)
        batcher = Batcher(settings.batch_max_rows, on_batch=metrics.observe_batch)
        self.scheduler = Scheduler(settings, self.admission, batcher)
        self.meter = Meter(metrics)

    # ---- entries: the ASGI one (routes, ASGI fast path) and the raw one (the HTTP fast path) ------
    def find(self, path: str) -> tuple[Verb, dict[str, str]] | None:
        """The verb that serves POST `path` and the parameters in the path, or None."""
        verb = PATHS.get(path)
        if verb is not None:
            return verb, {}
        match = V2_INFER.fullmatch(path)
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
                digits = declared is not None and declared.isascii() and declared.isdigit()
                size = int(declared) if digits and declared is not None else None
                if size is not None and size > self.limits.body(kind):
                    raise self.limits.too_large(kind, size)
                ticket = self.admission.enter(size, JSON_WEIGHT if kind in (JSON, CSV) else BINARY_WEIGHT)
                parsed = await self.intake.read(request, kind, ticket, path or {})
            except ClientDisconnect:
                closed = ClientClosed("the client closed the connection before its body was read")
                return self.meter.failed(verb, Labels(), start, closed)
            except Exception as exc:
                return self.meter.failed(verb, Labels(), start, exc)
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            self.submit(verb, parsed, media, partial(_settle, future), start)
            return await future
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
        """Serve one request read by the HTTP fast path (`service.fastpath.protocol`): lower-case
        header names, the raw query string, the whole body and the path's parameters (`find`);
        `reply` gets the response, in this loop turn or later."""
        start = time.perf_counter()
        try:
            media, kind = self.admit(verb, headers)
            parsed = self.intake.raw(kind, headers, query, body, path or {}, ticket)
        except Exception as exc:
            reply(self.meter.failed(verb, Labels(), start, exc))
            return
        self.submit(verb, parsed, media, reply, start)

    def refuse_body(self, verb: Verb, headers: Mapping[str, str], declared: int | None) -> Response:
        """The answer to a body over MAX_BODY_BYTES read by the HTTP fast path: the header checks'
        error if any (as on the ASGI path, where they come first), else the 413; counted."""
        start = time.perf_counter()
        try:
            _, kind = self.admit(verb, headers)
        except Exception as exc:
            return self.meter.failed(verb, Labels(), start, exc)
        return self.meter.failed(verb, Labels(), start, self.limits.too_large(kind, declared))

    def refused(self, verb: Verb, exc: Exception) -> Response:
        """The answer to a request the HTTP fast path refused on its headers (`admit`'s checks, the
        admission's 503), counted in the metrics."""
        return self.meter.failed(verb, Labels(), time.perf_counter(), exc)

    def admit(self, verb: Verb, headers: Mapping[str, str]) -> tuple[str, str]:
        """The header checks (`Intake.admit`): the response and request media types."""
        return self.intake.admit(verb, headers)

    def body_limit(self, kind: str) -> int:
        """The largest body of this kind (`Limits.body`)."""
        return self.limits.body(kind)

    def too_large(self, kind: str, declared: int | None = None) -> PayloadTooLarge:
        """The 413 for a body of this kind over `body_limit` (`Limits.too_large`)."""
        return self.limits.too_large(kind, declared)

    # ---- the core ----------------------------------------------------------------------------------
    def submit(self, verb: Verb, parsed: Parsed, media: str, reply: Reply, start: float) -> None:
        """Serve a request whose body is read; call `reply` exactly once with the response.

        Small bodies are parsed and validated here, on the event loop, and their rows go to the
        batcher (the reply comes at the end of this loop turn); larger .npy bodies are validated
        here and run here too when their model call is predicted short; the others run in a
        worker thread (see the module doc).
        """
        labels = Labels()
        scheduler = self.scheduler
        try:
            if scheduler.runs_inline(verb, parsed):
                job = self.intake.prepare(verb, parsed, media, labels)
                scheduler.on_loop(job, partial(self._finish, job, labels, start, reply))
                return
            work: Callable[[float], Response]
            if scheduler.validates_inline(parsed):
                job = self.intake.prepare(verb, parsed, media, labels)
                if scheduler.short(job):
                    self._finish(job, labels, start, reply, job.compute())
                    return
                work = partial(self._compute_and_respond, job)
            else:
                work = partial(self.serve, verb, parsed, media, labels)
            scheduler.in_thread(verb, work, partial(self._threaded, verb, labels, start, reply))
        except Exception as exc:
            reply(self.meter.failed(verb, labels, start, exc))

    def _finish(
        self, job: Job, labels: Labels, start: float, reply: Reply, outputs: Outputs | BaseException
    ) -> None:
        """Answer a job whose model calls ran on the loop (or failed)."""
        if isinstance(outputs, BaseException):
            reply(self.meter.failed(job.verb, labels, start, outputs))
            return
        try:
            response = job.respond(outputs)
        except Exception as exc:
            reply(self.meter.failed(job.verb, labels, start, exc))
            return
        reply(self.meter.ok(job.verb, labels, start, response))

    def _threaded(
        self, verb: Verb, labels: Labels, start: float, reply: Reply, outcome: Response | Exception
    ) -> None:
        """Answer a request served in a worker thread (or failed there, or timed out)."""
        if isinstance(outcome, Exception):
            reply(self.meter.failed(verb, labels, start, outcome))
            return
        reply(self.meter.ok(verb, labels, start, outcome))

    def serve(self, verb: Verb, parsed: Parsed, media: str, labels: Labels, deadline: float) -> Response:
        """Parse, compute and encode in one synchronous, CPU-bound call (the worker-thread path)."""
        parsed.deadline = deadline
        return self._compute_and_respond(self.intake.prepare(verb, parsed, media, labels), deadline)

    def _compute_and_respond(self, job: Job, deadline: float) -> Response:
        """The worker thread's model calls and answer; a JSON answer of more values than
        JSON_OFFLOAD_BYTES / JSON_VALUE_BYTES is encoded in a JSON worker process, off the GIL."""
        outputs = self.scheduler.compute_by(job, deadline)
        if job.media != JSON or job.verb.encode is not native_encode:
            return job.respond(outputs)
        result = job.verb.finish(job, outputs)
        values = sum(A.size for A in result.arrays.values())
        if not self.json_pool.takes_answer(values * JSON_VALUE_BYTES):
            return native_encode(job, result)
        try:
            return codecs.encode_response(result, JSON, partial(self.json_pool.dumps, deadline=deadline))
        except TimeoutError:
            raise self.scheduler.timeout(job.verb) from None

    def prepare(self, verb: Verb, parsed: Parsed, media: str, labels: Labels) -> Job:
        """Parse the body, find the runtime and validate the rows (`Intake.prepare`)."""
        return self.intake.prepare(verb, parsed, media, labels)


def _settle(future: asyncio.Future[Response], response: Response) -> None:
    if not future.done():  # done: the ASGI request was cancelled (client gone) meanwhile
        future.set_result(response)
