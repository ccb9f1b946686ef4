"""uvicorn's httptools protocol, serving the inference POSTs without the ASGI request cycle.

`python -m service` runs uvicorn with `http="service.http:LatentServeProtocol"`. For every other
request this is uvicorn's `HttpToolsProtocol` unchanged. For `POST /encode`, `/decode`,
`/reconstruct`, `/anomaly-score`, `/sample` and `/v2/models/{m}[/versions/{v}]/infer`
(`InferenceService.find`) with a JSON, `.npy` or binary-tensor body it skips what an ASGI
request costs (a scope dict, an asyncio task, receive/send events, the app's middleware): the body
chunks are collected as httptools parses them, the whole request goes to
`InferenceService.handle_raw` (the same core, API key check, limits, errors and metrics as the
ASGI routes), and the response is written to the socket when the core replies: for small bodies
at the end of the same event-loop turn, batched with the other requests parsed in it
(`service.batching`). On one core this took single-row JSON at 16 in flight from about 6,600 to
10,000 requests/s (the README's Speed section has the current table).

HTTP/1.1 semantics kept: keep-alive and `Connection: close`, HTTP/1.0, pipelining (a request that
arrives while a fast-path response is pending is queued with uvicorn's own pipeline and started
after it), the body size limit (as soon as Content-Length or the bytes read pass it: the header
checks' 401 / 406 / 415 if any, as on the ASGI path, else 413; then the rest of the body is read
and dropped before the close), repeated headers (the first counts, as in starlette), the server
and date headers, the access log (with the X-Forwarded-For client when uvicorn's proxy headers
apply), graceful shutdown (a connection with a response pending closes after it). Multipart
bodies, `Expect: 100-continue`, upgrades and servers run with `limit_concurrency` take the ASGI
path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from starlette.responses import Response
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.codecs import JSON, NPY, media_type
from service.inference import InferenceService, Verb
from service.oip import OCTET

LINGER_BYTES = 1 << 20  # of a refused body, read and dropped past the limit before closing anyway


class _Pending:
    """Stands in for uvicorn's request cycle while a fast-path response is pending: uvicorn's
    `on_headers_complete` then queues the next request in its pipeline instead of starting it
    (it replaces this placeholder with the new request's cycle at once)."""

    response_complete = False


def find_service(app: Any) -> tuple[InferenceService | None, ProxyHeadersMiddleware | None]:
    """The app's InferenceService when it runs the fast path, and uvicorn's proxy-headers wrapper
    when there is one, by unwrapping uvicorn's middleware."""
    proxy = None
    for _ in range(8):
        if isinstance(app, ProxyHeadersMiddleware):
            proxy = app
        fast = getattr(app, "fast_path", None)
        if fast is not None:
            service: InferenceService = fast.service
            return service, proxy
        app = getattr(app, "app", None)
        if app is None:
            break
    return None, proxy


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
        service, self.proxy = find_service(self.app)
        self.service = service if config.limit_concurrency is None else None
        self.max_body = service.settings.max_body_bytes if service is not None else 0
        # the request being read on the fast path (None: uvicorn's own path has it)
        self.fast_verb: Verb | None = None
        self.fast_query = ""
        self.fast_params: dict[str, str] = {}  # the path's parameters (/v2: model, version)
        self.fast_chunks: list[bytes] = []
        self.fast_size = 0
        self.fast_keep_alive = True
        self.fast_pending = 0  # fast-path responses not yet written on this connection
        self.close_after = False
        self.lingering = False  # a refused body is being read and dropped before the close

    # ---- parser callbacks -------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        # a fast-path answer written while this buffer is parsed arms the keep-alive timer; the
        # next request in the buffer is work in progress, and must not be cut off by it
        self._unset_keepalive_if_required()

    def on_headers_complete(self) -> None:
        if self.transport.is_closing():  # pipelined behind an answer that closed: nobody to answer
            self.fast_verb = None
            self.fast_chunks = _DISCARD
            return
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
            self._too_large(int(declared))

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
        if self.fast_size > self.max_body:
            self._too_large(None)
            return
        self.fast_chunks.append(body)

    def on_message_complete(self) -> None:
        verb = self.fast_verb
        if verb is None:
            if self.fast_chunks is not _DISCARD:
                super().on_message_complete()
            elif self.lingering:  # the refused body is read: now close
                self.transport.close()
            return
        self.fast_verb = None
        chunks, self.fast_chunks = self.fast_chunks, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.fast_pending += 1
        reply = _Reply(self, self.fast_keep_alive)
        assert self.service is not None
        self.service.handle_raw(verb, self._headers(), self.fast_query, body, reply, self.fast_params)

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
        found = self.service.find(url.path.decode("latin-1"))
        if found is None:
            return None
        ctype = media_type(self._header(b"content-type")) or JSON
        if ctype not in (JSON, NPY, OCTET) and not ctype.endswith("+json"):
            return None  # multipart (read by starlette's parser) or an unsupported type: ASGI answers
        self.fast_query = (url.query or b"").decode("latin-1")
        verb, self.fast_params = found
        return verb

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
        self.fast_verb = None
        self.fast_chunks = _DISCARD
        self.lingering = True
        self.fast_pending += 1
        _Reply(self, keep_alive=False, linger=True)(self.service.refuse_body(verb, self._headers(), declared))

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

    __slots__ = ("keep_alive", "linger", "protocol", "target", "version")

    def __init__(self, protocol: LatentServeProtocol, keep_alive: bool, linger: bool = False) -> None:
        self.protocol = protocol
        self.keep_alive = keep_alive
        self.linger = linger  # keep the connection open until the refused body is read
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
            p.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                p.client_for_log(),
                "POST",
                self.target,
                self.version,
                response.status_code,
            )
        if self.linger:
            return  # on_message_complete closes once the body is read
        if not keep_alive:
            transport.close()
        p.on_response_complete()  # counts the request; re-arms keep-alive or starts the next one
