"""The one core every inference request goes through: body -> model runtime -> response, with metrics.

The routes (`service.api.routes`) and the fast paths (`service.fastpath`) only translate; this
package alone checks the API key, validates, scores and builds errors:
  - `core`: `InferenceService`, its entries and a request's path through the modules below;
  - `verbs`: what each endpoint reads, runs and answers (`VERBS`, `V2_VERBS`);
  - `intake`: the header checks, the body, the options and the validated rows (every 4xx);
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
  - everything else (large JSON, images, /sample) in a worker thread under REQUEST_TIMEOUT_S; that
    thread has a JSON body over JSON_OFFLOAD_BYTES parsed, and a JSON answer predicted over it
    encoded, by a worker process (`service.jsonpool`), off the GIL.
An in-flight request keeps the runtime it got even if a reload swaps the registry meanwhile.

The Open Inference Protocol's infer (`POST /v2/models/{m}[/versions/{v}]/infer`) is three more
verbs (`V2_VERBS`: a model, its `.decoder`, its `.sample`) with their own wire format: the verb's
`parse`, `encode` and `error` come from `service.oip`; everything between is this same core. A
request may need more than one model op (`code` with `score`): each goes to the batcher alone.

Every request is admitted (`service.admission`) once its headers are checked, before its body is
read: past the memory budget or the queue it is a 503 with Retry-After. At most MAX_CONCURRENCY
run in worker threads; the others wait their turn within REQUEST_TIMEOUT_S. A worker-thread call
runs its rows in chunks and stops at the deadline (504), and an answer predicted over
MAX_RESPONSE_BYTES is a 413 before any model call.
"""

from service.inference.core import InferenceService
from service.inference.verbs import V2_VERBS, VERBS, Verb

__all__ = ["V2_VERBS", "VERBS", "InferenceService", "Verb"]
