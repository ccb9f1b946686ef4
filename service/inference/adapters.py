"""protocol adapter: rewired at merge.

The seven methods `service.fastpath.protocol` calls today, as thin wrappers over the door
(`Dataplane.route`, `.ticket`, `.infer`, `.refuse`). Once the protocol calls the door itself
this module goes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.responses import Response

from service.admission import Ticket as Hold
from service.codecs import MULTIPART
from service.errors import PayloadTooLarge, UnsupportedMediaType
from service.inference.dataplane import Dataplane, Reply, Ticket
from service.protocols.records import ModelRef, Verb


class InferenceService(Dataplane):
    """The door, with the uvicorn protocol's seven entries over it (protocol adapter: rewired at merge)."""

    def find(self, path: str) -> tuple[Verb, dict[str, str]] | None:
        found = self.route(path)
        if found is None:
            return None
        verb, ref = found
        return verb, ({} if ref is None else {"model": ref.name, "version": ref.version or ""})

    def admit(self, verb: Verb, headers: Mapping[str, str]) -> tuple[str, str]:
        return self.intake.admit(verb, headers)

    def body_limit(self, kind: str) -> int:
        return self.limits.body(kind)

    def too_large(self, kind: str, declared: int | None = None) -> PayloadTooLarge:
        return self.limits.too_large(kind, declared)

    def handle_raw(
        self,
        verb: Verb,
        headers: Mapping[str, str],
        query: str,
        body: bytes,
        reply: Reply,
        path: Mapping[str, str] | None = None,
        ticket: Hold | None = None,
    ) -> None:
        start = time.perf_counter()
        try:
            media, kind = self.intake.admit(verb, headers)
            if kind == MULTIPART:  # the protocol hands multipart bodies to the ASGI app instead
                raise UnsupportedMediaType("multipart bodies are read by the ASGI path", field="content-type")
        except Exception as exc:
            reply(self.refuse(verb, exc, start).response)
            return
        ref = ModelRef(path["model"], path.get("version") or None) if path else None
        options = dict(parse_qsl(query, keep_blank_values=True))
        admitted = Ticket(verb, ref, media, kind, self.limits.body(kind), headers, options, start, ticket)
        self.infer(admitted, body, reply)

    def refuse_body(self, verb: Verb, headers: Mapping[str, str], declared: int | None) -> Response:
        start = time.perf_counter()
        try:
            _, kind = self.intake.admit(verb, headers)
        except Exception as exc:
            return self.refuse(verb, exc, start).response
        return self.refuse(verb, self.limits.too_large(kind, declared), start).response

    def refused(self, verb: Verb, exc: Exception) -> Response:
        return self.refuse(verb, exc).response
