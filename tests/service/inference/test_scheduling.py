"""Where the dataplane runs a request (`service.inference.scheduling`): on the event loop or in a
worker thread. The tests on `LinearRuntime` (a fake runtime) need no trained model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.responses import Response

from service.assembly import assemble, build_admission, load_settings
from service.batching import Batcher, Outputs
from service.errors import Timeout
from service.inference import VERBS, Dataplane, Refused
from service.inference.dataplane import compute, run
from service.inference.scheduling import COMPUTE_CHUNK_ROWS, Scheduler
from service.protocols.records import Job
from tests.service.conftest import from_npy, npy
from tests.service.fakes import LinearRuntime


def _service(models_dir: Path, **overrides: Any) -> Dataplane:
    parts = assemble(load_settings({"models_dir": models_dir, "reload_interval_s": 0, **overrides}))
    parts.registry.reload()
    return parts.dataplane


async def _score(service: Dataplane, X: np.ndarray) -> tuple[bool, Response]:
    """Admit and infer one .npy request; return whether it was answered before infer returned."""
    replies: list[Response] = []
    headers = {"content-type": "application/x-npy", "accept": "application/x-npy"}
    ticket = service.ticket(VERBS["anomaly-score"], headers, {"model": "digits-pca"})
    assert not isinstance(ticket, Refused)
    service.infer(ticket, npy(X), replies.append)
    inline = bool(replies)
    while not replies:
        await asyncio.sleep(0.001)
    ticket.release()
    return inline, replies[0]


def test_large_npy_runs_inline_once_its_model_is_known_to_be_quick(models_dir: Path) -> None:
    X = np.random.default_rng(0).random((400, 8, 8), dtype=np.float32)  # 100 KB: over INLINE_BYTES
    service = _service(models_dir, inline_compute_ms=1000.0)

    async def main() -> list[tuple[bool, Response]]:
        return [await _score(service, X) for _ in range(3)]

    (first_inline, first), (second_inline, second), _ = asyncio.run(main())
    assert len(npy(X)) > service.settings.inline_bytes
    assert not first_inline  # nothing measured yet: a worker thread
    assert second_inline  # this version's timing now predicts far less than 1 s
    assert first.status_code == second.status_code == 200
    np.testing.assert_array_equal(from_npy(first.body), from_npy(second.body))


def test_a_zero_budget_keeps_large_npy_in_threads(models_dir: Path) -> None:
    X = np.random.default_rng(0).random((400, 8, 8), dtype=np.float32)
    service = _service(models_dir, inline_compute_ms=0.0)

    async def main() -> list[bool]:
        return [(await _score(service, X))[0] for _ in range(3)]

    assert asyncio.run(main()) == [False, False, False]


def test_small_bodies_wait_for_the_batch(models_dir: Path, digits: np.ndarray) -> None:
    service = _service(models_dir)

    async def main() -> tuple[bool, Response]:
        return await _score(service, digits[:2])

    inline, response = asyncio.run(main())
    assert not inline  # answered at the end of the loop turn, with the batch
    assert response.status_code == 200 and from_npy(response.body).shape == (2,)


# ---- on a fake runtime ---------------------------------------------------------------------------
def _scheduler(**overrides: object) -> Scheduler:
    settings = load_settings({"reload_interval_s": 0, **overrides})
    batcher = Batcher(settings.batch_max_rows, compute)
    return Scheduler(settings, build_admission(settings), batcher, run)


def _job(runtime: LinearRuntime, n: int, seed: int = 0) -> Job:
    X = runtime.check_inputs(np.random.default_rng(seed).random((n, 8), dtype=np.float32))
    return Job(VERBS["encode"], runtime, None, X, X.shape, "application/json")


def _on_loop(scheduler: Scheduler, jobs: list[Job]) -> list[Outputs | BaseException]:
    got: list[Outputs | BaseException] = []

    async def main() -> None:
        for job in jobs:
            scheduler.on_loop(job, got.append)
        while len(got) < len(jobs):
            await asyncio.sleep(0)

    asyncio.run(main())
    return got


def test_jobs_of_one_loop_turn_share_one_model_call_with_batching() -> None:
    runtime = LinearRuntime()
    jobs = [_job(runtime, 2, 0), _job(runtime, 3, 1)]
    got = _on_loop(_scheduler(), jobs)
    assert runtime.calls == [("encode", 5)]
    for job, outputs in zip(jobs, got, strict=True):
        assert not isinstance(outputs, BaseException)
        np.testing.assert_array_equal(outputs[0], job.X[:, :2])


def test_without_batching_each_job_is_its_own_call() -> None:
    runtime = LinearRuntime()
    _on_loop(_scheduler(batching=False), [_job(runtime, 2, 0), _job(runtime, 3, 1)])
    assert runtime.calls == [("encode", 2), ("encode", 3)]


def test_a_large_job_runs_in_chunks_and_stops_at_its_deadline() -> None:
    runtime = LinearRuntime()
    scheduler = _scheduler()
    n = 2 * COMPUTE_CHUNK_ROWS + 5
    job = _job(runtime, n)
    (codes,) = scheduler.compute_by(job, deadline=time.monotonic() + 60)
    assert runtime.calls == [("encode", COMPUTE_CHUNK_ROWS)] * 2 + [("encode", 5)]
    np.testing.assert_array_equal(codes, job.X[:, :2])
    runtime.calls.clear()
    with pytest.raises(Timeout, match="REQUEST_TIMEOUT_S"):
        scheduler.compute_by(job, deadline=0.0)
    assert runtime.calls == []
    small = _job(runtime, 10)
    assert scheduler.compute_by(small, deadline=0.0)[0].shape == (10, 2)  # one call: no deadline check
