"""The size limits of one request: its body, its rows and its answer, each a clean 413."""

from __future__ import annotations

from service import codecs
from service.admission import Ticket
from service.codecs import CSV, JSON
from service.errors import JsonAnswerTooLarge, JsonBodyTooLarge, PayloadTooLarge
from service.protocols.records import Job
from service.settings import Settings

JSON_VALUE_BYTES = 16  # a float32 in a JSON answer: up to 9 significant digits, sign, exponent, comma


class Limits:
    """MAX_BODY_BYTES / MAX_JSON_BODY_BYTES, MAX_ROWS and MAX_RESPONSE_BYTES / MAX_JSON_RESPONSE_BYTES."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def body(self, kind: str) -> int:
        """The largest body of this kind: MAX_BODY_BYTES, and MAX_JSON_BODY_BYTES for JSON and CSV
        (text parsed into Python values while holding the GIL)."""
        if kind in (JSON, CSV):
            return min(self.settings.max_body_bytes, self.settings.max_json_body_bytes)
        return self.settings.max_body_bytes

    def too_large(self, kind: str, declared: int | None = None) -> PayloadTooLarge:
        """The 413 for a body of this kind over `body`: declared, or found while reading."""
        limit = self.body(kind)
        if kind == JSON and limit < self.settings.max_body_bytes:
            return JsonBodyTooLarge(limit, declared)
        return codecs.body_too_large(limit, declared)

    def check_rows(self, n: int, field: str | None) -> None:
        """At most MAX_ROWS rows per request (`field` None: the rows a sample asks for, `n`)."""
        limit = self.settings.max_rows
        if n > limit:
            name = field or "n"
            raise PayloadTooLarge(
                f"{name}: {n} rows is over the limit of {limit} rows per request; split the batch",
                field=name,
                details={"limit": limit, "got": n},
            )

    def check_answer(self, job: Job, ticket: Ticket | None) -> None:
        """Refuse (413) before computing an answer predicted over MAX_RESPONSE_BYTES: rows x the
        values each row answers x the bytes a value takes in the response's media type. The
        request's admission ticket then reserves that answer too (encoded, then copied into the
        socket's buffer: twice its size), so concurrent large answers are shed (503)."""
        per_row = job.answer_values()
        n = len(job.X)
        per_value = JSON_VALUE_BYTES if job.media == JSON else 4
        predicted = n * per_row * per_value
        limit = self.settings.max_response_bytes
        json_limit = self.settings.max_json_response_bytes
        if job.media == JSON and json_limit < limit and predicted > json_limit:
            raise JsonAnswerTooLarge(json_limit, predicted, n, per_row)
        if predicted > limit:
            hint = "send fewer rows"
            if job.media == JSON:
                hint = "send Accept: application/x-npy (4 bytes a value) or fewer rows"
            raise PayloadTooLarge(
                f"the answer would be about {predicted} bytes ({n} rows x {per_row} values), over the "
                f"limit of {limit} bytes (LATENTSERVE_MAX_RESPONSE_BYTES); {hint}",
                field="accept",
                details={"limit": limit, "predicted": predicted},
            )
        if ticket is not None:
            ticket.reserve(2 * predicted)
