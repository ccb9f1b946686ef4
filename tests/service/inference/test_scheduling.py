"""Where the core runs a request (`service.inference.scheduling`): on the event loop or in a worker thread."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from starlette.responses import Response

from service.assembly import assemble, load_settings
from service.inference import VERBS, Dataplane, Refused
from tests.service.conftest import from_npy, npy


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
