"""The HTTP layer's one way into the inference core: route, admit, infer, refuse.

Every call the connection layer makes into `service.inference` goes through `Door`, so that the
core's entry points can change behind this one small adapter. The admission step takes the headers
and gives an `Admitted` (the ticket and the body limit of the request's kind) or raises the refusal;
the infer step takes the ticket and the whole body and calls `reply` with the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.responses import Response

from service.admission import BINARY_WEIGHT, JSON_WEIGHT, Ticket
from service.codecs import JSON
from service.inference import InferenceService, Verb


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request admitted on its headers: its reservation and the largest body of its kind."""

    ticket: Ticket
    limit: int


class Door:
    """The inference core as the HTTP layer sees it."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service

    def route(self, path: str) -> tuple[Verb, dict[str, str]] | None:
        """The verb serving POST `path` and the path's parameters, or None (not an inference POST)."""
        return self.service.find(path)

    def admit(self, verb: Verb, headers: Mapping[str, str], declared: int | None) -> Admitted:
        """The admission step: the header checks (API key, Accept, Content-Type), the body limit of
        the request's kind and a ticket for `declared` bytes; raises the refusal (a LatentServeError)."""
        _, kind = self.service.admit(verb, headers)
        limit = self.service.body_limit(kind)
        if declared is not None and declared > limit:
            raise self.service.too_large(kind, declared)  # a JSON body over MAX_JSON_BODY_BYTES
        weight = JSON_WEIGHT if kind == JSON else BINARY_WEIGHT
        return Admitted(self.service.admission.enter(declared, weight), limit)

    def infer(
        self,
        verb: Verb,
        headers: Mapping[str, str],
        query: str,
        body: bytes,
        params: Mapping[str, str],
        ticket: Ticket | None,
        reply: Callable[[Response], None],
    ) -> None:
        """The infer step: the admitted request with its whole body; `reply` gets the answer once."""
        self.service.handle_raw(verb, headers, query, body, reply, params, ticket=ticket)

    def refuse_too_large(self, verb: Verb, headers: Mapping[str, str], declared: int | None) -> Response:
        """The answer to a body over MAX_BODY_BYTES: a header check's error if any, else the 413; counted."""
        return self.service.refuse_body(verb, headers, declared)

    def refuse(self, verb: Verb, exc: Exception) -> Response:
        """The answer to a request refused on its headers (`admit`'s error), counted in the metrics."""
        return self.service.refused(verb, exc)
