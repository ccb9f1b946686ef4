"""The micro-batcher on real exported models: stacked calls give each caller its own rows' answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import Op
from service.app import create_app
from service.batching import Batcher, Outputs
from service.inference.dataplane import compute
from service.settings import Settings
from tests.service.fakes import LinearRuntime, fake_manifest


@pytest.fixture(scope="module")
def runtime() -> ModelRuntime:
    """A fake model of the digits' shape: no trained model needed to test the batcher."""
    return LinearRuntime(fake_manifest(shape=(8, 8), latent=4))


def _run(batcher: Batcher, calls: list[tuple[ModelRuntime, Op, np.ndarray]]) -> list[Outputs | BaseException]:
    """Submit every call in one loop turn; return what each caller got."""
    results: list[Outputs | BaseException | None] = [None] * len(calls)

    async def main() -> None:
        done = asyncio.Event()

        def callback(i: int, result: Outputs | BaseException) -> None:
            results[i] = result
            if all(r is not None for r in results):
                done.set()

        for i, (rt, op, X) in enumerate(calls):
            batcher.submit(rt, op, X, lambda r, i=i: callback(i, r))
        await asyncio.wait_for(done.wait(), 5)

    asyncio.run(main())
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def test_calls_in_one_turn_share_one_model_call(runtime: ModelRuntime, digits: np.ndarray) -> None:
    batches: list[tuple[int, int]] = []
    batcher = Batcher(256, compute, on_batch=lambda requests, rows: batches.append((requests, rows)))
    X = runtime.check_inputs(digits)
    parts = [X[:1], X[1:4], X[4:9]]
    ops: list[Op] = ["scores", "reconstruct", "encode"]
    calls = [(runtime, op, part) for op in ops for part in parts]
    results = _run(batcher, calls)
    assert sorted(batches) == [(3, 9)] * 3  # one stacked call per op, 3 requests and 9 rows each
    for (rt, op, part), got in zip(calls, results, strict=True):
        assert not isinstance(got, BaseException)
        alone = rt.compute(op, part)
        assert len(got) == len(alone)
        for g, a in zip(got, alone, strict=True):
            assert g.shape == a.shape
            np.testing.assert_allclose(g, a, rtol=1e-5, atol=1e-6)


def test_max_rows_splits_the_stack(runtime: ModelRuntime, digits: np.ndarray) -> None:
    batches: list[tuple[int, int]] = []
    batcher = Batcher(5, compute, on_batch=lambda requests, rows: batches.append((requests, rows)))
    X = runtime.check_inputs(digits)
    results = _run(batcher, [(runtime, "scores", X[i : i + 2]) for i in range(0, 8, 2)])
    assert batches == [(2, 4), (2, 4)]  # 4 calls of 2 rows under a 5-row cap
    scores = np.concatenate([r[0] for r in results if not isinstance(r, BaseException)])
    np.testing.assert_allclose(scores, runtime.compute("scores", X[:8])[0], rtol=1e-5, atol=1e-7)


def test_a_failing_call_fails_alone(runtime: ModelRuntime, digits: np.ndarray) -> None:
    """Rows that cannot be stacked (or make the model fail) get their own error; the others, answers."""
    batcher = Batcher(256, compute)
    X = runtime.check_inputs(digits)
    bad = np.zeros((2, 3), np.float32)  # not the model's width: stacking fails, then the call alone
    good, failed, good2 = _run(
        batcher, [(runtime, "scores", X[:2]), (runtime, "scores", bad), (runtime, "scores", X[2:3])]
    )
    assert isinstance(failed, Exception)
    assert not isinstance(good, BaseException) and not isinstance(good2, BaseException)
    np.testing.assert_allclose(good[0], runtime.compute("scores", X[:2])[0], rtol=1e-5)
    np.testing.assert_allclose(good2[0], runtime.compute("scores", X[2:3])[0], rtol=1e-5)


def test_concurrent_requests_are_stacked_and_answered_each(models_dir: Path, digits: np.ndarray) -> None:
    """Eight concurrent one-row requests through the app: each gets its own scores, and the
    metrics show model calls that served several requests."""
    app = create_app(Settings(models_dir=models_dir, reload_interval_s=0))

    async def main() -> tuple[list[httpx.Response], list[httpx.Response], str]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            while (await client.get("/health/ready")).status_code != 200:
                await asyncio.sleep(0.01)
            bodies = [{"model": "digits-pca", "inputs": digits[i : i + 1].tolist()} for i in range(8)]
            together = await asyncio.gather(*(client.post("/anomaly-score", json=b) for b in bodies))
            alone = [await client.post("/anomaly-score", json=b) for b in bodies]
            metrics = (await client.get("/metrics")).text
        return list(together), alone, metrics

    together, alone, metrics = asyncio.run(main())
    for t, a in zip(together, alone, strict=True):
        assert t.status_code == a.status_code == 200, t.text
        np.testing.assert_allclose(t.json()["scores"], a.json()["scores"], rtol=1e-5)
        assert t.json()["p_values"] == a.json()["p_values"]
    single = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('latentserve_batch_requests_bucket{le="1.0"}')
    )
    count = float(
        next(
            line.split()[-1]
            for line in metrics.splitlines()
            if line.startswith("latentserve_batch_requests_count")
        )
    )
    assert count < 16, metrics  # 16 requests took fewer model calls
    assert count > single, "no model call served more than one request"
