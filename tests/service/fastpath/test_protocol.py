"""The HTTP fast path (`service.fastpath.protocol`): the real protocol over the real app, fed raw HTTP bytes.

The transport is a stand-in that records what is written (the socket is asyncio's, not ours);
`LatentServeProtocol`, uvicorn's parser and the app are the real ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from service.app import create_app
from service.fastpath.protocol import LatentServeProtocol
from service.settings import Settings
from tests.service.conftest import npy


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Conn:
    """One client connection to a LatentServeProtocol."""

    def __init__(self, config: Config, state: ServerState) -> None:
        self.transport = Transport()
        self.state = state
        self.protocol = LatentServeProtocol(config, state, {}, asyncio.get_running_loop())
        self.protocol.connection_made(self.transport)

    def send(self, raw: bytes) -> None:
        self.protocol.data_received(raw)

    @property
    def service(self) -> Any:
        """The app's inference core, as the protocol's door reaches it."""
        door = self.protocol.body.door
        assert door is not None
        return door.dataplane

    async def responses(self, n: int, timeout: float = 10.0) -> list[tuple[int, dict[str, str], bytes]]:
        """Wait for n complete responses; return (status, headers, body) for each."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            parsed = parse_responses(bytes(self.transport.data))
            if len(parsed) >= n:
                return parsed
            assert loop.time() < deadline, (
                f"only {len(parsed)} of {n} responses: {bytes(self.transport.data)!r}"
            )
            await asyncio.sleep(0.001)


def parse_responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    out = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        size = int(headers.get("content-length", "0"))
        if len(rest) < size:
            break
        out.append((status, headers, rest[:size]))
        data = rest[size:]
    return out


def post(
    path: str, body: bytes, ctype: str = "application/json", extra: str = "", version: str = "1.1"
) -> bytes:
    head = (
        f"POST {path} HTTP/{version}\r\nHost: t\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    )
    return (head + extra + "\r\n").encode() + body


async def answers_like_asgi(
    conn: Conn, asgi: httpx.AsyncClient, path: str, body: bytes, ctype: str, extra: str
) -> tuple[dict[str, str], bytes, httpx.Response]:
    """POST on the fast path and to the ASGI app: the same status and content type, and no ASGI task
    started for it (but for text/plain, which the fast path hands to the ASGI app)."""
    conn.send(post(path, body, ctype, extra))
    if ctype != "text/plain":
        assert not conn.state.tasks, f"{path} started an ASGI task"
    else:
        assert conn.state.tasks, f"{path} as {ctype} did not take the ASGI path"
    [(status, headers, got)] = await conn.responses(1)
    headers_in = {k: v for k, v in (line.split(": ", 1) for line in extra.splitlines() if line)}
    ref = await asgi.post(path, content=body, headers={"content-type": ctype, **headers_in})
    assert status == ref.status_code, (path, got)
    assert headers["content-type"] == ref.headers["content-type"]
    return headers, got, ref


def chunked_post(path: str, body: bytes, size: int = 500) -> bytes:
    """POST `body` with Transfer-Encoding: chunked, in chunks of `size` bytes (no Content-Length)."""
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)
    return head + chunks + b"0\r\n\r\n"


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


@pytest.fixture
def run(models_dir: Path) -> Callable[..., None]:
    """run(test, **settings): an app with its lifespan and loaded registry, a protocol config, and
    an httpx client over the ASGI app (the reference path) for `test(config, state, asgi)`."""

    def runner(
        test: Callable[[Config, ServerState, httpx.AsyncClient], Awaitable[None]], **overrides: Any
    ) -> None:
        settings = Settings(**{"models_dir": models_dir, "reload_interval_s": 0, **overrides})
        app = create_app(settings)

        async def main() -> None:
            async with app.router.lifespan_context(app), lifespan_ready(app) as asgi:
                config = Config(app=app, http=LatentServeProtocol, log_config=None, lifespan="off")
                config.load()
                state = ServerState()
                # what uvicorn's Server sets and refreshes every second
                state.default_headers = [(b"date", b"Thu, 26 Nov 2026 20:00:00 GMT"), *config.encoded_headers]
                await test(config, state, asgi)

        asyncio.run(main())

    return runner


class lifespan_ready:  # noqa: N801
    def __init__(self, app: Any) -> None:
        self.app = app
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    async def __aenter__(self) -> httpx.AsyncClient:
        while (await self.client.get("/health/ready")).status_code != 200:
            await asyncio.sleep(0.01)
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()


def _body(model: str, X: np.ndarray, **extra: Any) -> bytes:
    return json.dumps({"model": model, "inputs": X.tolist(), **extra}).encode()


def test_inference_posts_answer_like_the_asgi_app_without_an_asgi_task(run: Any, digits: np.ndarray) -> None:
    cases = [
        ("/anomaly-score", _body("digits-pca", digits[:3]), "application/json", ""),
        (
            "/anomaly-score",
            _body("digits-pca", digits[:2], threshold=0.01, return_feature_errors=True),
            "application/json",
            "",
        ),
        ("/encode", _body("digits-pca", digits[:2].reshape(2, 64)), "application/json", ""),
        (
            "/reconstruct?model=digits-pca",
            npy(digits[:2]),
            "application/x-npy",
            "Accept: application/x-npy\r\n",
        ),
        (
            "/decode",
            json.dumps({"model": "digits-pca", "codes": np.zeros((2, 16)).tolist()}).encode(),
            "application/json",
            "",
        ),
        ("/encode", _body("no-such-model", digits[:1]), "application/json", ""),  # 404
        ("/encode", _body("digits-pca", digits[:1, :4]), "application/json", ""),  # 422 wrong shape
        (
            "/encode",
            b'{"model": "digits-pca", "inputs": [[1, 2], [3]]}',
            "application/json",
            "",
        ),  # 422 ragged
        ("/encode", b"{not json", "application/json", ""),  # 422
        ("/encode", b"x", "text/plain", ""),  # 415, answered by the ASGI path
        ("/encode", _body("digits-pca", digits[:1]), "application/json", "Accept: text/csv\r\n"),  # 406
    ]

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        for path, body, ctype, extra in cases:
            conn = Conn(config, state)
            headers, got, ref = await answers_like_asgi(conn, asgi, path, body, ctype, extra)
            assert got == ref.content, path
            assert "date" in headers and "server" in headers
            assert not conn.transport.closed  # keep-alive

    run(test)


def test_v2_infer_answers_like_the_asgi_app_without_an_asgi_task(run: Any, digits: np.ndarray) -> None:
    X = np.ascontiguousarray(digits[:3], dtype="<f4")
    tensor = {"name": "input", "shape": [3, 8, 8], "datatype": "FP32"}
    header = json.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": X.nbytes}}], "outputs": [{"name": "score"}]}
    ).encode()
    binary = f"Inference-Header-Content-Length: {len(header)}\r\n"
    as_json = json.dumps({"id": "1", "inputs": [{**tensor, "data": X.reshape(-1).tolist()}]}).encode()
    cases = [
        ("/v2/models/digits-pca/infer", as_json, "application/json", ""),
        ("/v2/models/digits-pca/versions/1/infer", header + X.tobytes(), "application/octet-stream", binary),
        ("/v2/models/digits-pca/infer", header + X.tobytes(), "application/json", binary),
        ("/v2/models/digits-pca.decoder/infer", as_json, "application/json", ""),  # 400: wants `code`
        ("/v2/models/nope/infer", as_json, "application/json", ""),  # 404
        ("/v2/models/digits-pca/infer", header + X.tobytes()[:-1], "application/octet-stream", binary),
    ]

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        for path, body, ctype, extra in cases:
            conn = Conn(config, state)
            headers, got, ref = await answers_like_asgi(conn, asgi, path, body, ctype, extra)
            assert headers.get("inference-header-content-length") == ref.headers.get(
                "inference-header-content-length"
            )
            assert got == ref.content, path

    run(test)


def test_keep_alive_pipelining_and_order(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        a, b = _body("digits-pca", digits[:1]), _body("digits-pca", digits[1:3])
        # fast, ASGI (GET), fast, in one packet: answered in request order
        conn.send(post("/anomaly-score", a) + get("/health/live") + post("/anomaly-score", b))
        (s1, _, r1), (s2, _, r2), (s3, _, r3) = await conn.responses(3)
        assert (s1, s2, s3) == (200, 200, 200)
        assert len(json.loads(r1)["scores"]) == 1
        assert json.loads(r2) == (await asgi.get("/health/live")).json()
        assert len(json.loads(r3)["scores"]) == 2
        # the same connection serves again afterwards
        conn.send(post("/encode", a))
        assert len(await conn.responses(4)) == 4
        assert state.total_requests == 4

    run(test)


def test_connection_close_and_http_1_0(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        body = _body("digits-pca", digits[:1])
        for raw in (
            post("/anomaly-score", body, extra="Connection: close\r\n"),
            post("/anomaly-score", body, version="1.0"),
        ):
            conn = Conn(config, state)
            conn.send(raw)
            [(status, headers, _)] = await conn.responses(1)
            assert status == 200 and headers["connection"] == "close"
            assert conn.transport.closed

    run(test)


def test_body_over_the_limit_is_413_and_closes(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        big = _body("digits-pca", digits[:12])
        assert len(big) > 2000
        conn = Conn(config, state)  # declared too large: refused before the body is read
        conn.send(post("/anomaly-score", big))
        [(status, _, got)] = await conn.responses(1)
        assert status == 413 and json.loads(got)["error"]["field"] == "body"
        assert "2000" in json.loads(got)["error"]["message"]
        assert conn.transport.closed
        conn = Conn(config, state)  # chunked: refused once the bytes read pass the limit
        conn.send(chunked_post("/anomaly-score", big))
        [(status, _, got)] = await conn.responses(1)
        assert status == 413 and "more than the limit" in json.loads(got)["error"]["message"]
        assert conn.transport.closed

    run(test, max_body_bytes=2000)


def test_api_key_on_the_fast_path(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        body = _body("digits-pca", digits[:1])
        conn = Conn(config, state)
        conn.send(post("/anomaly-score", body))
        conn.send(post("/anomaly-score", body, extra="X-API-Key: wrong\r\n"))
        conn.send(post("/anomaly-score", body, extra="Authorization: Bearer s3cret\r\n"))
        (s1, h1, r1), (s2, _, r2), (s3, _, _) = await conn.responses(3)
        assert (s1, s2, s3) == (401, 401, 200)
        assert h1["www-authenticate"] == "Bearer"
        assert "missing API key" in json.loads(r1)["error"]["message"]
        assert json.loads(r2)["error"]["message"] == "wrong API key"

    run(test, api_key="s3cret")


def test_shutdown_waits_for_the_pending_response(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        conn.send(post("/anomaly-score", _body("digits-pca", digits[:1])))
        conn.protocol.shutdown()  # the batch has not run yet
        assert not conn.transport.closed
        [(status, headers, _)] = await conn.responses(1)
        assert status == 200 and headers["connection"] == "close"
        assert conn.transport.closed

    run(test)


def test_access_log_line(run: Any, digits: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        conn.send(post("/anomaly-score?x=1", _body("digits-pca", digits[:1])))
        await conn.responses(1)

    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        run(test)
    assert any('"POST /anomaly-score?x=1 HTTP/1.1" 200' in r.getMessage() for r in caplog.records), (
        caplog.text
    )


def test_fast_path_off_leaves_everything_to_asgi(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        assert conn.protocol.body.door is None
        conn.send(post("/anomaly-score", _body("digits-pca", digits[:1])))
        assert state.tasks  # uvicorn's ASGI cycle took it
        [(status, _, _)] = await conn.responses(1)
        assert status == 200

    run(test, fast_path=False)


def test_an_early_answer_does_not_time_out_the_next_request(run: Any, digits: np.ndarray) -> None:
    """A fast-path answer written while a buffer is parsed must not arm the keep-alive timer over
    the next request of that buffer (it would close the connection mid-request)."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        body = _body("digits-pca", digits[:1])
        second = post("/anomaly-score", body)
        conn.send(post("/encode", body, extra="Accept: text/csv\r\n") + second[:-10])  # 406, then half
        [(status, _, _)] = await conn.responses(1)
        assert status == 406
        assert conn.protocol.timeout_keep_alive_task is None  # a request is in progress
        conn.send(second[-10:])
        (_, (status, _, got)) = await conn.responses(2)
        assert status == 200 and len(json.loads(got)["scores"]) == 1
        assert conn.protocol.timeout_keep_alive_task is not None  # idle again: the timer runs

    run(test)


def test_refused_body_header_errors_first_then_413_counted(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        big = _body("digits-pca", digits[:12])
        conn = Conn(config, state)  # no key and a body too large: the 401 wins, as on the ASGI path
        conn.send(post("/anomaly-score", big))
        [(status, _, got)] = await conn.responses(1)
        assert status == 401
        conn = Conn(config, state)
        raw = post("/anomaly-score", big, extra="X-API-Key: k\r\n")
        conn.send(raw[:-100])  # the body is not all sent yet
        [(status, headers, got)] = await conn.responses(1)
        err = json.loads(got)["error"]
        assert status == 413 and headers["connection"] == "close"
        assert err["details"] == {"limit": 2000, "got": len(big)}
        assert not conn.transport.closed  # reading the rest, so the client is not reset
        conn.send(raw[-100:])
        assert conn.transport.closed
        metrics = (await asgi.get("/metrics", headers={"x-api-key": "k"})).text
        assert (
            'latentserve_requests_total{endpoint="anomaly-score",model="<unknown>",status="413"} 1.0'
            in metrics
        )
        assert (
            'latentserve_requests_total{endpoint="anomaly-score",model="<unknown>",status="401"} 1.0'
            in metrics
        )

    run(test, max_body_bytes=2000, api_key="k")


def test_repeated_headers_the_first_counts_as_on_the_asgi_path(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        body = _body("digits-pca", digits[:1])
        for keys, expected in ((("k", "wrong"), 200), (("wrong", "k"), 401)):
            extra = "".join(f"X-API-Key: {key}\r\n" for key in keys)
            conn = Conn(config, state)
            conn.send(post("/anomaly-score", body, extra=extra))
            [(status, _, _)] = await conn.responses(1)
            ref = await asgi.post(
                "/anomaly-score",
                content=body,
                headers=[("content-type", "application/json"), *(("x-api-key", key) for key in keys)],
            )
            assert status == ref.status_code == expected

    run(test, api_key="k")


def test_access_log_names_the_forwarded_client(
    run: Any, digits: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)  # the peer is 127.0.0.1, which uvicorn trusts by default
        conn.send(
            post("/anomaly-score", _body("digits-pca", digits[:1]), extra="X-Forwarded-For: 203.0.113.9\r\n")
        )
        await conn.responses(1)

    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        run(test)
    lines = [r.getMessage() for r in caplog.records if "POST /anomaly-score" in r.getMessage()]
    assert lines and lines[0].startswith("203.0.113.9"), lines


# ---- overload, slow clients and caps (issue 13) ----------------------------------------------------
async def _closed(conn: Conn, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not conn.transport.closed:
        assert loop.time() < deadline, "the connection was never closed"
        await asyncio.sleep(0.01)


async def _status(config: Config, state: ServerState, request: bytes) -> int:
    """Send one request on a new connection; the status of its one answer."""
    conn = Conn(config, state)
    conn.send(request)
    [(status, _, _)] = await conn.responses(1)
    return status


def _head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _metrics(service: Any) -> str:
    return service.metrics.render().decode()  # type: ignore[no-any-return]


def test_past_the_memory_budget_a_request_is_503_before_its_body_is_read(
    run: Any, digits: np.ndarray
) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        first = Conn(config, state)
        first.send(_head("/anomaly-score", 200_000) + b'{"model": "digits-pca", ')  # stalls mid-body
        assert first.protocol.body.ticket is not None
        second = Conn(config, state)
        second.send(_head("/anomaly-score", 200_000))  # headers only: no body byte sent
        [(status, headers, got)] = await second.responses(1)
        err = json.loads(got)["error"]
        assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
        assert err["type"] == "Overloaded" and "MAX_INFLIGHT_BYTES" in err["message"]
        assert second.protocol.body.discarding and not second.protocol.body.chunks  # nothing kept
        service = first.service
        assert 'latentserve_shed_total{limit="bytes"} 1.0' in _metrics(service)
        first.transport.close()
        first.protocol.connection_lost(None)  # the client left: its reservation is freed
        assert service.admission.bytes == 0 and service.admission.requests == 0
        assert await _status(config, state, post("/anomaly-score", _body("digits-pca", digits[:2]))) == 200

    run(test, max_inflight_bytes=1_000_000)


def test_past_the_queue_a_request_is_503(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        held = Conn(config, state)
        held.send(_head("/anomaly-score", 1000))
        shed = Conn(config, state)
        shed.send(post("/anomaly-score", _body("digits-pca", digits[:1])))
        [(status, _, got)] = await shed.responses(1)
        assert status == 503 and "MAX_CONCURRENCY + MAX_QUEUE" in json.loads(got)["error"]["message"]
        assert 'latentserve_shed_total{limit="requests"} 1.0' in _metrics(held.service)

    run(test, max_concurrency=1, max_queue=0)


def test_key_accept_content_type_and_encoding_are_checked_before_any_body_byte(run: Any) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        cases = [
            ("", 401),
            ("X-API-Key: k\r\nAccept: text/csv\r\n", 406),
            ("X-API-Key: k\r\nContent-Encoding: gzip\r\n", 415),
        ]
        for extra, expected in cases:
            conn = Conn(config, state)
            conn.send(_head("/encode", 50_000_000, extra))  # 50 MB declared, none sent
            [(status, _, _)] = await conn.responses(1)
            assert status == expected, extra
            assert conn.protocol.body.ticket is None and not conn.protocol.body.chunks
            assert conn.service.admission.bytes == 0

    run(test, api_key="k")


def test_header_caps_are_431_and_close(run: Any) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        many = Conn(config, state)
        many.send(_head("/encode", 2, "".join(f"X-{i}: v\r\n" for i in range(20))) + b"{}")
        [(status, _, got)] = await many.responses(1)
        assert status == 431 and "23 header fields" in json.loads(got)["error"]["message"]
        assert many.transport.closed
        big = Conn(config, state)  # a header that never ends: refused once it passes the cap
        big.send(b"GET /health/live HTTP/1.1\r\nX-Big: ")
        for _ in range(10):
            if big.transport.closed:
                break
            big.send(b"a" * 1024)
        [(status, _, _)] = await big.responses(1)
        assert status == 431 and big.transport.closed
        assert 'latentserve_connections_closed_total{reason="header_too_large"} 2.0' in _metrics(many.service)
        assert await _status(config, state, get("/health/live")) == 200

    run(test, max_headers=10, max_header_bytes=4096)


def test_stalled_and_idle_connections_are_closed_and_freed(run: Any) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        idle = Conn(config, state)  # connects, sends nothing
        partial_head = Conn(config, state)
        partial_head.send(b"POST /encode HTTP/1.1\r\nHost: t\r\n")
        stalled = Conn(config, state)
        stalled.send(_head("/encode", 100_000) + b'{"model": ')
        service = stalled.service
        assert service.admission.bytes > 0
        for conn in (idle, partial_head, stalled):
            await _closed(conn)
        stalled.protocol.connection_lost(None)
        assert service.admission.bytes == 0 and service.admission.requests == 0
        text = _metrics(service)
        assert 'latentserve_connections_closed_total{reason="header_timeout"} 2.0' in text
        assert 'latentserve_connections_closed_total{reason="body_timeout"} 1.0' in text

    run(test, header_timeout_s=0.05, body_timeout_s=0.05)


def test_a_client_that_reads_nothing_is_dropped_after_the_write_timeout(run: Any) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        conn.protocol.pause_writing()  # what asyncio calls when the socket's buffer stays full
        await _closed(conn)
        assert conn.transport.aborted
        reader = Conn(config, state)
        reader.protocol.pause_writing()
        reader.protocol.resume_writing()  # the client read: no drop
        await asyncio.sleep(0.1)
        assert not reader.transport.aborted

    run(test, write_timeout_s=0.05)


def test_an_upgrade_on_a_post_is_a_400_not_a_lost_body(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        for upgrade in ("websocket", "foo"):
            conn = Conn(config, state)
            extra = f"Connection: upgrade\r\nUpgrade: {upgrade}\r\n"
            conn.send(post("/anomaly-score", _body("digits-pca", digits[:1]), extra=extra))
            [(status, _, got)] = await conn.responses(1)
            assert status == 400 and "Upgrade" in json.loads(got)["error"]["message"]
            assert conn.transport.closed

    run(test)


def test_on_shutdown_a_request_already_on_its_way_is_answered_then_idle_ones_close(
    run: Any, digits: np.ndarray
) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        busy, idle = Conn(config, state), Conn(config, state)
        busy.protocol.shutdown()
        idle.protocol.shutdown()
        assert not busy.transport.closed and not idle.transport.closed
        busy.send(post("/anomaly-score", _body("digits-pca", digits[:1])))  # arrives after the signal
        [(status, headers, _)] = await busy.responses(1)
        assert status == 200 and headers["connection"] == "close"
        await _closed(busy)
        await _closed(idle)

    run(test)


def test_v2_infer_is_admitted_like_our_routes(run: Any) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        held = Conn(config, state)
        held.send(_head("/v2/models/digits-pca/infer", 1000))
        shed = Conn(config, state)
        shed.send(_head("/v2/models/digits-pca/infer", 1000))
        [(status, headers, got)] = await shed.responses(1)
        assert status == 503 and headers["retry-after"] == "1"
        assert "MAX_CONCURRENCY + MAX_QUEUE" in json.loads(got)["error"]  # the protocol's shape

    run(test, max_concurrency=1, max_queue=0)


def test_a_json_body_over_max_json_body_bytes_is_413_naming_npy_on_every_path(
    run: Any, digits: np.ndarray
) -> None:
    big = _body("digits-pca", digits[:12])  # about 3 kB of JSON; the same rows as .npy pass
    assert len(big) > 2000

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)  # declared too large: refused before the body is read
        conn.send(post("/anomaly-score", big))
        [(status, headers, got)] = await conn.responses(1)
        err = json.loads(got)["error"]
        assert status == 413 and err["type"] == "JsonBodyTooLarge" and err["field"] == "body"
        assert "MAX_JSON_BODY_BYTES" in err["message"] and "application/x-npy" in err["message"]
        assert err["details"]["limit"] == 2000 and err["details"]["got"] == len(big)
        assert headers["connection"] == "close"
        conn = Conn(config, state)  # chunked: refused once the bytes read pass the limit
        conn.send(chunked_post("/anomaly-score", big))
        [(status, _, got)] = await conn.responses(1)
        assert status == 413 and json.loads(got)["error"]["type"] == "JsonBodyTooLarge"
        service = conn.service
        assert service.admission.bytes == 0 and service.admission.requests == 0
        r = await asgi.post("/anomaly-score", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "JsonBodyTooLarge"
        # the same rows as .npy: under MAX_BODY_BYTES, answered; a small JSON body too
        as_npy = post("/anomaly-score?model=digits-pca", npy(digits[:12]), "application/x-npy")
        assert await _status(config, state, as_npy) == 200
        assert await _status(config, state, post("/anomaly-score", _body("digits-pca", digits[:2]))) == 200

    run(test, max_json_body_bytes=2000)


def test_a_json_answer_over_max_json_response_bytes_is_413_naming_npy(run: Any, digits: np.ndarray) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        body = npy(digits[:20])  # 20 rows x 64 values x 16 bytes a JSON value = 20,480 predicted
        conn = Conn(config, state)
        conn.send(post("/reconstruct?model=digits-pca", body, "application/x-npy"))
        [(status, _, got)] = await conn.responses(1)
        err = json.loads(got)["error"]
        assert status == 413 and err["type"] == "JsonAnswerTooLarge" and err["field"] == "accept"
        assert "MAX_JSON_RESPONSE_BYTES" in err["message"] and "Accept: application/x-npy" in err["message"]
        assert err["details"]["limit"] == 10_000
        service = conn.service
        assert service.admission.bytes == 0 and service.admission.requests == 0
        conn = Conn(config, state)  # the same answer as .npy (4 bytes a value): answered
        conn.send(
            post("/reconstruct?model=digits-pca", body, "application/x-npy", "Accept: application/x-npy\r\n")
        )
        [(status, headers, _)] = await conn.responses(1)
        assert status == 200 and headers["content-type"] == "application/x-npy"
        r = await asgi.post(
            "/reconstruct?model=digits-pca", content=body, headers={"content-type": "application/x-npy"}
        )
        assert r.status_code == 413 and r.json()["error"]["type"] == "JsonAnswerTooLarge"

    run(test, max_json_response_bytes=10_000)


def test_past_max_connections_the_longest_idle_connection_makes_room_else_503(
    run: Any, digits: np.ndarray
) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        oldest, idle = Conn(config, state), Conn(config, state)
        busy = Conn(config, state)
        busy.send(b"POST /encode HTTP/1.1\r\nHost: t\r\n")  # a request on its way: never evicted
        await asyncio.sleep(0)
        probe = Conn(config, state)  # the fourth: the idle one connected first is closed for it
        assert oldest.transport.closed and not idle.transport.closed and not busy.transport.closed
        assert not probe.transport.closed
        oldest.protocol.connection_lost(None)
        assert oldest.protocol not in probe.protocol.table.by_activity  # a closed one is forgotten
        probe.send(get("/health/live"))
        [(status, _, _)] = await probe.responses(1)
        assert status == 200  # answered, and idle again (a keep-alive connection after its answer)
        idle.send(post("/encode", _body("digits-pca", digits[:1])))
        [(status, _, _)] = await idle.responses(1)
        assert status == 200
        await asyncio.sleep(0)
        newest = Conn(config, state)  # the probe's answer came before idle's: the probe is idle longer
        assert probe.transport.closed and not idle.transport.closed and not newest.transport.closed
        probe.protocol.connection_lost(None)
        idle.send(b"GET /health/live HTTP/1.1\r\n")  # now every connection is busy
        newest.send(b"GET /health/live HTTP/1.1\r\n")
        refused = Conn(config, state)
        [(status, headers, got)] = parse_responses(bytes(refused.transport.data))
        err = json.loads(got)["error"]
        assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
        assert err["type"] == "Overloaded" and "MAX_CONNECTIONS" in err["message"]
        assert refused.transport.closed and not busy.transport.closed and not newest.transport.closed
        text = _metrics(busy.service)
        assert 'latentserve_connections_closed_total{reason="connection_cap_idle"} 2.0' in text
        assert 'latentserve_connections_closed_total{reason="connection_cap"} 1.0' in text

    run(test, max_connections=3)


def test_max_connections_defaults_to_the_descriptor_limit_less_a_reserve() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = 1 << 20 if soft == resource.RLIM_INFINITY else max(1, soft - 128)
    assert Settings().connection_cap() == expected
    assert Settings(max_connections=7).connection_cap() == 7
    if soft != resource.RLIM_INFINITY and soft > 200:
        assert Settings(fd_reserve=200).connection_cap() == soft - 200  # FD_RESERVE is a setting


def test_refused_bodies_are_dropped_two_at_a_time_the_others_wait_unread(run: Any) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conns = [Conn(config, state) for _ in range(3)]
        for conn in conns:  # each declares a JSON body over the limit: 413 at once, then its body dropped
            conn.send(_head("/anomaly-score", 3000))
        for conn in conns:
            [(status, _, _)] = await conn.responses(1)
            assert status == 413
        first, second, third = (conn.protocol for conn in conns)
        table = first.table
        assert table.draining == 2 and table.holds_drain(first) and table.holds_drain(second)
        assert third.flow.read_paused and list(table.drain_queue) == [third]
        conns[0].send(b"x" * 3000)  # the first body is read: its connection closes, the third reads
        assert conns[0].transport.closed
        assert table.holds_drain(third) and not third.flow.read_paused and not table.drain_queue
        conns[1].transport.close()
        second.connection_lost(None)  # a client that leaves mid-drain frees its turn too
        assert table.draining == 1
        conns[2].send(b"x" * 3000)
        assert conns[2].transport.closed and table.draining == 0

    run(test, max_json_body_bytes=2000)


def test_bodies_past_a_turns_read_budget_wait_for_the_next_turn_and_are_answered(run: Any) -> None:
    X = np.random.default_rng(5).random((300, 64)).astype(np.float32)
    body = npy(X)  # 77 KiB: two chunks of it pass a 64 KiB turn
    half = len(body) // 2

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        first, second = Conn(config, state), Conn(config, state)
        head = post("/anomaly-score?model=digits-pca", body, "application/x-npy")[: -len(body)]
        for conn in (first, second):
            conn.send(head + body[:half])  # 2 x 38 KiB in one turn: past READ_TURN_BYTES
        assert second.protocol.flow.read_paused and not first.protocol.flow.read_paused
        await asyncio.sleep(0)  # the next turn: the one paused resumes
        assert not second.protocol.flow.read_paused
        second.send(body[half:])
        first.send(body[half:])
        expected = await asgi.post(
            "/anomaly-score?model=digits-pca", content=body, headers={"content-type": "application/x-npy"}
        )
        for conn in (first, second):
            [(status, _, answer)] = await conn.responses(1)
            assert status == 200 and json.loads(answer)["scores"] == expected.json()["scores"]
        assert first.protocol.table.reads.pauses >= 1

    run(test, read_turn_bytes=64 * 1024)


def test_drains_at_once_is_a_setting(run: Any) -> None:
    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conns = [Conn(config, state) for _ in range(2)]
        for conn in conns:
            conn.send(_head("/anomaly-score", 3000))
        for conn in conns:
            [(status, _, _)] = await conn.responses(1)
            assert status == 413
        first, second = (conn.protocol for conn in conns)
        assert first.table.draining == 1 and first.table.holds_drain(first)
        assert second.flow.read_paused and list(first.table.drain_queue) == [second]

    run(test, max_json_body_bytes=2000, drains_at_once=1)


# ---- red-team breaks (issue 22) -------------------------------------------------------------------
class FullTransport(Transport):
    """A socket whose client reads nothing: past `high` buffered bytes asyncio pauses the protocol."""

    def __init__(self, high: int) -> None:
        super().__init__()
        self.high = high
        self.protocol: LatentServeProtocol | None = None
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        if len(self.data) > self.high and not self.paused and self.protocol is not None:
            self.paused = True
            self.protocol.pause_writing()


def test_pipelined_answers_never_read_stop_the_connection_and_keep_their_admission(
    run: Any, digits: np.ndarray
) -> None:
    """Break 1: a client that pipelines and never reads got every answer queued in memory."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        full = FullTransport(high=16 * 1024)
        full.protocol = conn.protocol
        conn.transport = full
        conn.protocol.connection_made(full)
        X = np.resize(digits.reshape(len(digits), -1), (200, 64))
        request = post(
            "/reconstruct?model=digits-pca", npy(X), "application/x-npy", "Accept: application/x-npy\r\n"
        )
        try:
            for _ in range(8):  # eight requests, none of their answers read
                if conn.protocol.flow.read_paused:
                    break  # what asyncio's transport does: no more data_received
                conn.send(request)
                await asyncio.sleep(0.2)
            answered = len(parse_responses(bytes(full.data)))
            admission = conn.service.admission
            assert answered == 1, f"{answered} answers queued for a client that reads nothing"
            assert admission.bytes > 0, "the unread answer's admission was released before it was sent"
            full.data.clear()
            full.paused = False
            conn.protocol.resume_writing()  # the client reads: the connection carries on
            assert not conn.protocol.flow.read_paused and admission.bytes == 0
            conn.send(request)
            await conn.responses(1)
        finally:
            full.close()
            conn.protocol.connection_lost(None)  # the client leaves: what it held is freed
        await asyncio.sleep(0.1)
        assert admission.bytes == 0

    run(test)


def test_requests_parsed_behind_a_parked_answer_wait_and_a_client_that_leaves_frees_every_admission(
    run: Any, digits: np.ndarray
) -> None:
    """Break 1 again (soak): requests pipelined in one segment were each taken by the shortcut while
    the answer before them was parked unread; each new parked answer overwrote the one before, whose
    admission then stayed held for good once the client left (tickets leaked at every soak run)."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        full = FullTransport(high=1024)
        full.protocol = conn.protocol
        conn.transport = full
        conn.protocol.connection_made(full)
        X = np.resize(digits.reshape(len(digits), -1), (50, 64))
        request = post(
            "/reconstruct?model=digits-pca", npy(X), "application/x-npy", "Accept: application/x-npy\r\n"
        )
        admission = conn.service.admission
        conn.send(request * 4)  # four requests in one segment, no answer read
        for _ in range(100):
            if conn.protocol.body.parked_answer:
                break
            await asyncio.sleep(0.01)
        assert conn.protocol.body.parked_answer and len(parse_responses(bytes(full.data))) == 1
        assert admission.requests == 1, "requests behind a parked answer were admitted meanwhile"
        full.close()
        conn.protocol.connection_lost(None)  # the client leaves: whatever it held is freed
        await asyncio.sleep(0.1)
        assert admission.bytes == 0 and admission.requests == 0

    run(test, batching=False)  # answered in the parse that read the request: the next is parsed after


def test_a_multipart_body_over_the_limit_is_413_and_read_before_the_close(run: Any) -> None:
    """Break 7: multipart bodies take the ASGI path, whose 413 closed the connection with the body
    unread (the client saw a reset); the refusal is now answered and the body dropped first."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        size = 300_000
        conn.send(
            _head("/anomaly-score?model=digits-pca", size).replace(
                b"application/json", b"multipart/form-data; boundary=x"
            )
        )
        [(status, headers, got)] = await conn.responses(1)
        assert status == 413 and headers["connection"] == "close", got
        assert not conn.transport.closed, "closed with the body unread: the client gets a reset"
        conn.send(b"x" * size)  # the body arrives and is dropped: then the close
        await _closed(conn)

    run(test, max_body_bytes=100_000)


@pytest.mark.parametrize(
    ("path", "status"),
    [("/ui/models/digits-pca/versions/1/try", 413), ("/v2/repository/models/digits-pca/load", 401)],
)
def test_an_asgi_refusal_that_closes_reads_the_body_first(run: Any, path: str, status: int) -> None:
    """Break 7: an ASGI answer that closes the connection (Try-it's refusal of an upload over
    MAX_BODY_BYTES, /v2/repository's 401, each asked to close) closed it with the body unread, and
    the client saw a reset; the rest of the body is now read and dropped first, then the close."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        size = 300_000
        conn.send(
            _head(path, size, "Connection: close\r\n").replace(
                b"application/json", b"multipart/form-data; boundary=x"
            )
        )
        conn.send(b"x" * 70_000)
        [(got_status, headers, got)] = await conn.responses(1)
        assert got_status == status and headers["connection"] == "close", got
        assert not conn.transport.closed, "closed with the body unread: the client gets a reset"
        conn.send(b"x" * (size - 70_000))  # the rest arrives and is dropped: then the close
        await _closed(conn)

    run(test, max_body_bytes=100_000, **({"api_key": "k"} if status == 401 else {}))


def test_a_try_it_upload_costs_less_than_the_two_bodies_its_admission_holds(run: Any) -> None:
    """Break 8: Try-it joined the body, parsed it in one piece and read the upload back, 3.1 times
    its size at the peak while its admission holds 2; Python's own peak over an 8 MiB upload sent
    in 64 KiB pieces is now under 2 bodies."""
    size, piece = 8 << 20, b"\x89" * (64 << 10)
    head = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    tail = b"\r\n--x--\r\n"
    total = len(head) + size + len(tail)

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        request = _head("/ui/models/digits-pca/versions/1/try", total).replace(
            b"application/json", b"multipart/form-data; boundary=x"
        )
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            conn.send(request + head)
            for _ in range(size // len(piece)):
                conn.send(piece)
                await asyncio.sleep(0)
                while conn.protocol.flow.read_paused:  # the app has not taken uvicorn's buffer yet
                    await asyncio.sleep(0.001)
            conn.send(tail)
            [(status, _, got)] = await conn.responses(1, timeout=60)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert status in (400, 415, 422), got[:300]  # not an image: the page names the error
        assert peak < 2 * size, f"peak {peak / size:.2f} bodies"

    run(test, max_body_bytes=64 << 20)


TRY = "/ui/models/digits-pca/versions/1/try"


def _aborts(service: Any) -> float:
    """Try-it's (and /anomaly-score's) requests counted 499: closed by the client before answered."""
    line = r'latentserve_requests_total\{endpoint="anomaly-score",model="<unknown>",status="499"\} (\S+)'
    found = re.search(line, _metrics(service))
    return float(found[1]) if found else 0.0


def test_an_aborted_try_it_upload_starts_no_asgi_cycle_and_is_counted(run: Any) -> None:
    """Break 9: an aborted Try-it upload ran a whole ASGI cycle (uvicorn's task, the handler, its
    499), and 2,000 of them held /health/live past 100 ms. The upload is now admitted on its headers
    and read by the connection; one that stops mid-body starts no task, gives its memory back at
    once and is counted as a 499."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        admission = conn.service.admission
        before = _aborts(conn.service)
        conn.send(_head(TRY, 1 << 20).replace(b"application/json", b"multipart/form-data; boundary=x"))
        part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        conn.send(part + b"\0" * 4096)
        await asyncio.sleep(0.01)
        assert not state.tasks, "the upload started an ASGI cycle before it was whole"
        assert admission.requests == 1 and admission.bytes >= 1 << 20, "not admitted on its headers"
        conn.protocol.connection_lost(ConnectionResetError())
        assert admission.requests == 0 and admission.bytes == 0
        assert not state.tasks and conn.transport.data == b"", "an answer for nobody"
        assert _aborts(conn.service) == before + 1

    run(test)


def test_a_try_it_upload_read_by_the_connection_is_scored_as_through_the_app(run: Any) -> None:
    """The whole upload starts its cycle with the ticket and the body: the page is the one the ASGI
    app renders for the same form (the same scores), with no second admission."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        row = ",".join(["1"] * 64)
        form = f"row={row}".encode()
        conn = Conn(config, state)
        request = post(TRY, form, "application/x-www-form-urlencoded")
        conn.send(request[:-10])
        await asyncio.sleep(0.01)
        assert not state.tasks and conn.service.admission.requests == 1
        conn.send(request[-10:])
        [(status, headers, got)] = await conn.responses(1)
        ctype = {"content-type": "application/x-www-form-urlencoded"}
        ref = await asgi.post(TRY, content=form, headers=ctype)
        assert status == ref.status_code == 200 and headers["content-type"] == ref.headers["content-type"]
        scores = re.findall(r'data-score="([^"]+)"', got.decode())
        assert scores and scores == re.findall(r'data-score="([^"]+)"', ref.text)
        assert conn.service.admission.requests == 0 and conn.service.admission.bytes == 0

    run(test)


def test_a_chunked_try_it_upload_past_the_body_limit_is_shown_as_413(run: Any) -> None:
    """A Try-it upload without Content-Length that outgrows MAX_BODY_BYTES while read by the
    connection: released, and the page shows the 413 (the ASGI app renders it); the rest of the
    body is dropped before the close, not answered with a reset."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        head = f"POST {TRY} HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        conn.send((head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode())
        piece = b"x" * 30_000
        for _ in range(4):  # 120,000 bytes > 100,000
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        [(status, headers, got)] = await conn.responses(1)
        assert status == 413 and headers["content-type"].startswith("text/html"), got[:300]
        assert b"100000" in got  # the page names the limit
        assert conn.service.admission.requests == 0 and conn.service.admission.bytes == 0
        assert not conn.transport.closed, "closed with the body unread: the client gets a reset"
        conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(piece), piece))
        await _closed(conn)

    run(test, max_body_bytes=100_000)


def test_the_addresses_are_read_when_a_request_needs_them(run: Any) -> None:
    """uvicorn read each connection's addresses as it was made, through a socket object (8.5 us
    under uvloop, more on a connection already reset); an aborted upload never needs them. They
    are read once an ASGI cycle starts (its scope has them as uvicorn's would) or the access log
    names the client, and not for a Try-it upload that stops mid-body."""

    class Counting(Transport):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[str] = []

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            self.asked.append(name)
            return super().get_extra_info(name, default)

    seen: list[Any] = []

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        aborted = Counting()
        conn = Conn(config, state)
        conn.protocol.connection_lost(None)
        conn.transport = aborted
        conn.protocol = LatentServeProtocol(config, state, {}, asyncio.get_running_loop())
        conn.protocol.connection_made(aborted)
        conn.send(_head(TRY, 1 << 20).replace(b"application/json", b"multipart/form-data; boundary=x"))
        conn.protocol.connection_lost(ConnectionResetError())
        assert not {"socket", "peername", "sockname"} & set(aborted.asked)

        app = config.loaded_app

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/whoami":
                seen.append((scope["client"], scope["server"]))
            await app(scope, receive, send)

        config.loaded_app = recording
        served = Conn(config, state)
        served.send(get("/whoami"))
        [(status, _, _)] = await served.responses(1)
        assert status == 404 and seen == [(("127.0.0.1", 50000), ("127.0.0.1", 8000))]

    run(test)


def test_a_try_it_upload_for_no_such_version_is_404_and_gives_its_memory_back(run: Any) -> None:
    """An upload the connection admitted and read whole, for a version that does not exist: the
    API's 404, and its ticket released (the admission's memory budget is whole again)."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        form = "application/x-www-form-urlencoded"
        conn.send(post("/ui/models/digits-pca/versions/9/try", b"row=1,2", form))
        [(status, _, got)] = await conn.responses(1)
        assert status == 404 and b"digits-pca" in got, got[:300]
        assert conn.service.admission.requests == 0 and conn.service.admission.bytes == 0

    run(test)


def test_a_try_it_upload_without_the_key_is_the_pages_challenge_and_uncounted(run: Any) -> None:
    """The connection leaves a Try-it POST without the API key to the page, as the ASGI app answers
    it: a 401 with the Basic challenge, not counted as an anomaly-score refusal (the red-team of the
    upload read by the connection found it counted on this path alone)."""

    async def test(config: Config, state: ServerState, asgi: httpx.AsyncClient) -> None:
        conn = Conn(config, state)
        conn.send(post(TRY, b"row=1,2", "application/x-www-form-urlencoded"))
        [(status, headers, _)] = await conn.responses(1)
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
        assert 'status="401"' not in _metrics(conn.service)
        assert conn.service.admission.requests == 0

    run(test, api_key="k")
