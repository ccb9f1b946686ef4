"""Large JSON request bodies parsed, and large JSON answers encoded, in a worker process, off the
event loop's GIL.

orjson and simdjson parse a body in one C call that holds the GIL for 3-9 ms a MiB, and numpy
turns the lists into an array holding it too: a worker thread parsing a few MiB keeps the event
loop (and /health/live) waiting for as long, and concurrent parses queue up behind each other. So
a JSON body of rows over JSON_OFFLOAD_BYTES goes to `JsonPool`: JSON_WORKERS processes, forked
from a forkserver that imported only this module and its codecs, parse it with the same code as
the in-process path (`codecs.read_json`, then `codecs.rows_to_array`) and send back the options and one
array of rows (numpy pickles it as a buffer: a copy, not a walk). The worker thread that asked
waits for the answer without holding the GIL, at most until the request's deadline. The hop is
not free: the body and the array cross a pipe and two threads of `concurrent.futures`, which costs
about as much as simdjson's own parse of the same body, so only bodies near MAX_JSON_BODY_BYTES
(whose parses hold the GIL longest) take it; smaller bodies never pay it, and neither do bodies
parsed on the event loop (INLINE_BYTES).

A JSON answer predicted over JSON_OFFLOAD_BYTES (values x 16 bytes) is encoded the same way
(`dumps`: the arrays go to the worker, the bytes come back), from the worker thread that computed
it; answers encoded on the event loop (small requests) never take the hop.

Same answers as in process: an error that the in-process path raises while parsing (malformed
JSON, a missing field) is raised from the worker; an error in the rows (`InvalidInput` naming the
bad row) comes back as `BadRows`, which the core raises where it would have converted the rows,
so a request with an unknown model and bad rows is a 404 on both paths.

Budget: JSON_WORKERS bodies or answers are handled at once and JSON_QUEUE more wait for a worker;
past them a request is 503 + Retry-After (`Overloaded`), counted in
`latentserve_shed_total{limit="json_queue"}`. The memory a parse takes (the body, its Python
floats, the array) is within what the request's admission ticket already reserved for a JSON body,
and an answer's within what it reserved for the answer. A worker that dies (killed for memory) breaks
the pool: it is rebuilt, and that one request is parsed in process. A body or answer that no worker
finishes by the request's deadline (a hung worker, or a pool that lost its processes unnoticed)
is a 504, and the pool is replaced, its workers killed: it never stays wedged.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from service import codecs
from service.admission import RETRY_AFTER_S, Admission
from service.errors import InvalidInput, LatentServeError, Overloaded
from service.settings import Settings

log = logging.getLogger("latentserve.jsonpool")
SHED_LIMIT = "json_queue"  # the label of the 503s past JSON_WORKERS + JSON_QUEUE in latentserve_shed_total


class BadRows:
    """The rows of a body parsed in a worker did not make an array: the error to raise, and how
    many rows the list had (the MAX_ROWS check comes before the rows' own errors)."""

    __slots__ = ("error", "rows")

    def __init__(self, error: InvalidInput, rows: int) -> None:
        self.error = error
        self.rows = rows

    def __len__(self) -> int:
        return self.rows


Rows = npt.NDArray[Any] | BadRows | codecs.NamedRows


def parse_rows(body: bytes, field: str) -> tuple[dict[str, Any], Rows]:
    """What a worker does: `codecs.read_json`, then the rows as one array, or `BadRows`."""
    data, rows, booleans = codecs.read_json(body, field)
    try:
        if codecs.is_records(rows):  # rows by name: ordered by the model's names in the server
            return data, codecs.records_to_rows(rows, field)  # type: ignore[arg-type]
        return data, codecs.rows_to_array(rows, field, booleans)
    except InvalidInput as exc:
        return data, BadRows(exc, len(rows) if isinstance(rows, (list, np.ndarray)) else 0)


def _ready() -> bool:
    return True


class JsonPool:
    """The worker processes and their budget; `parse` is called from worker threads."""

    def __init__(self, settings: Settings, admission: Admission) -> None:
        self.threshold = settings.json_offload_bytes
        self.workers = settings.json_workers
        self.capacity = settings.json_workers + settings.json_queue
        self.admission = admission
        self.busy = 0  # bodies being parsed or waiting for a worker
        self.parsed = 0  # bodies parsed (or refused) and answers encoded by a worker process
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._closed = False  # the app shut down: no new pool
        self._lock = threading.Lock()

    def takes(self, body: bytes) -> bool:
        """Whether a JSON body of rows this large is parsed in a worker process."""
        return self.workers > 0 and not self._closed and len(body) > self.threshold

    def takes_answer(self, predicted: int) -> bool:
        """Whether a JSON answer predicted this large is encoded in a worker process."""
        return self.workers > 0 and not self._closed and predicted > self.threshold

    def start(self, timeout: float = 60.0) -> None:
        """Start the workers and wait until one answers (the app's startup), so that the first large
        body does not wait for them; when none can start, this is logged and every body is parsed
        in the server."""
        if self.workers == 0:
            return
        try:
            with self._lock:
                executor = self._executor or self._new_executor()
            executor.submit(_ready).result(timeout=timeout)
        except (RuntimeError, OSError, TimeoutError) as exc:  # BrokenProcessPool is a RuntimeError
            log.warning("the JSON workers did not start (%r); JSON bodies are parsed in the server", exc)
            self.workers = 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def parse(self, body: bytes, field: str, deadline: float) -> tuple[dict[str, Any], Rows]:
        """`parse_rows(body, field)` in a worker process; TimeoutError past `deadline`
        (time.monotonic()), Overloaded past JSON_WORKERS + JSON_QUEUE bodies and answers."""
        result: tuple[dict[str, Any], Rows] = self._run(parse_rows, deadline, body, field)
        return result

    def dumps(self, doc: dict[str, Any], deadline: float) -> bytes:
        """A JSON answer (`codecs.dump_json(doc)`, numpy arrays included) encoded in a worker process,
        as `parse` does: a large answer holds the GIL while orjson encodes it, as a body does."""
        body: bytes = self._run(codecs.dump_json, deadline, doc)
        return body

    def _run(self, work: Callable[..., Any], deadline: float, *args: Any) -> Any:
        """`work(*args)` in a worker process, waited for off the GIL until `deadline`. A pool that
        cannot take it (a worker died, the pool closed at shutdown) leaves it to this process."""
        with self.slot():
            with self._lock:
                executor = None if self._closed else self._executor or self._new_executor()
            if executor is None:  # the app shut down while this request waited
                return work(*args)
            try:
                future = executor.submit(work, *args)
                result = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                # a worker that has not answered by the deadline may be hung, or the pool may have
                # lost its processes without noticing (a worker killed while forking): replace
                # the pool and kill its workers, so the next body never waits for them
                log.warning("a JSON worker did not answer by the request's deadline; the pool is replaced")
                self._discard(executor, kill=True)
                raise
            except LatentServeError:  # parsed, and refused as the in-process path refuses it
                self.parsed += 1
                raise
            except (RuntimeError, OSError) as exc:  # BrokenProcessPool, shutdown, no process started
                log.warning("the JSON workers cannot take a body (%r); it is parsed in the server", exc)
                self._discard(executor)
                return work(*args)
            self.parsed += 1
            return result

    def _discard(self, executor: concurrent.futures.ProcessPoolExecutor, kill: bool = False) -> None:
        """Stop using `executor` (the next body starts a new pool); with `kill`, end its workers."""
        with self._lock:
            if self._executor is executor:
                self._executor = None
        if kill:  # the executor's own shutdown would wait for a hung worker
            processes = getattr(executor, "_processes", None) or {}
            for process in list(processes.values()):
                with contextlib.suppress(Exception):
                    process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One of JSON_WORKERS + JSON_QUEUE places, held while a body is parsed or waits for a
        worker; none free: Overloaded (503), counted."""
        with self._lock:
            if self.busy >= self.capacity:
                with self.admission.lock:
                    self.admission.shed[SHED_LIMIT] = self.admission.shed.get(SHED_LIMIT, 0) + 1
                raise Overloaded(
                    f"{self.busy} large JSON bodies being parsed or waiting",
                    "JSON_WORKERS + JSON_QUEUE",
                    RETRY_AFTER_S,
                )
            self.busy += 1
        try:
            yield
        finally:
            with self._lock:
                self.busy -= 1

    def _new_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        """A pool of JSON_WORKERS processes forked from a forkserver that preloads this module: a
        fork of the server itself would copy its threads' locks and the models' sessions."""
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        self._executor = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=context)
        return self._executor
