"""The per-connection guard: the timers and the header caps that hold under slow clients and floods.

  - a request line and headers must arrive within HEADER_TIMEOUT_S (from the connection, or from the
    first byte of a request), a body within BODY_TIMEOUT_S of its headers; a connection that stalls is
    closed and what it sent dropped (an idle keep-alive connection closes on uvicorn's own timer);
  - a connection that we stopped reading (its turn, its drain slot) is not timed out for it: its
    timer starts again;
  - headers over MAX_HEADER_BYTES or MAX_HEADERS fields are a 431, then the close;
  - a client that reads nothing of its answer for WRITE_TIMEOUT_S is dropped.
The guard counts what it closes in the connection table and asks the connection (`Guarded`) to
close; it needs no socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from service.errors import HeadersTooLarge
from service.http.connections import ConnectionTable
from service.settings import Settings


class Guarded(Protocol):
    """What the guard asks of its connection."""

    def closing(self) -> bool:
        """The connection is closing or closed."""

    def read_paused(self) -> bool:
        """We stopped reading the connection (not the client's stall)."""

    def timed_out(self) -> None:
        """Drop the request being read and close."""

    def abort(self) -> None:
        """Close at once, without flushing what the client does not read."""


class Guard:
    """One connection's header and body deadline, its write deadline and its header caps."""

    __slots__ = (
        "conn", "deadline", "head_bytes", "loop", "reading_head", "reason", "settings", "table", "timer",
        "write_timer",
    )  # fmt: skip

    def __init__(
        self, settings: Settings, table: ConnectionTable, loop: asyncio.AbstractEventLoop, conn: Guarded
    ) -> None:
        self.settings = settings
        self.table = table
        self.loop = loop
        self.conn = conn
        self.reading_head = True  # a request line and headers are being read
        self.head_bytes = 0  # bytes received while they are
        self.deadline: float | None = None  # the header or body deadline (loop time), and why
        self.reason = ""
        self.timer: asyncio.TimerHandle | None = None  # fires at or before the deadline
        self.write_timer: asyncio.TimerHandle | None = None

    # ---- the head: its deadline and its caps -------------------------------------------------------
    def expect_head(self) -> None:
        self.reading_head = True
        self._arm(self.settings.header_timeout_s, "header_timeout")

    def head_read(self) -> None:
        """The headers are complete: their bytes no longer count."""
        self.reading_head = False
        self.head_bytes = 0

    def expect_body(self) -> None:
        self._arm(self.settings.body_timeout_s, "body_timeout")

    def message_read(self) -> None:
        """The whole request is read: no deadline until the next one begins."""
        self.disarm()
        self.reading_head = True
        self.head_bytes = 0

    def stop_reading(self) -> None:
        """The connection answers and closes: nothing more is read or timed."""
        self.disarm()
        self.reading_head = False

    def received(self, size: int) -> None:
        if self.reading_head:
            self.head_bytes += size  # head_read resets it once the headers are complete

    def idle(self) -> bool:
        """Between requests, with no byte of the next one received."""
        return self.reading_head and self.head_bytes == 0

    def head_overflow(self) -> HeadersTooLarge | None:
        """The 431 for a head still arriving past MAX_HEADER_BYTES, counted; None when within it."""
        if self.reading_head and self.head_bytes > self.settings.max_header_bytes:
            return self._too_large(
                f"the request line and headers pass {self.settings.max_header_bytes} bytes"
            )
        return None

    def check_head(self, url: bytes, headers: Sequence[tuple[bytes, bytes]]) -> HeadersTooLarge | None:
        """The 431 for complete headers over MAX_HEADERS fields or MAX_HEADER_BYTES, counted."""
        limits = self.settings
        if len(headers) > limits.max_headers:
            return self._too_large(f"{len(headers)} header fields are more than {limits.max_headers}")
        size = len(url) + sum(len(name) + len(value) + 4 for name, value in headers)
        if size > limits.max_header_bytes:
            return self._too_large(f"the request line and headers pass {limits.max_header_bytes} bytes")
        return None

    def _too_large(self, why: str) -> HeadersTooLarge:
        self.table.close("header_too_large")
        return HeadersTooLarge(
            f"headers: {why} (LATENTSERVE_MAX_HEADERS / LATENTSERVE_MAX_HEADER_BYTES)", field="headers"
        )

    # ---- the timers --------------------------------------------------------------------------------
    # One timer a connection: moving the deadline later (each request's head, then its body) keeps
    # the timer, which re-arms for the new deadline when it fires; only an earlier deadline replaces
    # it. A timer armed and cancelled three times per request was 7% of an aborted upload's cost.
    def _arm(self, seconds: float, reason: str) -> None:
        self.deadline, self.reason = self.loop.time() + seconds, reason
        timer = self.timer
        if timer is None or timer.when() > self.deadline:
            if timer is not None:
                timer.cancel()
            self.timer = self.loop.call_at(self.deadline, self._fire)

    def disarm(self) -> None:
        self.deadline = None  # the timer finds nothing to do when it fires (`stop` cancels it)

    def _fire(self) -> None:
        self.timer = None
        if self.deadline is None:
            return
        if self.loop.time() < self.deadline:  # moved later meanwhile
            self.timer = self.loop.call_at(self.deadline, self._fire)
            return
        self.deadline = None
        self._timed_out(self.reason)

    def _timed_out(self, reason: str) -> None:
        """A request line, headers or body did not arrive in time: close, dropping what was read."""
        if self.conn.closing():
            return
        if self.conn.read_paused():  # we stopped reading (a body waits its turn): not the client
            self._arm(self.settings.body_timeout_s, reason)
            return
        self.table.close(reason)
        self.conn.timed_out()

    def write_blocked(self) -> None:
        """The socket's buffer passed its high-water mark: the client has WRITE_TIMEOUT_S to read."""
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(self.settings.write_timeout_s, self._write_timed_out)

    def write_unblocked(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _write_timed_out(self) -> None:
        self.write_timer = None
        if not self.conn.closing():
            self.table.close("write_timeout")
            self.conn.abort()

    def stop(self) -> None:
        """The connection is gone: cancel every timer."""
        self.disarm()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.write_unblocked()
