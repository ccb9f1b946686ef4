"""The records a request becomes on its way through the dataplane: data only, no behaviour.

A `Verb` names one inference endpoint and the protocol (`service.protocols`) whose methods read,
run and answer it; `Parsed` is a request as read, `Job` one parsed and validated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy.typing as npt
from starlette.responses import Response

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray, Op
from service.admission import Ticket
from service.batching import Outputs
from service.codecs import ImageFile
from service.metrics import UNKNOWN_MODEL
from service.schemas import InferenceOptions

if TYPE_CHECKING:
    from service.protocols import Protocol

Array = npt.NDArray[Any]
ScoreHook = Callable[[Manifest, FloatArray], None]  # sees each /anomaly-score answer's scores


class Labels:
    """What the metrics learn as a request goes: the model (once it exists) and the rows."""

    __slots__ = ("model", "rows")

    def __init__(self) -> None:
        self.model = UNKNOWN_MODEL
        self.rows = 0


@dataclass(frozen=True, kw_only=True)
class Verb:
    """One inference endpoint: its name (the metrics' label), the protocol that serves it and
    what it reads and answers. `target` picks the behaviour within the protocol's methods."""

    name: str
    protocol: Protocol
    target: str  # "encode", ..., "anomaly-score" (native); "model", "decoder", "sample" (/v2)
    options: type[InferenceOptions] | None  # the envelope the native protocol validates
    field: str | None  # the array field of the body ("inputs", "codes", "input"), None for samples
    reads: tuple[str, ...]
    produces: tuple[str, ...]


@dataclass(frozen=True)
class ModelRef:
    """A model named in the path (/v2): resolved once, when the request is admitted."""

    name: str  # `{model}` of `{model}.decoder` (/v2): the registry's name
    version: str | None  # as in the path, checked by the protocol's `parse`; None: the newest


@dataclass
class Parsed:
    """One request as read: its body and where its options are, before any validation."""

    kind: str  # the body's media type (`wire.BINARY`: a /v2 body with binary tensors)
    body: bytes
    query: dict[str, str]
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    ref: ModelRef | None = None  # the model named in the path (/v2)
    images: list[ImageFile] | None = None
    fields: dict[str, str] = field(default_factory=dict)  # a form's text fields (Try-it)
    resize: bool = False  # the `resize` query flag of image bodies
    booleans: bool = False  # a JSON body with true / false in an array: its rows are checked for them
    deadline: float | None = None  # time.monotonic() past which decoding stops (worker threads)
    ticket: Ticket | None = None  # the request's admission, which also reserves its answer


@dataclass
class Job:
    """One request, parsed and validated: the model rows to run and how to answer."""

    verb: Verb
    runtime: ModelRuntime
    opts: Any
    X: FloatArray  # validated model rows: inputs (n, *input.shape) or codes (n, latent_dim)
    shape: tuple[int, ...]  # the request rows' layout (flat or shaped), kept in the answer
    media: str
    on_scores: ScoreHook | None = None  # /anomaly-score: live drift

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.verb.protocol.ops(self.verb, self.opts)

    def predicted_seconds(self) -> float | None:
        total = 0.0
        for op in self.ops:
            seconds = self.runtime.predicted_seconds(op, len(self.X))
            if seconds is None:
                return None
            total += seconds
        return total

    def answer_values(self) -> int:
        """Values the answer holds per row (the answer-size limit's estimate)."""
        return self.verb.protocol.answer_values(self.verb, self.runtime.manifest, self.opts)

    def respond(self, outputs: Outputs) -> Response:
        """The response: the protocol's arrays from the model outputs, in its wire format."""
        protocol = self.verb.protocol
        return protocol.encode(self, protocol.finish(self, outputs))
