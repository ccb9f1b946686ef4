"""uvicorn's httptools protocol for `python -m service`: every hook delegates to the HTTP layer.

`LatentServeProtocol` subclasses uvicorn's private `HttpToolsProtocol`, and this is the one module
that touches uvicorn's internals (`service.fastpath.compat` checks each at start-up). Each override
calls uvicorn's own and one of the HTTP layer's parts (`service.http`):
  - the server's `ConnectionTable` (eviction past MAX_CONNECTIONS, drain slots, read turns, close
    counts), one per uvicorn server;
  - the connection's `Guard` (header, body and write timeouts; header caps);
  - the connection's `BodyShortcut`, which reads the inference POSTs' bodies from the parser and
    hands them to the core through its `Door`, without an ASGI request cycle.
Everything else is uvicorn's `HttpToolsProtocol` unchanged. The protocol implements the `Wire` the
HTTP layer writes through, in uvicorn's terms (its transport, flow control, pipeline and log).

HTTP/1.1 semantics kept: keep-alive and `Connection: close`, HTTP/1.0, pipelining (a request that
arrives while a shortcut answer is pending is queued in uvicorn's pipeline and started after it),
repeated headers (the first counts, as in starlette), the server and date headers, the access log
(with the X-Forwarded-For client when uvicorn's proxy headers apply), graceful shutdown (a
connection with an answer pending closes after it; an idle one gets SHUTDOWN_GRACE_S to deliver a
request already on its way, answered with `Connection: close`, so no received request is reset),
and an Upgrade on anything but GET is a 400 (the body would otherwise be lost to the upgrade).
Servers run with `limit_concurrency` take uvicorn's path for every request.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any, cast

from starlette.responses import Response
from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_local_addr, get_remote_addr
from uvicorn.server import ServerState

from service.admission import RETRY_AFTER_S
from service.assembly import load_settings
from service.codecs import error_response
from service.errors import BadRequest, LatentServeError, Overloaded
from service.http.connections import ConnectionTable
from service.http.door import Door
from service.http.form import FormUpload
from service.http.guard import Guard
from service.http.shortcut import BodyShortcut, Head
from service.inference import Dataplane, Refused
from service.settings import Settings
from service.ui.tryit import UPLOAD, Upload

SHUTDOWN_GRACE_S = 0.5  # an idle connection's time to deliver a request already sent, on shutdown
_PARTS: weakref.WeakKeyDictionary[ServerState, ServerParts] = weakref.WeakKeyDictionary()


class _Pending:
    """Stands in for uvicorn's request cycle while a shortcut answer is pending: uvicorn's
    `on_headers_complete` then queues the next request in its pipeline instead of starting it
    (it replaces this placeholder with the new request's cycle at once)."""

    response_complete = False


class _LingeringClose:
    """The transport as an ASGI request cycle sees it: its `close` goes through the protocol, which
    first drops the rest of a body still arriving (`LatentServeProtocol.close_after_body`)."""

    def __init__(self, protocol: UvicornWire, cycle: Any) -> None:
        self.protocol = protocol
        self.cycle = cycle
        self.transport = protocol.transport

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.protocol.close_after_body(self.cycle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _AddressesLater:
    """The transport as uvicorn's `connection_made` sees it: without its addresses, which the
    protocol reads when a request needs them (`LatentServeProtocol.addresses`). Reading them costs
    uvloop a socket object, 8.5 us a connection and more for one the client already reset, which
    an aborted upload never needs. uvicorn's flow control keeps this view for its pause and resume,
    which it passes on."""

    __slots__ = ("transport",)

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in ("socket", "peername", "sockname"):
            return default
        return self.transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()


def find_service(app: Any) -> tuple[Dataplane | None, bool, ProxyHeadersMiddleware | None]:
    """The app's Dataplane, whether the app runs the fast path, and uvicorn's proxy-headers
    wrapper when there is one, by unwrapping uvicorn's middleware."""
    proxy = None
    for _ in range(8):
        if isinstance(app, ProxyHeadersMiddleware):
            proxy = app
        service = getattr(getattr(app, "state", None), "service", None)
        if isinstance(service, Dataplane):
            return service, getattr(app, "fast_path", None) is not None, proxy
        app = getattr(app, "app", None)
        if app is None:
            break
    return None, False, proxy


@dataclass(frozen=True, slots=True)
class ServerParts:
    """What every connection of one uvicorn server shares, found by its first connection: the
    connection table, the settings, the door (None: uvicorn's path for every request) and uvicorn's
    proxy-headers wrapper."""

    table: ConnectionTable
    settings: Settings
    door: Door | None
    proxy: ProxyHeadersMiddleware | None


def parts_of(state: ServerState, app: Any, config: Config) -> ServerParts:
    """The parts of the server whose state is `state` (one per server; a connection costs a lookup)."""
    parts = _PARTS.get(state)
    if parts is None:
        service, fast, proxy = find_service(app)
        settings = service.settings if service is not None else load_settings()
        table = ConnectionTable(settings)
        if service is not None:
            table.report_to(service.metrics.collectors)
        door = Door(service) if service is not None and fast and config.limit_concurrency is None else None
        parts = _PARTS[state] = ServerParts(table, settings, door, proxy)
    return parts


class UvicornWire(HttpToolsProtocol):
    """The connection as the HTTP layer sees it (`Wire`, the table's `Member`, the guard's `Guarded`,
    the read turns' `Reader`), in uvicorn's terms: its transport, flow control, cycle and log.
    It overrides nothing of uvicorn's; `LatentServeProtocol` below holds the hooks."""

    table: ConnectionTable
    guard: Guard
    body: BodyShortcut
    form: FormUpload
    proxy: ProxyHeadersMiddleware | None
    addressed: bool  # self.server and self.client are read (`addresses`)

    def is_idle(self) -> bool:
        """No request in progress on this connection and no byte of the next one received."""
        idle = self.guard.idle() and self.body.idle() and not self.form.reading
        return idle and self._cycle_done() and not self.closing()

    def evict(self) -> None:
        self.guard.disarm()
        self.transport.close()

    def drains(self) -> bool:
        return self.body.lingering and not self.closing()

    def timed_out(self) -> None:
        self.body.abandon()
        self.transport.close()

    def closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()  # close() would wait to flush what the client does not read

    def pause_reading(self) -> None:
        self.flow.pause_reading()

    def resume_reading(self) -> None:
        self.flow.resume_reading()

    def read_paused(self) -> bool:
        return self.flow.read_paused

    def write_paused(self) -> bool:
        return self.flow.write_paused

    def pause_turn(self) -> None:
        self.flow.pause_reading()

    def resume_turn(self) -> None:
        if self.body.reading() or self.form.reading:  # else the answer, the drain queue or uvicorn does
            self.flow.resume_reading()

    def carry_on(self) -> None:
        self.on_response_complete()

    def write_response(self, response: Response, close: bool) -> None:
        parts: list[bytes | memoryview] = [STATUS_LINE[response.status_code]]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            parts += [name, b": ", value, b"\r\n"]
        if close:
            parts.append(b"connection: close\r\n")
        parts += [b"\r\n", response.body]
        self.transport.write(b"".join(parts))

    def log_access(self, target: str, version: str, status: int) -> None:
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', self.client_for_log(), "POST", target, version, status
            )

    def addresses(self) -> None:
        """The connection's server and client addresses, read once, where uvicorn reads them at
        `connection_made` (see `_AddressesLater`)."""
        if not self.addressed:
            self.addressed = True
            self.server, self.client = get_local_addr(self.transport), get_remote_addr(self.transport)

    def client_for_log(self) -> str:
        """host:port of the client as uvicorn's access log shows it: with proxy headers on and the
        peer trusted, the address X-Forwarded-For names (uvicorn's ProxyHeadersMiddleware rule)."""
        self.addresses()
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

    def close_after_body(self, cycle: Any) -> None:
        """An ASGI answer closes the connection: if its request's body is still arriving (a refusal
        that did not read it: Try-it's 413, a shed call's 503), drop the rest first, as a refused
        body on the shortcut, so the client reads the answer instead of a reset."""
        if cycle is not self.cycle or not cycle.more_body or self.body.lingering or self.closing():
            self.transport.close()
        else:
            self.body.drop_rest()

    def _cycle_done(self) -> bool:
        return self.cycle is None or self.cycle.response_complete


class LatentServeProtocol(UvicornWire):
    """One HTTP/1.1 connection; each uvicorn hook delegates to the HTTP layer (see the module doc)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        parts = parts_of(server_state, self.app, config)
        self.table, self.proxy, door = parts.table, parts.proxy, parts.door
        self.guard = Guard(parts.settings, self.table, self.loop, self)
        self.body = BodyShortcut(self, door, self.table, parts.settings.max_body_bytes)
        self.form = FormUpload(door, self._start_form_cycle)  # Try-it's upload, read before its cycle
        self.draining = False  # shutdown began: answer what arrives with Connection: close
        self.refused_upgrade = False
        self.started_cycle: Any = None  # the ASGI request cycle uvicorn started last on this connection
        self.addressed = False

    # ---- uvicorn's hooks, one override each ---------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.logger.isEnabledFor(TRACE_LOG_LEVEL):  # uvicorn's trace lines name the client
            super().connection_made(transport)
            self.addressed = True
        else:
            super().connection_made(cast(asyncio.Transport, _AddressesLater(transport)))
            self.transport = transport  # what uvicorn's cycles write to
        self.table.touch(self)
        self.guard.expect_head()
        if self.table.full() and not self.table.make_room(self):
            self._refuse_connection()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disconnect_cycles()
        self.table.forget(self)
        self.guard.stop()
        self.body.lost()
        self.form.lost()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.table.touch(self)
        self.guard.received(len(data))
        super().data_received(data)
        overflow = None if self.transport.is_closing() else self.guard.head_overflow()
        if overflow is not None:
            self._refuse_now(overflow)
        elif self.body.reading() or self.form.reading:
            self.table.reads.charge(self, len(data))  # READ_TURN_BYTES: one loop turn stays short

    def pause_writing(self) -> None:
        super().pause_writing()
        self.guard.write_blocked()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.guard.write_unblocked()
        if self.body.unpark():  # the client read the parked answer: carry on
            self.on_response_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # a shortcut answer written while this buffer is parsed arms the keep-alive timer; the
        # next request in the buffer is work in progress, and must not be cut off by it
        self._unset_keepalive_if_required()
        self.guard.expect_head()

    def on_headers_complete(self) -> None:
        self.guard.head_read()
        if self.transport.is_closing():  # pipelined behind an answer that closed: nobody to answer
            self.body.abandon()
            return
        refusal = self.guard.check_head(self.url, self.headers) or self._upgrade_refused()
        if refusal is not None:
            self._refuse_now(refusal)
            return
        self.guard.expect_body()
        head = self._head()
        if self.body.begin(head):
            return
        if self.body.busy() or not self.form.begin(head):
            self._start_cycle()

    def on_body(self, body: bytes) -> None:
        if not self.body.on_body(body) and not self.form.on_body(body):
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.guard.message_read()
        if self.body.on_message_complete():
            return
        self.form.complete()  # a whole Try-it upload: its cycle starts now
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.table.touch(self)
        if self.body.lingering and self.body.verb is None and not self.body.pending:
            self.server_state.total_requests += 1  # an ASGI answer's body being dropped: then the close
            return
        super().on_response_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.started_cycle = cycle  # uvicorn tracks only the newest cycle; this one may be older
        super()._start_asgi_task(cycle, app)

    def _should_upgrade(self) -> bool:
        return not self.refused_upgrade and super()._should_upgrade()

    def shutdown(self) -> None:
        self.draining = True
        if self.form.reading:
            return  # its cycle, started once the upload is whole, answers with Connection: close
        if self.body.pending or self.body.verb is not None:
            self.body.close_after = True  # finish the pending answer, then close
        elif self._cycle_done():
            # idle, as far as we know: a request may already be in the socket's buffer, and closing
            # now would reset it; give it a moment to arrive (it is answered, then the close)
            self.body.close_after = True
            self.loop.call_later(SHUTDOWN_GRACE_S, self._close_if_idle)
        else:
            super().shutdown()

    # ---- helpers -----------------------------------------------------------------------------------
    def _head(self) -> Head:
        parser = self.parser
        plain = self._cycle_done() and not self.expect_100_continue and not parser.should_upgrade()
        return Head(
            parser.get_method(),
            self.url,
            self.headers,
            parser.get_http_version(),
            parser.should_keep_alive(),
            plain,
        )

    def _upgrade_refused(self) -> LatentServeError | None:
        if not self.parser.should_upgrade() or self.parser.get_method() == b"GET":
            return None
        self.refused_upgrade = True
        return BadRequest(
            "Upgrade is honoured on GET only; send this request without the Upgrade header", field="upgrade"
        )

    def _refuse_now(self, exc: LatentServeError) -> None:
        """Answer `exc` with `Connection: close` before reading further, and close."""
        self.guard.stop_reading()
        self.body.refuse_now(
            exc, Head(b"", self.url, self.headers, self.parser.get_http_version(), False, False)
        )

    def _refuse_connection(self) -> None:
        """Past MAX_CONNECTIONS with every connection busy: 503, then the close."""
        exc = Overloaded(
            f"{self.table.open - 1} connections open, none idle", "MAX_CONNECTIONS", RETRY_AFTER_S
        )
        self.guard.stop_reading()
        self.write_response(error_response(exc), close=True)
        self.transport.close()

    def _start_cycle(self) -> None:
        """uvicorn's path: its ASGI cycle, queued behind a pending shortcut answer, closing through us."""
        if self.body.busy():  # queue it behind the pending or parked answer (uvicorn's pipeline)
            self.cycle = _Pending()  # type: ignore[assignment]
        self.addresses()
        self.scope["server"], self.scope["client"] = self.server, self.client
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, _LingeringClose):
            self.cycle.transport = _LingeringClose(self, self.cycle)  # type: ignore[assignment]
            if self.draining:
                self.cycle.keep_alive = False

    def _start_form_cycle(self, upload: Upload | Refused) -> None:
        """The Try-it request's cycle, with its upload (read whole) or its refusal in the scope."""
        cast(dict[str, Any], self.scope)[UPLOAD] = upload
        self._start_cycle()

    def _disconnect_cycles(self) -> None:
        # a pipelined request started after an unread answer (or still queued) is not uvicorn's
        # `self.cycle`, which alone it marks disconnected: its answer would be written to a closed
        # transport (a traceback per request); mark them all
        for cycle in [self.started_cycle, *(c for c, _ in self.pipeline)]:
            if cycle is not None and cycle is not self.cycle and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def _close_if_idle(self) -> None:
        body = self.body  # a refused body still being dropped closes once read: closing now resets it
        busy = body.pending or body.verb is not None or body.lingering or self.guard.head_bytes
        busy = busy or self.form.reading
        if not busy and self._cycle_done():
            self.transport.close()
