"""The connection table: every open connection of one server, and what they share.

One table per server (`ConnectionTable`), shared by its connections and touched on the event loop
only. It keeps
  - the activity order: past MAX_CONNECTIONS (default: RLIMIT_NOFILE less a reserve) a new
    connection closes the one idle longest, or is refused (503, then closed) when none is idle, so
    idle sockets cannot take every descriptor from the health probes and the registry poller;
  - the drain slots: at most DRAINS_AT_ONCE refused bodies are read and dropped at once; the other
    connections with one wait unread, in order, for a slot (32 refused 16 MiB bodies read at once
    took both cores from the health probes);
  - the read turns (`service.readturns`): at most READ_TURN_BYTES of bodies read per loop turn;
  - the close counts by reason (timeouts, caps), which `/metrics` reports as
    `latentserve_connections_closed_total{reason}` through `report_to`.
A connection is any object with the `Member` methods; the table needs no socket.
"""

from __future__ import annotations

import collections
import contextlib
import weakref
from collections.abc import Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from service.readturns import ReadTurns
from service.settings import Settings


class Member(Protocol):
    """What the table asks of a connection."""

    def is_idle(self) -> bool:
        """No request in progress and no byte of the next one received."""

    def evict(self) -> None:
        """Close now, to make room for a new connection."""

    def drains(self) -> bool:
        """A refused body is still to be read and dropped, and the connection is open."""

    def pause_reading(self) -> None:
        """Read nothing more until `resume_reading`."""

    def resume_reading(self) -> None:
        """Read again."""


class ConnectionTable:
    """One server's open connections, least recently active first; its drain slots; its close counts."""

    def __init__(self, settings: Settings) -> None:
        self.max_connections = settings.connection_cap()
        self.drains_at_once = settings.drains_at_once
        self.reads = ReadTurns(settings.read_turn_bytes)  # body bytes read per loop turn
        self.by_activity: collections.OrderedDict[Member, None] = collections.OrderedDict()
        self.drain_slots: set[Member] = set()  # reading and dropping a refused body now
        self.drain_queue: collections.deque[Member] = collections.deque()  # waiting, unread, for a slot
        self.closed: dict[str, int] = {}  # connections closed by a timeout or a cap, by reason

    @property
    def open(self) -> int:
        return len(self.by_activity)

    @property
    def draining(self) -> int:
        return len(self.drain_slots)

    def touch(self, conn: Member) -> None:
        """`conn` connected, received bytes or completed an answer: it moves to the end of the order."""
        order = self.by_activity
        order[conn] = None
        order.move_to_end(conn)

    def full(self) -> bool:
        return len(self.by_activity) > self.max_connections

    def make_room(self, newcomer: Member) -> bool:
        """Past MAX_CONNECTIONS: evict the connection idle the longest, other than `newcomer`; False
        when every connection is busy (the newcomer is then refused). Counted either way."""
        for conn in self.by_activity:  # the least recently active first: no scan when one is idle
            if conn is not newcomer and conn.is_idle():
                self.close("connection_cap_idle")
                conn.evict()
                return True
        self.close("connection_cap")
        return False

    def forget(self, conn: Member) -> None:
        """`conn` is gone: drop it from the order, and give its drain slot to the next waiting."""
        self.by_activity.pop(conn, None)
        self.end_drain(conn)

    def start_drain(self, conn: Member) -> None:
        """`conn` has a refused body to drop: read it now if fewer than DRAINS_AT_ONCE others are,
        else stop reading `conn` until a slot is free."""
        if len(self.drain_slots) < self.drains_at_once:
            self.drain_slots.add(conn)
        elif conn.drains():
            conn.pause_reading()  # its body timer waits too: we paused, not the client
            self.drain_queue.append(conn)

    def holds_drain(self, conn: Member) -> bool:
        return conn in self.drain_slots

    def end_drain(self, conn: Member) -> None:
        """`conn`'s refused body is read (or it left): its slot goes to the longest waiting."""
        if conn not in self.drain_slots:
            if self.drain_queue:  # (remove raises on an empty queue: an exception per connection)
                with contextlib.suppress(ValueError):
                    self.drain_queue.remove(conn)
            return
        self.drain_slots.discard(conn)
        while self.drain_queue:
            waiting = self.drain_queue.popleft()
            if waiting.drains():
                self.drain_slots.add(waiting)
                waiting.resume_reading()
                return

    def close(self, reason: str) -> None:
        """Count a connection closed by a timeout or a cap."""
        self.closed[reason] = self.closed.get(reason, 0) + 1

    def report_to(self, collectors: CollectorRegistry) -> None:
        """Add this table's close counts to `latentserve_connections_closed_total` in `collectors`."""
        collector = _REPORTED.get(collectors)
        if collector is None:
            collector = _REPORTED[collectors] = ClosedConnections()
            collectors.register(collector)
        collector.tables.add(self)


class ClosedConnections(Collector):
    """Read at scrape time: the connections closed by a timeout or a cap, summed over the tables."""

    def __init__(self) -> None:
        self.tables: weakref.WeakSet[ConnectionTable] = weakref.WeakSet()

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts: dict[str, int] = {}
        for table in list(self.tables):
            for reason, count in table.closed.items():
                counts[reason] = counts.get(reason, 0) + count
        family = CounterMetricFamily(
            "latentserve_connections_closed",
            "Connections closed by a timeout or a header cap",
            labels=["reason"],
        )
        for reason, count in sorted(counts.items()):
            family.add_metric([reason], float(count))
        yield family


_REPORTED: weakref.WeakKeyDictionary[CollectorRegistry, ClosedConnections] = weakref.WeakKeyDictionary()
