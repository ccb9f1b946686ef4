"""The HTTP layer's one way into the inference core: the dataplane's two steps, and its refusals.

Every call the connection layer makes into `service.inference` goes through `Door`: `route` (is
this POST an inference request, and which model does its path name), `admit` (the dataplane's
admission step: headers -> a `Ticket` holding the body limit and the memory reservation, or a
counted `Refused`), `infer` (the infer step: ticket + the whole body -> the answer, given to
`reply`) and `too_large` (a body that outgrew its ticket's limit, answered and counted).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.responses import Response

from service.codecs.body import declared_length
from service.errors import LatentServeError
from service.inference import Dataplane, ModelRef, Refused, Ticket, Verb
from service.inference.dataplane import Reply


class Door:
    """The inference core as the HTTP layer sees it."""

    def __init__(self, dataplane: Dataplane) -> None:
        self.dataplane = dataplane

    def route(self, path: str) -> tuple[Verb, ModelRef | None] | None:
        """The verb serving POST `path` and the model the path names, or None (not an inference POST)."""
        return self.dataplane.route(path)

    def admit(
        self, verb: Verb, ref: ModelRef | None, headers: Mapping[str, str], query: str
    ) -> Ticket | Refused:
        """The admission step: the header checks (API key, Accept, Content-Type), the declared size
        against the body limit of the request's kind, and the memory reservation."""
        return self.dataplane.ticket(verb, headers, dict(parse_qsl(query, keep_blank_values=True)), ref)

    def infer(self, ticket: Ticket, body: bytes, reply: Reply) -> None:
        """The infer step: the admitted request with its whole body; `reply` gets the answer once
        (and releases the ticket's reservation)."""
        self.dataplane.infer(ticket, body, reply)

    def too_large(self, ticket: Ticket) -> Response:
        """The answer to a body that outgrew `ticket.body_limit` while read (413), counted."""
        return self.refuse(ticket.verb, self.body_too_large(ticket))

    def body_too_large(self, ticket: Ticket) -> LatentServeError:
        """The 413 of a body that outgrew `ticket.body_limit` while read (not counted yet)."""
        return self.dataplane.limits.too_large(ticket.kind)

    def key_refused(self, verb: Verb, headers: Mapping[str, str]) -> bool:
        """The verb's protocol refuses these headers' API key (checked, not counted)."""
        try:
            verb.protocol.check_key(headers, self.dataplane.settings.api_key)
        except LatentServeError:
            return True
        return False

    def drop(self, ticket: Ticket, exc: LatentServeError) -> None:
        """An admitted request whose client left mid-body (a 499 nobody reads): released, counted."""
        self.dataplane.drop(ticket, exc)

    def fail(self, ticket: Ticket, exc: Exception) -> Refused:
        """An admitted request that ends in `exc` before its body is whole: counted, from its start."""
        return self.dataplane.refuse(ticket.verb, exc, ticket.start)

    def refuse_oversized(self, verb: Verb, ref: ModelRef | None, headers: Mapping[str, str]) -> Response:
        """A body declared past MAX_BODY_BYTES (one the ASGI path would read): the admission step's
        refusal, a header check's error first, else the 413; counted."""
        outcome = self.admit(verb, ref, headers, "")
        if isinstance(outcome, Refused):
            return outcome.response
        outcome.release()  # not reached: no kind's body limit is above MAX_BODY_BYTES
        return self.refuse(verb, self.dataplane.limits.too_large(outcome.kind, declared_length(headers)))

    def refuse(self, verb: Verb, exc: Exception) -> Response:
        """`exc` answered in the verb's protocol, counted in the metrics."""
        return self.dataplane.refuse(verb, exc).response
