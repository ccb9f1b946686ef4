"""The wire formats of inference, each a class: `parse` (body -> runtime, options, rows), `run`
(`rows`, `ops`, `finish`: what the model calls are and what they answer), `encode` and `error`.

  - `native.NATIVE`: our own endpoints (`POST /encode`, ..., `/sample`) and their verbs (`VERBS`);
  - `v2.V2`: the Open Inference Protocol's infer on a model, its `.decoder` and its `.sample`
    (`V2_VERBS`), with its wire codec (`v2.wire`);
  - `form.FORM`: the registry page's Try-it form, scored as `/anomaly-score`.
Errors carry no wire shape: the protocol that answers renders them (`error`). The dataplane
(`service.inference.dataplane`) alone runs a protocol's model calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from starlette.responses import Response

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import FloatArray, Op
from service import codecs
from service.batching import Outputs
from service.codecs import Result
from service.errors import LatentServeError
from service.security import check_api_key

if TYPE_CHECKING:
    from service.inference.limits import Limits
    from service.jsonpool import JsonPool
    from service.protocols.records import Array, Job, Labels, Parsed, Verb
    from service.registry import Registry
    from service.settings import Settings


@dataclass(frozen=True)
class Reader:
    """What a protocol's `parse` reads with."""

    registry: Registry
    settings: Settings
    limits: Limits
    json_pool: JsonPool  # large JSON bodies, parsed off the GIL


class Protocol(ABC):
    """One wire format of inference; its verbs (`Verb.target`) pick the behaviour in each method."""

    name: str

    def check_key(self, headers: Mapping[str, str], key: SecretStr | None) -> None:
        """The LATENTSERVE_API_KEY check (401)."""
        check_api_key(headers, key)

    def body_kind(self, verb: Verb, headers: Mapping[str, str]) -> str:
        """The body's kind from its Content-Type: one the verb reads, or 415."""
        return codecs.check_content_type(codecs.media_type(headers.get("content-type")), verb.reads)

    @abstractmethod
    def parse(
        self, verb: Verb, parsed: Parsed, reader: Reader, labels: Labels
    ) -> tuple[ModelRuntime, Any, Array]:
        """The runtime, the options and the request's array (rows before validation)."""

    @abstractmethod
    def rows(self, verb: Verb, runtime: ModelRuntime, X: Array, opts: Any) -> FloatArray:
        """The request's array validated into model rows."""

    @abstractmethod
    def ops(self, verb: Verb, opts: Any) -> tuple[Op, ...]:
        """The model calls (`ModelRuntime.compute` ops) the request needs, in order."""

    @abstractmethod
    def finish(self, job: Job, outputs: Outputs) -> Result:
        """The answer's arrays from the model calls' outputs."""

    @abstractmethod
    def answer_values(self, verb: Verb, manifest: Manifest, opts: Any) -> int:
        """Values the answer holds per row (the answer-size limit's estimate)."""

    @abstractmethod
    def encode(self, job: Job, result: Result) -> Response:
        """The answer on the wire."""

    @abstractmethod
    def error(self, exc: LatentServeError) -> Response:
        """An error on the wire."""


def result_of(job: Job, arrays: dict[str, Any], **kw: Any) -> Result:
    """A `Result` of the job's model version."""
    m = job.runtime.manifest
    return Result(m.name, m.version, arrays, **kw)


def rule_of(alpha: float | None) -> dict[str, float | str]:
    """The answer's record of the rule that decided is_anomaly: `rule`, and `alpha` with it."""
    return {"rule": "threshold"} if alpha is None else {"rule": "alpha", "alpha": alpha}
