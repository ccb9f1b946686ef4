"""Keep the cyclic garbage collector's full passes short: freeze the heap once the registry is loaded.

CPython's generation-2 collection walks every tracked container object in the process. Once
started, the server holds about 90,000 of them with the 11 default models (FastAPI and pydantic's
schemas, the onnxruntime and numpy bindings, the registry), and one full pass took 67-73 ms here:
the allocations of a thousand new connections trigger one, and every request on the event loop
waits behind it (in the idle-connections attack of `benchmarks/soak.py` the /health/live probe
took 85-95 ms). `gc.freeze()` after the first registry load moves those objects into the
permanent generation, which collections skip, so a full pass walks only what was allocated
since: connections, requests, reloaded manifests. Frozen objects are still freed by reference
counting; only a reference cycle among them would stay, and `gc.collect()` runs first so no
garbage is frozen. The app's shutdown thaws them again (`thaw_heap`), so a process that runs
apps one after another (the tests do) does not keep what each froze.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("latentserve.gc")


def freeze_heap() -> int:
    """Collect, then move every object tracked so far into the permanent generation; returns how
    many objects are frozen."""
    start = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("froze %d objects in %.1f ms", frozen, (time.perf_counter() - start) * 1000)
    return frozen


def thaw_heap() -> None:
    """Move the frozen objects back into the collector's oldest generation."""
    gc.unfreeze()
