"""Try-it's upload, read on the connection before its ASGI request cycle starts.

The version page's form (`POST /ui/models/{name}/versions/{v}/try`) is answered by the ASGI app (it
renders the page), but an upload that never completes needs none of it: an aborted upload used to
cost a whole request cycle (uvicorn's cycle and task, the Try-it handler waking on each chunk, its
empty 499), which made 2,000 aborted uploads hold the event loop long enough to delay /health/live
(issue 22, break 9). On `python -m service` the form's POST is admitted on its headers here (`Door.admit`
with the form's verb: the page's key, the form's Content-Type, the declared size and the memory
reservation), its body kept within the ticket's limit, and only the whole upload starts the cycle,
with the ticket and the chunks in its scope (`tryit.UPLOAD`), so the handler reads nothing. An upload
that stops mid-body (reset, timeout) is released and counted as a 499 without the app. A refusal
starts the cycle at once with the `Refused` in its scope (counted once), and the app shows it on the
page as before: on the headers, the body then arrives in uvicorn's cycle; a body that outgrows its
ticket (no Content-Length), from that chunk on. Either way the connection drops the unread rest
after the answer (`LatentServeProtocol.close_after_body`). A request without the API key is left
to uvicorn's cycle as it was: the page answers it with a Basic challenge, not counted (as with
LATENTSERVE_FAST_PATH=false).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

import httptools

from service.errors import ClientClosed, LatentServeError
from service.http.door import Door
from service.http.shortcut import Head
from service.inference import ModelRef, Refused, Ticket
from service.ui.tryit import TRY, TRY_PATH, Upload


class FormUpload:
    """One connection's Try-it upload while its body arrives (at most one at a time)."""

    __slots__ = ("chunks", "door", "size", "start_cycle", "ticket")

    def __init__(self, door: Door | None, start_cycle: Callable[[Upload | Refused], None]) -> None:
        self.door = door  # None: every request takes uvicorn's path
        self.start_cycle = start_cycle  # starts the request's ASGI cycle, with this in its scope
        self.ticket: Ticket | None = None  # the upload being read here (None: not reading)
        self.chunks: list[bytes] = []
        self.size = 0

    @property
    def reading(self) -> bool:
        return self.ticket is not None

    def begin(self, head: Head) -> bool:
        """Take a Try-it POST's body here (True: read here, or refused and its cycle started with
        the refusal), or leave the request to uvicorn's cycle (False)."""
        if self.door is None or not head.plain or head.method != b"POST" or not head.url.startswith(b"/ui/"):
            return False
        path = httptools.parse_url(head.url).path.decode("latin-1")
        match = TRY_PATH.fullmatch(unquote(path) if "%" in path else path)  # as uvicorn's scope has it
        if match is None:
            return False
        fields = head.fields()
        if self.door.key_refused(TRY, fields):  # the page answers it with a Basic challenge, uncounted
            return False
        admitted = self.door.admit(TRY, ModelRef(match[1], match[2]), fields, "")
        if isinstance(admitted, Refused):
            self.start_cycle(admitted)
            return True
        self.ticket, self.chunks, self.size = admitted, [], 0
        return True

    def on_body(self, body: bytes) -> bool:
        """A chunk of the upload, kept (True); False when no upload is read here."""
        ticket = self.ticket
        if ticket is None:
            return False
        self.size += len(body)
        try:
            if self.size > ticket.body_limit:
                raise self._door().body_too_large(ticket)
            if ticket.hold is not None:
                ticket.hold.cover(self.size)  # no Content-Length: the reservation grows
        except LatentServeError as exc:  # shown on the page; the rest of the body is not kept
            self._release()
            self.start_cycle(self._door().fail(ticket, exc))
            return True
        self.chunks.append(body)
        return True

    def complete(self) -> bool:
        """The upload is whole: its cycle starts with it (True); False when none is read here."""
        ticket = self.ticket
        if ticket is None:
            return False
        upload = Upload(ticket, self.chunks)  # the handler releases the ticket
        self.ticket, self.chunks = None, []
        self.start_cycle(upload)
        return True

    def lost(self) -> None:
        """The connection closed (or timed out) mid-upload: release it, counted as a 499."""
        ticket = self.ticket
        if ticket is not None:
            self.ticket, self.chunks = None, []
            closed = ClientClosed("try: the client closed the connection before its upload was read")
            self._door().drop(ticket, closed)

    def _release(self) -> None:
        if self.ticket is not None:
            self.ticket.release()
        self.ticket, self.chunks = None, []

    def _door(self) -> Door:
        assert self.door is not None
        return self.door
