"""The body shortcut: the inference POSTs read straight from the parser, without an ASGI cycle.

For `POST /encode`, `/decode`, `/reconstruct`, `/anomaly-score`, `/sample` and
`/v2/models/{m}[/versions/{v}]/infer` (`Door.route`) with a JSON, `.npy` or binary-tensor body, on
a connection with no ASGI request in progress, the shortcut admits the request on its headers
(`Door.admit`: the API key, Accept, Content-Type and a ticket, before a byte of body is kept),
collects the body chunks as the parser hands them over and gives the whole request to the core
(`Door.infer`); `Reply` writes the answer when the core calls it. Multipart bodies,
`Expect: 100-continue` and upgrades are left to uvicorn's ASGI path.

A refused body (413, 503, a header check's error) is answered at once and then read and dropped
(up to LINGER_BYTES past the limit) in a drain slot of the connection table, so the client reads the
answer instead of a reset; a header check's error keeps the connection, a shed or too large body
closes it. An answer the client does not read (`Wire.write_paused`) keeps its admission, and the
connection reads nothing more until the client reads it. The shortcut writes through `Wire`,
which the server's protocol implements; it needs no socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httptools
from starlette.responses import Response

from service import inference
from service.admission import Ticket
from service.codecs import JSON, NPY, error_response, media_type
from service.codecs.body import content_length
from service.errors import LatentServeError
from service.http.connections import ConnectionTable, Member
from service.http.door import Door
from service.inference import ModelRef, Refused, Verb
from service.protocols.v2.wire import OCTET

LINGER_BYTES = 1 << 20  # of a refused body, read and dropped past the limit before closing anyway


class Wire(Member, Protocol):
    """The connection as the shortcut writes to it (the server's protocol implements it)."""

    def write_response(self, response: Response, close: bool) -> None:
        """Write `response` whole, with the server's default headers and `Connection: close` if asked."""

    def log_access(self, target: str, version: str, status: int) -> None:
        """One line of the access log for an answered POST."""

    def closing(self) -> bool:
        """The connection is closing or closed."""

    def close(self) -> None:
        """Close once what is written is flushed."""

    def write_paused(self) -> bool:
        """The socket's buffer passed its high-water mark: the client is not reading."""

    def carry_on(self) -> None:
        """The answer is complete: count it; re-arm keep-alive or start the next pipelined request."""


@dataclass(frozen=True, slots=True)
class Head:
    """A request's line and headers as parsed."""

    method: bytes
    url: bytes
    headers: Sequence[tuple[bytes, bytes]]
    version: str
    keep_alive: bool
    plain: bool  # no ASGI request in progress, no Expect: 100-continue, no Upgrade

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def fields(self) -> dict[str, str]:
        """Lower-case names to values; of repeated headers the first counts, as in starlette."""
        out: dict[str, str] = {}
        for name, value in self.headers:
            out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        return out

    def declared(self) -> int | None:
        """Content-Length, or None when absent or not a number."""
        return content_length(self.header(b"content-length"))


def _shortcut_route(door: Door, head: Head) -> tuple[Verb, ModelRef | None, str] | None:
    """The verb, the model the path names and the query of an inference POST with a body the shortcut reads
    (JSON, .npy, binary tensors), or None: uvicorn's path (multipart is read by starlette's parser;
    an unsupported type is answered by the ASGI path)."""
    if not head.plain or head.method != b"POST":
        return None
    url = httptools.parse_url(head.url)
    found = door.route(url.path.decode("latin-1"))
    if found is None:
        return None
    ctype = media_type(head.header(b"content-type")) or JSON
    if ctype not in (JSON, NPY, OCTET) and not ctype.endswith("+json"):
        return None
    return found[0], found[1], (url.query or b"").decode("latin-1")


class BodyShortcut:
    """One connection's inference request read on the shortcut, and its refused bodies dropped."""

    def __init__(self, wire: Wire, door: Door | None, table: ConnectionTable, max_body: int) -> None:
        self.wire = wire
        self.door = door  # None: every request takes uvicorn's path
        self.table = table
        self.max_body = max_body
        self.head: Head | None = None
        self.verb: Verb | None = None  # the request being read here (None: uvicorn's path has it)
        self.query = ""
        self.ref: ModelRef | None = None  # the model the path names (/v2)
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = max_body  # of this body: smaller for JSON (MAX_JSON_BODY_BYTES)
        self.keep_alive = True
        self.admitted: inference.Ticket | None = None  # the admitted request being read
        self.ticket: Ticket | None = None  # its memory reservation (released by its reply)
        self.pending = 0  # answers not yet written on this connection
        self.close_after = False  # close after the answer being written
        self.discarding = False  # the request was refused: what the parser hands over is dropped
        self.lingering = False  # a refused body is being read and dropped before the close
        self.linger_keep_alive = False  # ... or before the connection carries on
        self.parked: Ticket | None = None  # the admission of an answer the client has not read
        self.parked_answer = False

    def idle(self) -> bool:
        return not self.pending and self.verb is None and not self.lingering

    def busy(self) -> bool:
        """An answer is pending, or parked unread: the next request waits behind it (uvicorn's pipeline)."""
        return bool(self.pending) or self.parked_answer

    def reading(self) -> bool:
        """Reading a body here, or dropping a refused one in its drain slot (its bytes count in the turn)."""
        return (self.verb is not None or (self.lingering and self.table.holds_drain(self.wire))) and not (
            self.wire.closing()
        )

    # ---- the request -------------------------------------------------------------------------------
    def begin(self, head: Head) -> bool:
        """Take `head`'s request here (True: read here, or refused and its body dropped), or leave it
        to uvicorn (False)."""
        # busy: keep the answers in order, and unread ones bounded, behind it in uvicorn's pipeline
        found = None if self.door is None or self.busy() else _shortcut_route(self.door, head)
        if found is None:
            return self._refuses_large_asgi_body(head)
        assert self.door is not None
        self.head, (self.verb, self.ref, self.query) = head, found
        self.chunks, self.size, self.limit, self.discarding = [], 0, self.max_body, False
        self.keep_alive = head.version != "1.0" and head.keep_alive
        # the API key, Accept, Content-Type, the declared size and the admission, before a byte of
        # body is kept
        admitted = self.door.admit(self.verb, self.ref, head.fields(), self.query)
        if isinstance(admitted, Refused):
            # a header check's error keeps the connection (the body is dropped); shed or too large closes
            declared = head.declared()
            oversized = declared is not None and declared > self.max_body
            self._answer_and_drop(admitted.response, self.keep_alive and not admitted.shed and not oversized)
            return True
        self.admitted, self.ticket, self.limit = admitted, admitted.hold, admitted.body_limit
        return True

    def _refuses_large_asgi_body(self, head: Head) -> bool:
        """A POST to an inference route that the ASGI path reads (multipart), declaring a body over
        MAX_BODY_BYTES: answered here and its body dropped before the close, as on the shortcut (the
        ASGI answer closed with the body unread, and the client saw a reset instead of the 413)."""
        if self.door is None or self.busy() or head.method != b"POST":
            return False
        declared = head.declared()
        if declared is None or declared <= self.max_body:
            return False
        try:
            found = self.door.route(httptools.parse_url(head.url).path.decode("latin-1"))
        except LatentServeError:
            return False
        if found is None:
            return False
        self.head, self.verb, self.size = head, found[0], 0
        self._answer_and_drop(self.door.refuse_oversized(found[0], found[1], head.fields()))
        return True

    def on_body(self, body: bytes) -> bool:
        """A chunk of body: kept (the request is read here), dropped (refused), or uvicorn's (False)."""
        if self.verb is None:
            if not self.discarding:
                return False
            if self.lingering:  # the refused body: drop it, up to LINGER_BYTES over the limit
                self.size += len(body)
                if self.size > self.max_body + LINGER_BYTES:
                    self.wire.close()
            return True
        self.size += len(body)
        if self.size > self.limit:
            self.too_large()
            return True
        ticket = self.ticket
        if ticket is not None:
            try:
                ticket.cover(self.size)  # no Content-Length: the reservation grows
            except LatentServeError as exc:
                self.ticket = None  # cover released it
                self._answer_and_drop(self._door().refuse(self.verb, exc), keep_alive=False)
                return True
        self.chunks.append(body)
        return True

    def on_message_complete(self) -> bool:
        """The request is read: served here, the refused body done with, or uvicorn's (False)."""
        verb, head = self.verb, self.head
        if verb is None:
            if not self.discarding:
                return False
            if self.lingering:  # the refused body is read: now close, or carry on
                self.lingering = False
                self.table.end_drain(self.wire)
                if self.linger_keep_alive and not self.close_after:
                    self.discarding = False
                    self.wire.carry_on()
                else:
                    self.wire.close()
            return True
        assert head is not None
        self.verb = None
        chunks, self.chunks = self.chunks, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.pending += 1
        admitted, self.admitted = self.admitted, None
        ticket, self.ticket = self.ticket, None  # the reply releases it
        assert admitted is not None
        self._door().infer(admitted, body, Reply(self, head, self.keep_alive, ticket=ticket))
        return True

    # ---- refusals ----------------------------------------------------------------------------------
    def too_large(self) -> None:
        """A body past its ticket's limit while read: answer 413 now (with `Connection: close`),
        then drop the rest of the body before closing: closing with unread data would reset the
        connection."""
        admitted = self.admitted
        assert self.verb is not None and admitted is not None
        self.release_ticket()
        self._answer_and_drop(self._door().too_large(admitted))

    def refuse_now(self, exc: LatentServeError, head: Head) -> None:
        """Answer `exc` with `Connection: close` before reading further, and close."""
        self.verb, self.discarding, self.lingering = None, True, False
        self.pending += 1
        Reply(self, head, keep_alive=False)(error_response(exc))

    def _answer_and_drop(self, response: Response, keep_alive: bool = False) -> None:
        self.verb, self.discarding, self.lingering = None, True, True
        self.linger_keep_alive = keep_alive
        self.pending += 1
        Reply(self, self.head, keep_alive=keep_alive, linger=True)(response)
        self.table.start_drain(self.wire)

    def drop_rest(self) -> None:
        """An ASGI answer closed the connection with its body still arriving: drop it, then close."""
        self.discarding, self.size, self.lingering, self.linger_keep_alive = True, 0, True, False
        self.table.start_drain(self.wire)
        if self.table.holds_drain(self.wire):
            self.wire.resume_reading()  # uvicorn paused it when the unread body passed its buffer

    def abandon(self) -> None:
        """The request being read is dropped (a timeout): what it holds is released."""
        self.verb, self.discarding = None, True
        self.release_ticket()

    def lost(self) -> None:
        """The connection is gone: release what it holds."""
        self.release_ticket()
        self.unpark()
        self.lingering = False

    def release_ticket(self) -> None:
        self.admitted = None
        if self.ticket is not None:
            self.ticket.release()
            self.ticket = None

    def unpark(self) -> bool:
        """Release a parked answer's admission; True when one was parked (the client read it)."""
        parked, self.parked_answer = self.parked_answer, False
        if self.parked is not None:
            self.parked.release()
            self.parked = None
        return parked

    def _door(self) -> Door:
        assert self.door is not None
        return self.door


class Reply:
    """Writes one answer of the shortcut on its connection, then lets the connection carry on
    (keep-alive timer, the next pipelined request) or closes it."""

    __slots__ = ("keep_alive", "linger", "shortcut", "target", "ticket", "version")

    def __init__(
        self,
        shortcut: BodyShortcut,
        head: Head | None,
        keep_alive: bool,
        linger: bool = False,
        ticket: Ticket | None = None,
    ) -> None:
        self.shortcut = shortcut
        self.keep_alive = keep_alive
        self.linger = linger  # keep the connection open until the refused body is read
        self.ticket = ticket  # the admission of this request, released with the answer
        self.target = head.url.decode("latin-1") if head is not None else ""
        self.version = head.version if head is not None else "1.1"

    def __call__(self, response: Response) -> None:
        s = self.shortcut
        wire = s.wire
        s.pending -= 1
        if wire.closing():  # the client left meanwhile
            self._release()
            return
        keep_alive = self.keep_alive and not s.close_after
        wire.write_response(response, close=not keep_alive)
        wire.log_access(self.target, self.version, response.status_code)
        if self.linger:
            self._release()
            return  # on_message_complete closes once the body is read
        if not keep_alive:
            self._release()
            wire.close()
            return
        if wire.write_paused():
            # the client is not reading: the answer keeps its admission and the connection reads
            # nothing more until it does (`unpark`), so unread pipelined answers cannot pile up
            s.parked, self.ticket = self.ticket, None
            s.parked_answer = True
            wire.pause_reading()
            return
        self._release()
        wire.carry_on()  # counts the request; re-arms keep-alive or starts the next one

    def _release(self) -> None:
        if self.ticket is not None:
            self.ticket.release()
            self.ticket = None
