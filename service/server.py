"""uvicorn's Server with a drain before the shutdown, for `python -m service` (one worker).

On SIGTERM the app's readiness answers 503 at once (`app.state.draining`) while every request is
still served, for SHUTDOWN_DRAIN_S, so a load balancer stops sending new ones; then uvicorn's own
shutdown runs: new connections are refused, idle ones close (`service.fastpath.protocol` gives an
idle connection a moment to deliver a request already on its way), and every received request is
answered within SHUTDOWN_TIMEOUT_S. A second signal, or SIGINT, exits without the drain.
`service.fastpath.compat` checks at start-up that the uvicorn methods overridden here, and the
attributes used, are still there.

Closing a listener resets what it accepted but has not attached yet (asyncio drops a connection
accepted once its server is closed) and the connections in its backlog (handshaken by the kernel,
not yet accepted), requests already sent included. So the shutdown first stops the loop's
accepting and lets it attach what it took; then a copy of each listener accepts until its backlog
is empty and closes it in the same step; each connection taken is served like any other (its
request answered with `Connection: close`), and a connection that arrives after is refused at
connect().
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_s: float, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_s = drain_s
        self.on_drain = on_drain
        self.exit_at: float | None = None  # monotonic time the drain ends

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.exit_at is None and not self.should_exit:
            self.on_drain()  # a flag: safe in a signal handler
            self.exit_at = time.monotonic() + self.drain_s
            return
        self.on_drain()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.exit_at is not None and time.monotonic() >= self.exit_at:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        servers = list(getattr(self, "servers", []))
        if isinstance(loop, asyncio.BaseEventLoop):  # asyncio's own loop (uvloop attaches at once)
            for server in servers:  # stop accepting, and attach what was accepted
                for listener in server.sockets:
                    loop.remove_reader(listener.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
        taken: list[socket.socket] = []
        for server in servers:
            copies = [socket.socket(fileno=socket.dup(s.fileno())) for s in server.sockets]
            server.close()  # the loop stops accepting; the copies keep the listeners open
            for copy in copies:
                copy.setblocking(False)
                with contextlib.suppress(OSError):  # BlockingIOError: the backlog is empty
                    while True:
                        taken.append(copy.accept()[0])
                copy.close()  # the last copy: the listener is closed, a new connect is refused
        for conn in taken:  # served as uvicorn's own listener would (it is shutting down: closes after)
            with contextlib.suppress(OSError):
                await loop.connect_accepted_socket(self._protocol, conn)
        await super().shutdown(sockets)

    def _protocol(self) -> asyncio.Protocol:
        config = self.config
        protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol
