"""A budget of request-body bytes read in one turn of the event loop, so that every turn stays short.

uvloop (libuv) reads a readable socket up to 32 times 256 KiB before it looks at the next one, and
each byte of a body is then copied in the loop's thread (into a bytes object, into httptools'
chunk, into the joined body). When many clients send large bodies at once, one turn reads from
every one of them: 17 concurrent 4 MiB JSON bodies made one turn of about 200 ms (the loop thread
was on a CPU, not waiting for the GIL), and a /health/live probe that arrived meanwhile waited for
it. So the HTTP layer charges what its body shortcut reads of a body, or of a refused body it
drains, to `ReadTurns` (one per server, in `service.http.connections.ConnectionTable`): past
READ_TURN_BYTES in one turn, the connection that passed it, and any other that reads in the same
turn, stop reading. At the start of each next turn, as many of
them resume, the longest paused first, as one turn's reads (256 KiB each) fit in READ_TURN_BYTES;
the others wait their turn. A turn then reads about READ_TURN_BYTES, however many clients send at
once, and the sockets of other requests (probes) are looked at in between. The data waits in the
kernel's socket buffers meanwhile; requests served by the ASGI path keep uvicorn's own flow control.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

READ_SIZE = 256 * 1024  # what uvloop and asyncio read from a socket at once


class Reader(Protocol):
    def pause_turn(self) -> None:
        """Stop reading this connection until `resume_turn`."""

    def resume_turn(self) -> None:
        """Read again, unless the connection's state says someone else now decides."""


class ReadTurns:
    """Bytes read in the current loop turn, and the connections paused until the next one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.paused: list[Reader] = []
        self.pauses = 0  # connections paused at a turn's budget, since the start
        self._next_turn: asyncio.Handle | None = None

    def charge(self, reader: Reader, size: int) -> None:
        """Count `size` bytes just read by `reader`; past the budget, pause it until the next turn."""
        if self._next_turn is None:
            self._next_turn = asyncio.get_running_loop().call_soon(self._turn)
        self.used += size
        if self.used > self.limit:
            reader.pause_turn()
            self.paused.append(reader)
            self.pauses += 1

    def _turn(self) -> None:
        """A new turn: resume as many paused readers as one turn's reads fit, the longest paused
        first; the others wait for the next turn."""
        self._next_turn = None
        self.used = 0
        room = max(1, self.limit // READ_SIZE)
        resumed, self.paused = self.paused[:room], self.paused[room:]
        for reader in resumed:
            reader.resume_turn()
        if self.paused:
            self._next_turn = asyncio.get_running_loop().call_soon(self._turn)
