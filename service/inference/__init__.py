"""The dataplane: the one door every inference request goes through, in two steps.

  - `dataplane`: `Dataplane.ticket` (headers -> a `Ticket` or a counted `Refused`) and
    `Dataplane.infer` (ticket + body -> answer); `Runner` runs an admitted request; `compute` is
    the service's one model call;
  - the records a request becomes (`Verb`, `Parsed`, `Job`) are data only, in
    `service.protocols.records`; a verb's behaviour is its protocol's (`service.protocols`);
  - `intake`: the header checks, then the protocol's parse and the validated rows (every 4xx);
  - `limits`: the body, row and answer size limits (413);
  - `scheduling`: event loop and micro-batcher, or a worker thread, within REQUEST_TIMEOUT_S;
  - `metering`: each answer counted in the metrics.

Where the work runs:
  - bodies up to INLINE_BYTES are parsed and validated on the event loop and their rows go to the
    micro-batcher (`service.batching`): for one row a thread hop costs more than the model call,
    and concurrent small requests share one model call;
  - `.npy` bodies up to INLINE_NPY_BYTES are validated on the loop (they are read without a copy)
    and run there too when the model version's own timings predict a call of at most
    INLINE_COMPUTE_MS (`ModelRuntime.predicted_seconds`); otherwise in a worker thread;
  - everything else (large JSON, images, /sample, Try-it forms) in a worker thread under
    REQUEST_TIMEOUT_S; that thread has a JSON body over JSON_OFFLOAD_BYTES parsed, and a JSON
    answer predicted over it encoded, by a worker process (`service.jsonpool`), off the GIL.
An in-flight request keeps the runtime it got even if a reload swaps the registry meanwhile.
A request may need more than one model op (`code` with `score`): each goes to the batcher alone.

Every request is admitted (`service.admission`) once its headers are checked, before its body is
read: past the memory budget or the queue it is a 503 with Retry-After. At most MAX_CONCURRENCY
run in worker threads; the others wait their turn within REQUEST_TIMEOUT_S. A worker-thread call
runs its rows in chunks and stops at the deadline (504), and an answer predicted over
MAX_RESPONSE_BYTES is a 413 before any model call.
"""

from service.inference.dataplane import Dataplane, Refused, Ticket
from service.protocols.native import VERBS
from service.protocols.records import ModelRef, Verb
from service.protocols.v2 import V2_VERBS

__all__ = ["V2_VERBS", "VERBS", "Dataplane", "ModelRef", "Refused", "Ticket", "Verb"]
