"""Admission control: a memory budget for request bodies and a bound on requests in flight.

Every inference request takes a `Ticket` once its headers are checked and before a byte of its
body is buffered: the ticket reserves the declared Content-Length (weighted by what parsing costs:
a JSON body becomes Python floats, then an array, about four times its bytes; a `.npy` or
multipart body about twice), and grows as a body of unknown length arrives. A request that would
pass MAX_INFLIGHT_BYTES, or find MAX_CONCURRENCY + MAX_QUEUE requests already admitted, is shed
with `Overloaded` (503 + Retry-After) at once; a request alone is always admitted, so a body under
MAX_BODY_BYTES can be served even when the budget is smaller. Of the admitted requests, at most
MAX_CONCURRENCY compute in worker threads at once (`slot`); the others wait in the queue. Both
fast paths and the ASGI path take the same tickets; `/metrics` reads the counters. Once its rows
are parsed a request's ticket also reserves its predicted answer (`Ticket.reserve`), from a worker
thread as often as from the event loop: the counters change under a lock. What connections hold
(their count, drain slots, read turns) is the HTTP layer's (`service.http.connections`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from service.errors import Overloaded
from service.settings import Settings

T = TypeVar("T")

RETRY_AFTER_S = 1
JSON_WEIGHT = 4  # bytes held per body byte while a JSON body is parsed (floats, lists, the array)
BINARY_WEIGHT = 2  # .npy and multipart: the body and the float32 rows made from it


class Admission:
    """Counts what is admitted; `enter` hands out tickets or raises Overloaded."""

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.max_inflight_bytes
        self.max_requests = settings.max_concurrency + settings.max_queue
        self.concurrency = settings.max_concurrency
        self.bytes = 0  # weighted bytes reserved by the tickets out
        self.requests = 0  # tickets out
        self.shed: dict[str, int] = {"bytes": 0, "requests": 0}  # 503s by the limit that shed them
        self._slots: asyncio.Semaphore | None = None
        self.lock = threading.Lock()

    def enter(self, declared: int | None, weight: int) -> Ticket:
        """Admit one request whose body declares `declared` bytes (None: unknown, chunked)."""
        with self.lock:
            if self.requests >= self.max_requests:
                self.shed["requests"] += 1
                raise Overloaded(
                    f"{self.requests} requests in flight", "MAX_CONCURRENCY + MAX_QUEUE", RETRY_AFTER_S
                )
            ticket = Ticket(self, weight)
            self.requests += 1
        if declared:
            ticket.grow(declared)
        return ticket

    async def run_in_thread(self, timeout: float, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in a worker thread once one of MAX_CONCURRENCY compute slots is free; the
        wait for the slot counts against `timeout`. TimeoutError past it (the thread is abandoned)."""
        if self._slots is None:  # made in the running loop (the app may be built outside it)
            self._slots = asyncio.Semaphore(self.concurrency)
        with anyio.fail_after(timeout):
            async with self._slots:
                return await anyio.to_thread.run_sync(work, *args, abandon_on_cancel=True)


class Ticket:
    """One admitted request's reservation; `release` exactly once (more calls do nothing)."""

    __slots__ = ("admission", "held", "released", "weight")

    def __init__(self, admission: Admission, weight: int) -> None:
        self.admission = admission
        self.weight = weight
        self.held = 0
        self.released = False

    def grow(self, size: int) -> None:
        """Reserve `size` more body bytes (weighted), or release the ticket and raise Overloaded."""
        self.reserve(size * self.weight, "request bodies")

    def cover(self, size: int) -> None:
        """A body read so far to `size` bytes: grow the reservation when it passes what is held
        (a body without Content-Length), or release the ticket and raise Overloaded."""
        if size * self.weight > self.held:
            self.grow(size - self.held // self.weight)

    def reserve(self, add: int, what: str = "request bodies and answers") -> None:
        """Reserve `add` more bytes as they are, or release the ticket and raise Overloaded."""
        a = self.admission
        with a.lock:
            alone = a.requests == 1 and a.bytes == self.held  # a lone request always passes
            over = not alone and a.bytes + add > a.max_bytes
            if over:
                a.shed["bytes"] += 1
                total = a.bytes + add
            else:
                a.bytes += add
                self.held += add
        if over:
            self.release()
            raise Overloaded(
                f"{total} bytes of {what} would be in flight, over {a.max_bytes}",
                "MAX_INFLIGHT_BYTES",
                RETRY_AFTER_S,
            )

    def release(self) -> None:
        a = self.admission
        with a.lock:
            if self.released:
                return
            self.released = True
            a.bytes -= self.held
            a.requests -= 1
            self.held = 0
