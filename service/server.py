"""uvicorn's Server with a drain before the shutdown, for `python -m service` (one worker).

On SIGTERM the app's readiness answers 503 at once (`app.state.draining`) while every request is
still served, for SHUTDOWN_DRAIN_S, so a load balancer stops sending new ones; then uvicorn's own
shutdown runs: new connections are refused, idle ones close (`service.fastpath.protocol` gives an idle
connection a moment to deliver a request already on its way), and every received request is
answered within SHUTDOWN_TIMEOUT_S. A second signal, or SIGINT, exits without the drain.
"""

from __future__ import annotations

import signal
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
