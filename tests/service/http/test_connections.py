"""The connection table (`service.http.connections`) on stand-in connections: no socket needed."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest

from service.http.connections import ConnectionTable
from service.settings import Settings


class Conn:
    """A connection as the table sees it: idle or busy, reading or paused, open or evicted."""

    def __init__(self, idle: bool = True, draining: bool = False) -> None:
        self.idle = idle
        self.draining = draining  # has a refused body to drop
        self.evicted = False
        self.paused = False

    def is_idle(self) -> bool:
        return self.idle and not self.evicted

    def evict(self) -> None:
        self.evicted = True

    def drains(self) -> bool:
        return self.draining and not self.evicted

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def test_past_the_cap_the_longest_idle_connection_is_evicted_and_counted() -> None:
    table = ConnectionTable(Settings(max_connections=2))
    first, second = Conn(), Conn()
    for conn in (first, second):
        table.touch(conn)
    assert not table.full()
    table.touch(first)  # first was active again: second is now idle the longest
    newcomer = Conn()
    table.touch(newcomer)
    assert table.full() and table.make_room(newcomer)
    assert second.evicted and not first.evicted and not newcomer.evicted
    table.forget(second)
    assert table.open == 2 and table.closed == {"connection_cap_idle": 1}


def test_when_every_connection_is_busy_the_newcomer_is_refused() -> None:
    table = ConnectionTable(Settings(max_connections=1))
    busy, newcomer = Conn(idle=False), Conn()
    table.touch(busy)
    table.touch(newcomer)
    assert not table.make_room(newcomer)  # the newcomer itself is never its own victim
    assert not busy.evicted and not newcomer.evicted
    assert table.closed == {"connection_cap": 1}


def test_refused_bodies_take_drain_slots_in_order_and_a_leaver_frees_its_turn() -> None:
    table = ConnectionTable(Settings(drains_at_once=1))
    first, second, third = (Conn(draining=True) for _ in range(3))
    for conn in (first, second, third):
        table.start_drain(conn)
    assert table.holds_drain(first) and table.draining == 1
    assert second.paused and third.paused and list(table.drain_queue) == [second, third]
    second.evicted = True  # left while waiting: skipped when the slot frees
    table.end_drain(first)
    assert table.holds_drain(third) and not third.paused and not table.drain_queue
    table.forget(third)
    assert table.draining == 0


def test_read_turns_and_caps_are_settings() -> None:
    table = ConnectionTable(Settings(read_turn_bytes=1 << 16, drains_at_once=3, max_connections=9))
    assert (table.reads.limit, table.drains_at_once, table.max_connections) == (1 << 16, 3, 9)


def test_close_counts_are_reported_summed_over_the_tables_of_one_registry() -> None:
    collectors = CollectorRegistry()
    tables = [ConnectionTable(Settings()) for _ in range(2)]
    for table in tables:
        table.report_to(collectors)
        table.report_to(collectors)  # once per table, however often asked
        table.close("header_timeout")
    tables[0].close("write_timeout")
    text = generate_latest(collectors).decode()
    assert 'latentserve_connections_closed_total{reason="header_timeout"} 2.0' in text
    assert 'latentserve_connections_closed_total{reason="write_timeout"} 1.0' in text


def test_a_table_reads_turns_on_the_running_loop() -> None:
    async def main() -> None:
        table = ConnectionTable(Settings(read_turn_bytes=1 << 16))

        class Reader:
            paused = False

            def pause_turn(self) -> None:
                self.paused = True

            def resume_turn(self) -> None:
                self.paused = False

        reader = Reader()
        table.reads.charge(reader, (1 << 16) + 1)
        assert reader.paused
        await asyncio.sleep(0)
        assert not reader.paused

    asyncio.run(main())
