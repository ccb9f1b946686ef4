"""Where a request's model calls run: on the event loop (through the micro-batcher) or in a
worker thread, within REQUEST_TIMEOUT_S (see `service.inference` for the rule)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
from starlette.responses import Response

from service.admission import Admission
from service.batching import Batcher, Outputs
from service.codecs import MULTIPART, NPY
from service.errors import Timeout
from service.protocols.records import Job, Parsed, Verb
from service.protocols.v2.wire import BINARY
from service.settings import Settings

COMPUTE_CHUNK_ROWS = 4096  # a worker-thread call checks its deadline between chunks of this many rows
_ZERO_COPY = (NPY, BINARY)  # bodies whose arrays are read without a copy
Done = Callable[[Outputs | BaseException], None]
Run = Callable[[Job], Outputs]  # a job's model calls: `service.inference.dataplane.run`


class Scheduler:
    """The event loop's batcher, and MAX_CONCURRENCY worker threads under REQUEST_TIMEOUT_S."""

    def __init__(self, settings: Settings, admission: Admission, batcher: Batcher, run: Run) -> None:
        self.settings = settings
        self.admission = admission
        self.batcher = batcher
        self.run = run
        self._tasks: set[asyncio.Task[None]] = set()  # worker-thread requests in flight

    # ---- the choice ------------------------------------------------------------------------------
    def runs_inline(self, verb: Verb, parsed: Parsed) -> bool:
        """Small bodies run on the event loop (through the batcher); the rest in a worker thread.
        Only a body that bounds the work qualifies: /sample decodes `n` rows from a tiny body."""
        return (
            len(parsed.body) <= self.settings.inline_bytes
            and parsed.kind != MULTIPART
            and verb.field is not None
        )

    def validates_inline(self, parsed: Parsed) -> bool:
        """A .npy (or /v2 binary) body up to INLINE_NPY_BYTES is read without a copy: it is
        validated on the loop, and run there too when `short`."""
        return parsed.kind in _ZERO_COPY and len(parsed.body) <= self.settings.inline_npy_bytes

    def short(self, job: Job) -> bool:
        """Whether this model version's own timings predict the job's calls within INLINE_COMPUTE_MS."""
        predicted = job.predicted_seconds()
        return predicted is not None and predicted <= self.settings.inline_compute_ms / 1000

    # ---- on the event loop -----------------------------------------------------------------------
    def on_loop(self, job: Job, done: Done) -> None:
        """Run the job on the loop: through the batcher (`done` at the end of this loop turn) when
        BATCHING, else now."""
        if not self.settings.batching:
            done(self.run(job))
            return
        ops = job.ops
        if len(ops) == 1:
            self.batcher.submit(job.runtime, ops[0], job.X, done)
            return
        # each op goes to the batcher alone; `done` gets their outputs in op order, or the first
        # exception, once all of them ran (in the same flush)
        parts: list[Outputs | BaseException | None] = [None] * len(ops)

        def part(i: int, result: Outputs | BaseException) -> None:
            parts[i] = result
            if any(p is None for p in parts):
                return
            outputs: Outputs = ()
            for p in parts:
                if isinstance(p, BaseException):
                    done(p)
                    return
                assert p is not None
                outputs += p
            done(outputs)

        for i, op in enumerate(ops):
            self.batcher.submit(job.runtime, op, job.X, partial(part, i))

    # ---- in a worker thread ----------------------------------------------------------------------
    def in_thread(
        self, verb: Verb, work: Callable[[float], Response], done: Callable[[Response | Exception], None]
    ) -> None:
        """Run `work(deadline)` in a worker thread (`in_thread_now`); `done` gets its response or
        its exception."""

        async def run() -> None:
            try:
                response = await self.run_in_thread(verb, work)
            except Exception as exc:
                done(exc)
                return
            done(response)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_in_thread(self, verb: Verb, work: Callable[[float], Response]) -> Response:
        """Run `work(deadline)` in a worker thread once one of MAX_CONCURRENCY slots is free; the
        wait counts against REQUEST_TIMEOUT_S, and the work itself stops at the deadline."""
        timeout = self.settings.request_timeout_s
        deadline = time.monotonic() + timeout
        try:
            return await self.admission.run_in_thread(timeout, work, deadline)
        except TimeoutError:
            raise self.timeout(verb) from None

    def compute_by(self, job: Job, deadline: float) -> Outputs:
        """The job's model calls in chunks of COMPUTE_CHUNK_ROWS, checking the deadline between them."""
        n = len(job.X)
        if n <= 2 * COMPUTE_CHUNK_ROWS:
            return self.run(job)
        parts = []
        for i in range(0, n, COMPUTE_CHUNK_ROWS):
            if time.monotonic() > deadline:
                raise self.timeout(job.verb)
            parts.append(self.run(replace(job, X=job.X[i : i + COMPUTE_CHUNK_ROWS])))
        return tuple(np.concatenate(column) for column in zip(*parts, strict=True))

    def timeout(self, verb: Verb) -> Timeout:
        return Timeout.of_request(verb.name, self.settings.request_timeout_s)
