"""uvicorn's httptools protocol, serving the inference POSTs without the ASGI request cycle.

`python -m service` runs uvicorn with this protocol (`service.fastpath.compat` checks it can). For every other
request this is uvicorn's `HttpToolsProtocol` unchanged. For `POST /encode`, `/decode`,
`/reconstruct`, `/anomaly-score`, `/sample` and `/v2/models/{m}[/versions/{v}]/infer`
(`InferenceService.find`) with a JSON, `.npy` or binary-tensor body it skips what an ASGI
request costs (a scope dict, an asyncio task, receive/send events, the app's middleware): the body
chunks are collected as httptools parses them, the whole request goes to
`InferenceService.handle_raw` (the same core, API key check, limits, errors and metrics as the
ASGI routes), and the response is written to the socket when the core replies: for small bodies
at the end of the same event-loop turn, batched with the other requests parsed in it
(`service.batching`). On one core this took single-row JSON at 16 in flight from about 6,600 to
10,000 requests/s (docs/speed.md has the current table).

HTTP/1.1 semantics kept: keep-alive and `Connection: close`, HTTP/1.0, pipelining (a request that
arrives while a fast-path response is pending is queued with uvicorn's own pipeline and started
after it), the body size limit (as soon as Content-Length or the bytes read pass it: the header
checks' 401 / 406 / 415 if any, as on the ASGI path, else 413; then the rest of the body is read
and dropped before the close), repeated headers (the first counts, as in starlette), the server
and date headers, the access log (with the X-Forwarded-For client when uvicorn's proxy headers
apply), graceful shutdown (a connection with a response pending closes after it). Multipart
bodies, `Expect: 100-continue` and servers run with `limit_concurrency` take the ASGI path.

What holds under floods and slow clients, on every connection (fast path or not):
  - a new connection's request line and headers must arrive within HEADER_TIMEOUT_S, a body within
    BODY_TIMEOUT_S of its headers; a connection that stalls is closed and its buffer freed; an idle
    keep-alive connection closes after KEEPALIVE_TIMEOUT_S (uvicorn's timer);
  - past MAX_CONNECTIONS (default: RLIMIT_NOFILE less a reserve) a new connection closes the one
    idle longest, or is answered 503 and closed when none is idle, so idle sockets cannot take
    every descriptor from the health probes and the registry poller;
  - a refused body (413, 503, a header check's error) is read and dropped after its answer, so the
    client gets the answer instead of a reset; so is the rest of a body when an ASGI answer closes
    the connection before reading it (Try-it's 413, a 401 or 503 asked to close); at most
    DRAINS_AT_ONCE such bodies at once per process, the other connections are not read until
    their turn;
  - at most READ_TURN_BYTES of request bodies are read in one turn of the event loop
    (`service.readturns`): past it the connections reading bodies wait for the next turn;
  - headers over MAX_HEADER_BYTES or MAX_HEADERS fields are a 431, then the connection closes;
  - a client that reads nothing of its answer for WRITE_TIMEOUT_S is dropped;
  - an Upgrade on anything but GET is a 400 (the body would otherwise be lost to the upgrade);
  - on the fast path the API key, Accept, Content-Type and Content-Encoding are checked, and the
    request is admitted (`service.admission`: 503 + Retry-After past the memory budget or the
    queue) when the headers are complete, before any body byte is kept;
  - on shutdown an idle connection gets SHUTDOWN_GRACE_S to deliver a request already on its way
    (answered with `Connection: close`) before it closes, so no received request is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httptools
from starlette.responses import Response
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.admission import BINARY_WEIGHT, JSON_WEIGHT, RETRY_AFTER_S, Admission, Ticket
from service.codecs import JSON, NPY, error_response, media_type
from service.errors import BadRequest, HeadersTooLarge, LatentServeError, Overloaded, PayloadTooLarge
from service.inference import InferenceService, Verb
from service.oip import OCTET
from service.settings import Settings

LINGER_BYTES = 1 << 20  # of a refused body, read and dropped past the limit before closing anyway
_ADMISSION = "latentserve.admission"  # app_state's key for the Admission when the app is not ours
SHUTDOWN_GRACE_S = 0.5  # an idle connection's time to deliver a request already sent, on shutdown


class _Pending:
    """Stands in for uvicorn's request cycle while a fast-path response is pending: uvicorn's
    `on_headers_complete` then queues the next request in its pipeline instead of starting it
    (it replaces this placeholder with the new request's cycle at once)."""

    response_complete = False


class _LingeringClose:
    """The transport as an ASGI request cycle sees it: its `close` goes through the protocol, which
    first drops the rest of a body still arriving (`LatentServeProtocol._close_after_body`)."""

    def __init__(self, protocol: LatentServeProtocol, cycle: Any) -> None:
        self.protocol = protocol
        self.cycle = cycle
        self.transport = protocol.transport

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.protocol._close_after_body(self.cycle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def find_service(app: Any) -> tuple[InferenceService | None, bool, ProxyHeadersMiddleware | None]:
    """The app's InferenceService, whether the app runs the fast path, and uvicorn's proxy-headers
    wrapper when there is one, by unwrapping uvicorn's middleware."""
    proxy = None
    for _ in range(8):
        if isinstance(app, ProxyHeadersMiddleware):
            proxy = app
        service = getattr(getattr(app, "state", None), "service", None)
        if isinstance(service, InferenceService):
            return service, getattr(app, "fast_path", None) is not None, proxy
        app = getattr(app, "app", None)
        if app is None:
            break
    return None, False, proxy


class LatentServeProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection; the inference POSTs go to the core directly (see the module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        service, fast, self.proxy = find_service(self.app)
        self.service = service if fast and config.limit_concurrency is None else None
        self.max_body = service.settings.max_body_bytes if service is not None else 0
        self.limits = service.settings if service is not None else Settings()
        if service is not None:
            self.admission = service.admission
        else:  # not our app: one Admission for the server's connections all the same
            if _ADMISSION not in app_state:
                app_state[_ADMISSION] = Admission(self.limits)
            self.admission = app_state[_ADMISSION]
        self.fast_ticket: Ticket | None = None  # the admitted fast-path request being read
        self.head_bytes = 0  # bytes received while a request line and headers are being read
        self.reading_head = True
        self.timer: asyncio.TimerHandle | None = None  # the header or body deadline
        self.write_timer: asyncio.TimerHandle | None = None
        self.draining = False  # shutdown began: answer what arrives with Connection: close
        self.refused_upgrade = False
        # the request being read on the fast path (None: uvicorn's own path has it)
        self.fast_verb: Verb | None = None
        self.fast_query = ""
        self.fast_params: dict[str, str] = {}  # the path's parameters (/v2: model, version)
        self.fast_chunks: list[bytes] = []
        self.fast_size = 0
        self.fast_limit = self.max_body  # of this body: smaller for JSON (MAX_JSON_BODY_BYTES)
        self.fast_keep_alive = True
        self.fast_pending = 0  # fast-path responses not yet written on this connection
        self.close_after = False
        self.lingering = False  # a refused body is being read and dropped before the close
        self.linger_keep_alive = False  # ... or before the connection carries on
        self.drain_slot = False  # this connection holds one of the DRAINS_AT_ONCE
        # an answer the client has not read (the socket's buffer is full): its admission, held
        # until the buffer drains, when the connection carries on (None: nothing parked)
        self.parked: Ticket | None = None
        self.parked_answer = False
        self.started_cycle: Any = None  # the ASGI request cycle uvicorn started last on this connection

    # ---- the connection and its timers -------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._touch()
        self._arm(self.limits.header_timeout_s, "header_timeout")
        if len(self.connections) > self.admission.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        """Past MAX_CONNECTIONS: close the connection idle the longest (no request on it, not a
        byte of one received), so descriptors stay for new clients, probes among them; when every
        connection is busy, answer this one 503 and close it."""
        victim: LatentServeProtocol | None = None
        for conn in self.admission.by_activity:  # the least recently active first
            if conn is not self and conn.is_idle():
                victim = conn
                break
        if victim is not None:
            self.admission.close("connection_cap_idle")
            victim._disarm()
            victim.transport.close()
            return
        self.admission.close("connection_cap")
        exc = Overloaded(
            f"{len(self.connections) - 1} connections open, none idle",
            "MAX_CONNECTIONS",
            RETRY_AFTER_S,
        )
        self._disarm()
        self.reading_head = False
        response = error_response(exc)
        parts: list[bytes | memoryview] = [STATUS_LINE[response.status_code]]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            parts += [name, b": ", value, b"\r\n"]
        parts += [b"connection: close\r\n\r\n", response.body]
        self.transport.write(b"".join(parts))
        self.transport.close()

    def is_idle(self) -> bool:
        """No request in progress on this connection and no byte of the next one received."""
        return (
            self.reading_head
            and self.head_bytes == 0
            and not self.fast_pending
            and self.fast_verb is None
            and not self.lingering
            and (self.cycle is None or self.cycle.response_complete)
            and not self.transport.is_closing()
        )

    def _touch(self) -> None:
        """Bytes received or an answer completed: this connection moves to the end of the
        activity order that MAX_CONNECTIONS closes idle connections from."""
        order = self.admission.by_activity
        order[self] = None
        order.move_to_end(self)

    def on_response_complete(self) -> None:
        self._touch()
        if self.lingering and self.fast_verb is None and not self.fast_pending:
            self.server_state.total_requests += 1  # an ASGI answer's body being dropped: then the close
            return
        super().on_response_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.started_cycle = cycle  # uvicorn tracks only the newest cycle; this one may be older
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        # a pipelined request started after an unread answer (or still queued) is not uvicorn's
        # `self.cycle`, which alone it marks disconnected: its answer would be written to a closed
        # transport (a traceback per request); mark them all
        for cycle in [self.started_cycle, *(c for c, _ in self.pipeline)]:
            if cycle is not None and cycle is not self.cycle and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self.admission.by_activity.pop(self, None)
        self._disarm()
        if self.write_timer is not None:
            self.write_timer.cancel()
        self._release_fast_ticket()
        self._release_parked()
        if self.lingering:
            self.lingering = False
            self._end_drain()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._touch()
        if self.reading_head:
            self.head_bytes += len(data)  # the callbacks reset it once the headers are complete
        super().data_received(data)
        if (
            self.reading_head
            and self.head_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse_head(f"the request line and headers pass {self.limits.max_header_bytes} bytes")
        elif self._reads_a_body():
            self.admission.reads.charge(self, len(data))  # READ_TURN_BYTES: one loop turn stays short

    def _reads_a_body(self) -> bool:
        """Reading a fast-path body, or draining a refused one in its turn (`service.readturns`)."""
        return (self.fast_verb is not None or (self.lingering and self.drain_slot)) and not (
            self.transport.is_closing()
        )

    def pause_turn(self) -> None:
        self.flow.pause_reading()

    def resume_turn(self) -> None:
        if self._reads_a_body():  # otherwise the answer, the drain queue or uvicorn resumes it
            self.flow.resume_reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.limits.write_timeout_s, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        if self.parked_answer:  # the client read the parked answer: release it, carry on
            self._release_parked()
            self.on_response_complete()

    def _release_parked(self) -> None:
        self.parked_answer = False
        if self.parked is not None:
            self.parked.release()
            self.parked = None

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, self._timed_out, reason)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timed_out(self, reason: str) -> None:
        """A request line, headers or body did not arrive in time: close, dropping what was read."""
        self.timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading (a pipelined body waits its turn): not the client
            self._arm(self.limits.body_timeout_s, reason)
            return
        self.admission.close(reason)
        self.fast_verb = None
        self.fast_chunks = _DISCARD
        self._release_fast_ticket()
        self.transport.close()

    def _write_timed_out(self) -> None:
        self.write_timer = None
        if not self.transport.is_closing():
            self.admission.close("write_timeout")
            self.transport.abort()  # close() would wait to flush what the client does not read

    def _release_fast_ticket(self) -> None:
        if self.fast_ticket is not None:
            self.fast_ticket.release()
            self.fast_ticket = None

    # ---- parser callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        # a fast-path answer written while this buffer is parsed arms the keep-alive timer; the
        # next request in the buffer is work in progress, and must not be cut off by it
        self._unset_keepalive_if_required()
        self.reading_head = True
        self._arm(self.limits.header_timeout_s, "header_timeout")

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.head_bytes = 0
        if self.transport.is_closing():  # pipelined behind an answer that closed: nobody to answer
            self.fast_verb = None
            self.fast_chunks = _DISCARD
            return
        if not self._head_fits():
            return
        self._arm(self.limits.body_timeout_s, "body_timeout")
        if self.parser.should_upgrade() and self.parser.get_method() != b"GET":
            self.refused_upgrade = True
            self._refuse_now(
                BadRequest(
                    "Upgrade is honoured on GET only; send this request without the Upgrade header",
                    field="upgrade",
                ),
                linger=False,
            )
            return
        verb = self._fast_verb()
        if verb is None and self._refuses_large_asgi_body():
            return
        if verb is None:
            if self.fast_pending:  # queue it behind the pending response (uvicorn's pipeline)
                self.cycle = _Pending()  # type: ignore[assignment]
            super().on_headers_complete()
            if self.cycle is not None and not isinstance(self.cycle.transport, _LingeringClose):
                self.cycle.transport = _LingeringClose(self, self.cycle)  # type: ignore[assignment]
                if self.draining:
                    self.cycle.keep_alive = False
            return
        self.fast_verb = verb
        self.fast_chunks = []
        self.fast_size = 0
        self.fast_limit = self.max_body
        self.fast_keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        header = self._header(b"content-length")
        declared = int(header) if header is not None and header.isascii() and header.isdigit() else None
        if declared is not None and declared > self.max_body:
            self._too_large(declared)
            return
        assert self.service is not None
        headers = self._headers()
        try:  # the API key, Accept, Content-Type and the admission, before a byte of body is kept
            _, kind = self.service.admit(verb, headers)
            self.fast_limit = self.service.body_limit(kind)
            if declared is not None and declared > self.fast_limit:
                raise self.service.too_large(kind, declared)  # a JSON body over MAX_JSON_BODY_BYTES
            weight = JSON_WEIGHT if kind == JSON else BINARY_WEIGHT
            self.fast_ticket = self.admission.enter(declared, weight)
        except LatentServeError as exc:
            # a header check's error keeps the connection (the body is read and dropped); a
            # request shed by the admission, or too large, closes it
            shed = isinstance(exc, (Overloaded, PayloadTooLarge))
            self._refuse_body(verb, exc, keep_alive=self.fast_keep_alive and not shed)

    def on_body(self, body: bytes) -> None:
        if self.fast_verb is None:
            if self.fast_chunks is not _DISCARD:
                super().on_body(body)
            elif self.lingering:  # the refused body: drop it, up to LINGER_BYTES over the limit
                self.fast_size += len(body)
                if self.fast_size > self.max_body + LINGER_BYTES:
                    self.transport.close()
            return
        self.fast_size += len(body)
        if self.fast_size > self.fast_limit:
            self._too_large(None)
            return
        ticket = self.fast_ticket
        if ticket is not None and self.fast_size > ticket.held // ticket.weight:  # no Content-Length
            try:
                ticket.grow(self.fast_size - ticket.held // ticket.weight)
            except LatentServeError as exc:
                self.fast_ticket = None  # grow released it
                self._refuse_body(self.fast_verb, exc, keep_alive=False)
                return
        self.fast_chunks.append(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self.reading_head = True
        self.head_bytes = 0
        verb = self.fast_verb
        if verb is None:
            if self.fast_chunks is not _DISCARD:
                super().on_message_complete()
            elif self.lingering:  # the refused body is read: now close, or carry on
                self.lingering = False
                self._end_drain()
                if self.linger_keep_alive and not self.close_after:
                    self.fast_chunks = []
                    self.on_response_complete()
                else:
                    self.transport.close()
            return
        self.fast_verb = None
        chunks, self.fast_chunks = self.fast_chunks, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.fast_pending += 1
        ticket, self.fast_ticket = self.fast_ticket, None  # the reply releases it
        reply = _Reply(self, self.fast_keep_alive, ticket=ticket)
        assert self.service is not None
        self.service.handle_raw(
            verb, self._headers(), self.fast_query, body, reply, self.fast_params, ticket=ticket
        )

    def _should_upgrade(self) -> bool:
        return not self.refused_upgrade and super()._should_upgrade()

    # ---- connection lifecycle ---------------------------------------------------------------------
    def shutdown(self) -> None:
        self.draining = True
        if self.fast_pending or self.fast_verb is not None:
            self.close_after = True  # finish the pending response, then close
            return
        if self.cycle is None or self.cycle.response_complete:
            # idle, as far as we know: a request may already be in the socket's buffer, and closing
            # now would reset it; give it a moment to arrive (it is answered, then the close)
            self.close_after = True
            self.loop.call_later(SHUTDOWN_GRACE_S, self._close_if_idle)
            return
        super().shutdown()

    def _close_if_idle(self) -> None:
        busy = self.fast_pending or self.fast_verb is not None or self.head_bytes
        if not busy and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()

    # ---- helpers ----------------------------------------------------------------------------------
    def _fast_verb(self) -> Verb | None:
        if (
            self.service is None
            or self.fast_pending  # keep responses in order: queue behind the pending one
            or (self.cycle is not None and not self.cycle.response_complete)
            or self.parser.get_method() != b"POST"
            or self.expect_100_continue
            or self.parser.should_upgrade()
        ):
            return None
        url = httptools.parse_url(self.url)
        found = self.service.find(url.path.decode("latin-1"))
        if found is None:
            return None
        ctype = media_type(self._header(b"content-type")) or JSON
        if ctype not in (JSON, NPY, OCTET) and not ctype.endswith("+json"):
            return None  # multipart (read by starlette's parser) or an unsupported type: ASGI answers
        self.fast_query = (url.query or b"").decode("latin-1")
        verb, self.fast_params = found
        return verb

    def _refuses_large_asgi_body(self) -> bool:
        """A POST to an inference route that the ASGI path reads (multipart), declaring a body over
        MAX_BODY_BYTES: answered here (a header check's error, else 413) and its body dropped
        before the close, as on the fast path; the ASGI path's answer closed the connection with
        the body unread, and the client saw a reset instead of the 413."""
        if self.service is None or self.fast_pending or self.parser.get_method() != b"POST":
            return False
        header = self._header(b"content-length")
        if header is None or not (header.isascii() and header.isdigit()) or int(header) <= self.max_body:
            return False
        try:
            found = self.service.find(httptools.parse_url(self.url).path.decode("latin-1"))
        except LatentServeError:
            return False
        if found is None:
            return False
        self.fast_verb = found[0]
        self._too_large(int(header))
        return True

    def _header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def _headers(self) -> dict[str, str]:
        """Lower-case names to values; of repeated headers the first counts, as in starlette."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        return out

    def _too_large(self, declared: int | None) -> None:
        """Answer now (a header check's error, else 413, with `Connection: close`), then read and drop
        the rest of the body before closing: closing with unread data would reset the connection,
        and the client could lose the answer. A body LINGER_BYTES over the limit is cut off."""
        verb = self.fast_verb
        assert verb is not None and self.service is not None
        self._release_fast_ticket()
        self._answer_and_drop(self.service.refuse_body(verb, self._headers(), declared))

    def _refuse_body(self, verb: Verb, exc: LatentServeError, keep_alive: bool) -> None:
        """Answer `exc` (a header check's error, or the admission's 503) now, counted, and drop
        the body as `_too_large` does; with `keep_alive` the connection then carries on."""
        assert self.service is not None
        self._answer_and_drop(self.service.refused(verb, exc), keep_alive)

    def _answer_and_drop(self, response: Response, keep_alive: bool = False) -> None:
        self.fast_verb = None
        self.fast_chunks = _DISCARD
        self.lingering = True
        self.linger_keep_alive = keep_alive
        self.fast_pending += 1
        _Reply(self, keep_alive=keep_alive, linger=True)(response)
        self._start_drain()

    def _close_after_body(self, cycle: Any) -> None:
        """An ASGI answer closes the connection: if its request's body is still arriving (a refusal
        that did not read it: Try-it's 413, a shed call's 503), read and drop the rest first, as a
        refused body on the fast path, so the client reads the answer instead of a reset."""
        if cycle is not self.cycle or not cycle.more_body or self.lingering or self.transport.is_closing():
            self.transport.close()
            return
        self.fast_chunks = _DISCARD
        self.fast_size = 0
        self.lingering = True
        self.linger_keep_alive = False
        self._start_drain()
        if self.drain_slot:
            self.flow.resume_reading()  # uvicorn paused it when the unread body passed its buffer

    def _start_drain(self) -> None:
        """Read and drop a refused body now if fewer than DRAINS_AT_ONCE others are, else stop
        reading this connection until one is done: 32 refused 16 MiB bodies read at once took
        both cores (the senders' copies and ours) from the health probes."""
        a = self.admission
        if a.draining < a.drains_at_once:
            a.draining += 1
            self.drain_slot = True
        elif not self.transport.is_closing():
            self.flow.pause_reading()  # its body timer waits too (`_timed_out`: we paused, not the client)
            a.drain_queue.append(self)

    def _end_drain(self) -> None:
        a = self.admission
        if not self.drain_slot:
            with contextlib.suppress(ValueError):
                a.drain_queue.remove(self)
            return
        self.drain_slot = False
        a.draining -= 1
        while a.drain_queue:
            waiting = a.drain_queue.popleft()
            if waiting.lingering and not waiting.transport.is_closing():
                a.draining += 1
                waiting.drain_slot = True
                waiting.flow.resume_reading()
                return

    def _head_fits(self) -> bool:
        """The header caps (431): fields and bytes; answered and closed when over."""
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            self._refuse_head(f"{len(self.headers)} header fields are more than {limits.max_headers}")
            return False
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > limits.max_header_bytes:
            self._refuse_head(f"the request line and headers pass {limits.max_header_bytes} bytes")
            return False
        return True

    def _refuse_head(self, why: str) -> None:
        self.admission.close("header_too_large")
        exc = HeadersTooLarge(
            f"headers: {why} (LATENTSERVE_MAX_HEADERS / LATENTSERVE_MAX_HEADER_BYTES)", field="headers"
        )
        self._refuse_now(exc, linger=False)

    def _refuse_now(self, exc: LatentServeError, linger: bool) -> None:
        """Answer `exc` with `Connection: close` before reading further, and close."""
        self._disarm()
        self.reading_head = False
        self.fast_verb = None
        self.fast_chunks = _DISCARD
        self.lingering = linger
        self.fast_pending += 1
        _Reply(self, keep_alive=False, linger=linger)(error_response(exc))

    def client_for_log(self) -> str:
        """host:port of the client as uvicorn's access log shows it: with proxy headers on and the
        peer trusted, the address X-Forwarded-For names (uvicorn's ProxyHeadersMiddleware rule)."""
        client = self.client
        proxy = self.proxy
        if proxy is not None and client is not None and client[0] in proxy.trusted_hosts:
            forwarded = [value for name, value in self.headers if name == b"x-forwarded-for"]
            if forwarded:
                host, port = proxy.trusted_hosts.get_trusted_client_address(
                    b", ".join(forwarded).decode("latin-1")
                )
                if host:
                    client = (host, port)
        return "%s:%d" % client if client else ""  # noqa: UP031 (uvicorn's format)


_DISCARD: list[bytes] = []  # marks a connection whose request was refused mid-body: drop the rest


class _Reply:
    """Writes one fast-path response on its connection, then lets uvicorn carry on (keep-alive
    timer, the next pipelined request) or closes the connection."""

    __slots__ = ("keep_alive", "linger", "protocol", "target", "ticket", "version")

    def __init__(
        self,
        protocol: LatentServeProtocol,
        keep_alive: bool,
        linger: bool = False,
        ticket: Ticket | None = None,
    ) -> None:
        self.protocol = protocol
        self.keep_alive = keep_alive
        self.linger = linger  # keep the connection open until the refused body is read
        self.ticket = ticket  # the admission of this request, released with the answer
        self.target = protocol.url.decode("latin-1")
        self.version = protocol.parser.get_http_version()

    def __call__(self, response: Response) -> None:
        p = self.protocol
        p.fast_pending -= 1
        transport = p.transport
        if transport.is_closing():  # the client left meanwhile
            self._release()
            return
        keep_alive = self.keep_alive and not p.close_after
        parts: list[bytes | memoryview] = [STATUS_LINE[response.status_code]]
        for name, value in p.server_state.default_headers:
            parts += [name, b": ", value, b"\r\n"]
        for name, value in response.raw_headers:
            parts += [name, b": ", value, b"\r\n"]
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts += [b"\r\n", response.body]
        transport.write(b"".join(parts))
        if p.access_log:
            p.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                p.client_for_log(),
                "POST",
                self.target,
                self.version,
                response.status_code,
            )
        if self.linger:
            self._release()
            return  # on_message_complete closes once the body is read
        if not keep_alive:
            self._release()
            transport.close()
        elif p.flow.write_paused:
            # the client is not reading (the socket's buffer passed its high-water mark): the
            # answer keeps its admission and the connection reads nothing more until the buffer
            # drains (`resume_writing`), so unread pipelined answers cannot pile up in memory
            p.parked, self.ticket = self.ticket, None
            p.parked_answer = True
            p.flow.pause_reading()
            return
        else:
            self._release()
        p.on_response_complete()  # counts the request; re-arms keep-alive or starts the next one

    def _release(self) -> None:
        if self.ticket is not None:
            self.ticket.release()
            self.ticket = None
