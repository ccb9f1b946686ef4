"""uvicorn's httptools protocol, serving the inference POSTs without the ASGI request cycle.

`python -m service` runs uvicorn with `http="service.http:LatentServeProtocol"`. For every other
request this is uvicorn's `HttpToolsProtocol` unchanged. For `POST /encode`, `/decode`,
`/reconstruct`, `/anomaly-score` and `/sample` with a JSON or `.npy` body it skips what an ASGI
request costs (a scope dict, an asyncio task, receive/send events, the app's middleware): the body
chunks are collected as httptools parses them, the whole request goes to
`InferenceService.handle_raw` (the same core, API key check, limits, errors and metrics as the
ASGI routes), and the response is written to the socket when the core replies: for small bodies
at the end of the same event-loop turn, batched with the other requests parsed in it
(`service.batching`). Measured on one core: single-row JSON at 16 in flight 6,600 -> see the
README's Speed table for the current figures.

HTTP/1.1 semantics kept: keep-alive and `Connection: close`, HTTP/1.0, pipelining (a request that
arrives while a fast-path response is pending is queued with uvicorn's own pipeline and started
after it), the body size limit (413 and close, as soon as Content-Length or the bytes read pass
it), the server and date headers, the access log, graceful shutdown (a connection with a response
pending closes after it). Multipart bodies, `Expect: 100-continue`, upgrades and servers run with
`limit_concurrency` take the ASGI path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from starlette.responses import Response
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.codecs import error_response
from service.errors import PayloadTooLarge
from service.inference import VERBS, InferenceService, Verb

FAST_VERBS: dict[bytes, Verb] = {f"/{name}".encode(): verb for name, verb in VERBS.items()}
_READS_RAW = (b"application/json", b"application/x-npy")  # multipart goes to the ASGI path


class _Pending:
    """Stands in for uvicorn's request cycle while a fast-path response is pending: uvicorn's
    `on_headers_complete` then queues the next request in its pipeline instead of starting it
    (it replaces this placeholder with the new request's cycle at once)."""

    response_complete = False


def find_service(app: Any) -> InferenceService | None:
    """The app's InferenceService when it runs the fast path, through uvicorn's wrappers."""
    for _ in range(8):
        fast = getattr(app, "fast_path", None)
        if fast is not None:
            service: InferenceService = fast.service
            return service
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


class LatentServeProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        service = find_service(self.app) if config.limit_concurrency is None else None
        self.service = service
        self.max_body = service.settings.max_body_bytes if service is not None else 0
        # the request being read on the fast path (None: uvicorn's own path has it)
        self.fast_verb: Verb | None = None
        self.fast_query = ""
        self.fast_chunks: list[bytes] = []
        self.fast_size = 0
        self.fast_keep_alive = True
        self.fast_pending = 0  # fast-path responses not yet written on this connection
        self.close_after = False

    # ---- parser callbacks -------------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        verb = self._fast_verb()
        if verb is None:
            if self.fast_pending:  # queue it behind the pending response (uvicorn's pipeline)
                self.cycle = _Pending()  # type: ignore[assignment]
            super().on_headers_complete()
            return
        self.fast_verb = verb
        self.fast_chunks = []
        self.fast_size = 0
        self.fast_keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        declared = self._header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            self._too_large(f"body: {declared} bytes is over the limit of {self.max_body} bytes")

    def on_body(self, body: bytes) -> None:
        if self.fast_verb is None:
            if self.fast_chunks is not _DISCARD:
                super().on_body(body)
            return
        self.fast_size += len(body)
        if self.fast_size > self.max_body:
            self._too_large(f"body: more than the limit of {self.max_body} bytes")
            return
        self.fast_chunks.append(body)

    def on_message_complete(self) -> None:
        verb = self.fast_verb
        if verb is None:
            if self.fast_chunks is not _DISCARD:
                super().on_message_complete()
            return
        self.fast_verb = None
        chunks, self.fast_chunks = self.fast_chunks, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in self.headers}
        self.fast_pending += 1
        reply = _Reply(self, self.fast_keep_alive)
        assert self.service is not None
        self.service.handle_raw(verb, headers, self.fast_query, body, reply)

    # ---- connection lifecycle ---------------------------------------------------------------------
    def shutdown(self) -> None:
        if self.fast_pending or self.fast_verb is not None:
            self.close_after = True  # finish the pending response, then close
            return
        super().shutdown()

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
        verb = FAST_VERBS.get(url.path)
        if verb is None:
            return None
        ctype = (self._header(b"content-type") or "application/json").split(";", 1)[0].strip().lower()
        if ctype.encode() not in _READS_RAW and not ctype.endswith("+json"):
            return None  # multipart (read by starlette's parser) or an unsupported type: ASGI answers
        self.fast_query = (url.query or b"").decode("latin-1")
        return verb

    def _header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def _too_large(self, message: str) -> None:
        """413 now and close: the rest of the body is not read."""
        exc = PayloadTooLarge(message, field="body", details={"limit": self.max_body})
        self.fast_verb = None
        self.fast_chunks = _DISCARD
        self.fast_pending += 1
        _Reply(self, keep_alive=False)(error_response(exc))


_DISCARD: list[bytes] = []  # marks a connection whose request was refused mid-body: drop the rest


class _Reply:
    """Writes one fast-path response on its connection, then lets uvicorn carry on (keep-alive
    timer, the next pipelined request) or closes the connection."""

    __slots__ = ("keep_alive", "protocol", "target", "version")

    def __init__(self, protocol: LatentServeProtocol, keep_alive: bool) -> None:
        self.protocol = protocol
        self.keep_alive = keep_alive
        self.target = protocol.url.decode("latin-1")
        self.version = protocol.parser.get_http_version()

    def __call__(self, response: Response) -> None:
        p = self.protocol
        p.fast_pending -= 1
        transport = p.transport
        if transport.is_closing():  # the client left meanwhile
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
            client = "%s:%d" % p.client if p.client else ""  # noqa: UP031 (uvicorn's format)
            p.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', client, "POST", self.target, self.version, response.status_code
            )
        if not keep_alive:
            transport.close()
        p.on_response_complete()  # counts the request; re-arms keep-alive or starts the next one
