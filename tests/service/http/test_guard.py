"""The per-connection guard (`service.http.guard`): timers and header caps, on a stand-in connection."""

from __future__ import annotations

import asyncio

from service.errors import HeadersTooLarge
from service.http.connections import ConnectionTable
from service.http.guard import Guard
from service.settings import Settings


class Conn:
    def __init__(self) -> None:
        self.closed = self.aborted = self.paused = False

    def closing(self) -> bool:
        return self.closed

    def read_paused(self) -> bool:
        return self.paused

    def timed_out(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True


def _guard(**settings: object) -> tuple[Guard, Conn, ConnectionTable]:
    limits = Settings(**settings)  # type: ignore[arg-type]
    table = ConnectionTable(limits)
    conn = Conn()
    return Guard(limits, table, asyncio.get_running_loop(), conn), conn, table


def test_a_head_or_body_that_stalls_is_closed_and_counted_by_its_reason() -> None:
    async def main() -> None:
        guard, conn, table = _guard(header_timeout_s=0.02, body_timeout_s=0.02)
        guard.expect_head()
        await asyncio.sleep(0.05)
        assert conn.closed and table.closed == {"header_timeout": 1}
        guard, conn, table = _guard(header_timeout_s=0.02, body_timeout_s=0.02)
        guard.expect_head()
        guard.head_read()
        guard.expect_body()
        await asyncio.sleep(0.05)
        assert conn.closed and table.closed == {"body_timeout": 1}

    asyncio.run(main())


def test_a_request_read_in_time_or_a_connection_we_paused_is_not_timed_out() -> None:
    async def main() -> None:
        guard, conn, table = _guard(header_timeout_s=0.02, body_timeout_s=0.03)
        guard.expect_head()
        guard.message_read()  # read in time: no deadline until the next request
        await asyncio.sleep(0.05)
        assert not conn.closed
        guard.expect_body()
        conn.paused = True  # waiting for its read turn or drain slot: the timer starts again
        await asyncio.sleep(0.05)
        assert not conn.closed and guard.timer is not None
        conn.paused = False
        await asyncio.sleep(0.05)
        assert conn.closed and table.closed == {"body_timeout": 1}

    asyncio.run(main())


def test_a_client_that_reads_nothing_is_aborted_after_the_write_timeout() -> None:
    async def main() -> None:
        guard, conn, table = _guard(write_timeout_s=0.02)
        guard.write_blocked()
        guard.write_unblocked()  # the client read
        await asyncio.sleep(0.04)
        assert not conn.closed
        guard.write_blocked()
        await asyncio.sleep(0.04)
        assert conn.aborted and table.closed == {"write_timeout": 1}

    asyncio.run(main())


def test_header_caps_are_431s_naming_the_settings() -> None:
    async def main() -> None:
        guard, _, table = _guard(max_headers=2, max_header_bytes=1024)
        assert guard.check_head(b"/encode", [(b"host", b"t")]) is None
        many = guard.check_head(b"/encode", [(b"x", b"v")] * 3)
        assert isinstance(many, HeadersTooLarge) and many.status_code == 431
        assert "3 header fields are more than 2" in str(many) and "LATENTSERVE_MAX_HEADERS" in str(many)
        big = guard.check_head(b"/encode", [(b"x", b"v" * 1024)])
        assert big is not None and "pass 1024 bytes" in str(big)
        guard.expect_head()
        guard.received(1000)
        assert guard.head_overflow() is None and not guard.idle()
        guard.received(30)  # a head still arriving past the cap
        assert guard.head_overflow() is not None
        guard.head_read()
        guard.received(5000)  # body bytes do not count
        assert guard.head_overflow() is None
        assert table.closed == {"header_too_large": 3}
        guard.stop()

    asyncio.run(main())


def test_one_timer_follows_the_deadline_as_it_moves() -> None:
    """The head's deadline, then the body's, on the one timer: a later deadline keeps the timer
    (which waits on for it), an earlier one replaces it; either way the close comes at the deadline
    in force, with its reason."""

    async def main() -> None:
        guard, conn, table = _guard(header_timeout_s=0.02, body_timeout_s=0.1)
        guard.expect_head()
        first = guard.timer
        guard.head_read()
        guard.expect_body()  # later than the head's: the same timer
        assert guard.timer is first
        await asyncio.sleep(0.05)  # past the head's deadline, before the body's
        assert not conn.closed
        await asyncio.sleep(0.1)
        assert conn.closed and table.closed == {"body_timeout": 1}

        guard, conn, table = _guard(header_timeout_s=0.02, body_timeout_s=0.1)
        guard.expect_body()
        guard.expect_head()  # earlier: a new timer at the earlier deadline
        await asyncio.sleep(0.05)
        assert conn.closed and table.closed == {"header_timeout": 1}
        guard.stop()
        assert guard.timer is None

    asyncio.run(main())
