"""The one door into inference, in two steps: `Dataplane.ticket` (the request's headers -> a
`Ticket` or a `Refused`) then `Dataplane.infer` (ticket + body -> the answer, given to `reply`).

Every transport calls those two and nothing else: the FastAPI routes and the ASGI shortcut
through `Dataplane.serve` (which reads the body for them), the uvicorn protocol with the body it
read, the registry page's Try-it form with its form. So every request is counted in the metrics
and, when scored, in the drift; and this module alone calls a model (`compute`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray, Op
from service import admission as admitting
from service import codecs
from service.admission import BINARY_WEIGHT, JSON_WEIGHT, Admission
from service.batching import Batcher, Outputs
from service.codecs import CSV, JSON, MULTIPART, ImageFile
from service.codecs.body import declared_length
from service.errors import ClientClosed, LatentServeError, Overloaded, PayloadTooLarge
from service.inference.intake import Intake
from service.inference.limits import JSON_VALUE_BYTES, Limits
from service.inference.metering import Meter
from service.inference.scheduling import Scheduler
from service.jsonpool import JsonPool
from service.metrics import ServiceMetrics
from service.protocols import Reader
from service.protocols.native import NATIVE, PATHS
from service.protocols.records import Job, Labels, ModelRef, Parsed, Verb
from service.protocols.v2 import V2
from service.registry import Registry
from service.settings import Settings

Reply = Callable[[Response], None]


def compute(runtime: ModelRuntime, op: Op, X: FloatArray) -> Outputs:
    """One model call: the only one in the service (the batcher stacks rows through it)."""
    return runtime.compute(op, X)


def run(job: Job) -> Outputs:
    """Every model call of a job on its rows, their outputs in op order."""
    outputs: Outputs = ()
    for op in job.ops:
        outputs += compute(job.runtime, op, job.X)
    return outputs


@dataclass
class Ticket:
    """An admitted inference request: what its body may be and how it will be answered."""

    verb: Verb
    ref: ModelRef | None  # the model named in the path (/v2, Try-it), resolved once
    media: str  # the answer's media type
    kind: str  # the body's
    body_limit: int
    headers: Mapping[str, str]
    query: Mapping[str, str]
    start: float
    hold: admitting.Ticket | None = None  # the memory the body (and answer) reserve

    def release(self) -> None:
        if self.hold is not None:
            self.hold.release()


@dataclass(frozen=True)
class Refused:
    """A request refused on its headers: the answer (counted), and whether to close the connection."""

    verb: Verb
    error: LatentServeError
    response: Response = field(repr=False)

    @property
    def shed(self) -> bool:
        return isinstance(self.error, (Overloaded, PayloadTooLarge))


class Dataplane:
    """The door: `route`, `ticket`, `infer` (and `serve`, both over an ASGI request)."""

    def __init__(
        self, registry: Registry, settings: Settings, metrics: ServiceMetrics, admission: Admission
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.admission = admission
        self.limits = Limits(settings)
        self.json_pool = JsonPool(settings, admission)  # large JSON bodies and answers, off the GIL
        reader = Reader(registry, settings, self.limits, self.json_pool)
        self.intake = Intake(reader, settings, metrics.drift.observe)
        self.meter = Meter(metrics)
        batcher = Batcher(settings.batch_max_rows, compute, on_batch=metrics.observe_batch)
        self.runner = Runner(
            Scheduler(settings, admission, batcher, run), self.intake, self.meter, self.json_pool
        )

    def route(self, path: str) -> tuple[Verb, ModelRef | None] | None:
        """The verb that serves POST `path` and the model the path names, or None."""
        verb = PATHS.get(path)
        if verb is not None:
            return verb, None
        return V2.route(path, self.registry.records())

    def ticket(
        self, verb: Verb, headers: Mapping[str, str], query: Mapping[str, str], ref: ModelRef | None = None
    ) -> Ticket | Refused:
        """Admission: the header checks, the declared size and the memory budget, before a byte of
        body is kept; a refusal is answered in the verb's protocol and counted."""
        start = time.perf_counter()
        try:
            media, kind = self.intake.admit(verb, headers)
            limit = self.limits.body(kind)
            declared = declared_length(headers)
            if declared is not None and declared > limit:
                raise self.limits.too_large(kind, declared)
            hold = self.admission.enter(declared, JSON_WEIGHT if kind in (JSON, CSV) else BINARY_WEIGHT)
        except Exception as exc:
            return self.refuse(verb, exc, start)
        return Ticket(verb, ref, media, kind, limit, headers, query, start, hold)

    def infer(
        self,
        ticket: Ticket,
        body: bytes,
        reply: Reply,
        images: list[ImageFile] | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        """Run an admitted request on its body (and a multipart body's files or form fields);
        `reply` gets the answer, in this loop turn or later. The caller releases the ticket."""
        query = dict(ticket.query) if ticket.kind != JSON else {}  # JSON bodies carry their options
        parsed = Parsed(ticket.kind, body, query, ticket.headers, ticket.ref, ticket=ticket.hold)
        parsed.images = images
        parsed.fields = dict(fields or {})
        self.runner.submit(ticket.verb, parsed, ticket.media, reply, ticket.start)

    def refuse(self, verb: Verb, exc: BaseException, start: float | None = None) -> Refused:
        """`exc` answered in the verb's protocol, counted."""
        start = time.perf_counter() if start is None else start
        error = exc if isinstance(exc, LatentServeError) else None
        response = self.meter.failed(verb, Labels(), start, exc)
        return Refused(verb, error or LatentServeError("internal error"), response)

    def drop(self, ticket: Ticket, exc: LatentServeError) -> None:
        """An admitted request whose client left before its body was whole: released, counted."""
        ticket.release()
        self.meter.dropped(ticket.verb, ticket.start, exc)

    async def serve(self, request: Request, verb: Verb, ref: ModelRef | None = None) -> Response:
        """Both steps over an ASGI request: admit it, read its body within the ticket's limit (a
        multipart body's files too), infer, and answer."""
        ticket = self.ticket(verb, request.headers, request.query_params, ref)
        if isinstance(ticket, Refused):
            return ticket.response
        try:
            try:
                too_large = partial(self.limits.too_large, ticket.kind)
                body = await codecs.read_body(request, ticket.body_limit, ticket.hold, too_large)
                images = None
                if ticket.kind == MULTIPART:
                    images = await codecs.read_images(request.headers, body, self.settings.max_rows)
            except ClientDisconnect:
                closed = ClientClosed("the client closed the connection before its body was read")
                return self.refuse(verb, closed, ticket.start).response
            except Exception as exc:
                return self.refuse(verb, exc, ticket.start).response
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            self.infer(ticket, body, partial(_settle, future), images)
            return await future
        finally:
            ticket.release()


class Runner:
    """Runs an admitted request: on the event loop (through the batcher) or in a worker thread
    (`Scheduler`), parsed and validated by `Intake`, counted by `Meter`; the protocol answers."""

    def __init__(self, scheduler: Scheduler, intake: Intake, meter: Meter, json_pool: JsonPool) -> None:
        self.scheduler = scheduler
        self.intake = intake
        self.meter = meter
        self.json_pool = json_pool

    def submit(self, verb: Verb, parsed: Parsed, media: str, reply: Reply, start: float) -> None:
        """Serve a request whose body is read; call `reply` exactly once with the response.

        Small bodies are parsed and validated here, on the event loop, and their rows go to the
        batcher (the reply comes at the end of this loop turn); larger .npy bodies are validated
        here and run here too when their model call is predicted short; the others run in a
        worker thread (see `service.inference`).
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
                    self._finish(job, labels, start, reply, run(job))
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
        """The worker thread's model calls and answer; a native JSON answer of more values than
        JSON_OFFLOAD_BYTES / JSON_VALUE_BYTES is encoded in a JSON worker process, off the GIL."""
        outputs = self.scheduler.compute_by(job, deadline)
        if job.media != JSON or job.verb.protocol is not NATIVE:
            return job.respond(outputs)
        result = NATIVE.finish(job, outputs)
        values = sum(A.size for A in result.arrays.values())
        if not self.json_pool.takes_answer(values * JSON_VALUE_BYTES):
            return NATIVE.encode(job, result)
        try:
            return codecs.encode_response(result, JSON, partial(self.json_pool.dumps, deadline=deadline))
        except TimeoutError:
            raise self.scheduler.timeout(job.verb) from None


def _settle(future: asyncio.Future[Response], response: Response) -> None:
    if not future.done():  # done: the ASGI request was cancelled (client gone) meanwhile
        future.set_result(response)
