"""Large JSON bodies parsed in a worker process (service.jsonpool): same answers, a budget."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from service.assembly import build_admission
from service.errors import Overloaded
from service.jsonpool import BadRows, JsonPool
from service.settings import Settings
from tests.service.conftest import NPY_HEADERS, error_of, npy, serve

OFFLOAD = 64 * 1024  # bodies over this go to the worker in these tests (INLINE_BYTES is 16 KiB)
JSON_HEADERS = {"content-type": "application/json"}


def _rows(n: int = 100) -> np.ndarray:
    return np.random.default_rng(3).random((n, 64)).astype(np.float32)


def _body(rows: Any, **options: Any) -> bytes:
    body = orjson.dumps({"model": "digits-pca", **options, "inputs": rows})
    assert len(body) > OFFLOAD
    return body


def test_a_large_json_body_is_parsed_in_a_worker_and_scores_as_in_process(models_dir: Path) -> None:
    X = _rows()
    body = _body(X.tolist(), return_feature_errors=True)
    with serve(models_dir, json_offload_bytes=OFFLOAD) as pooled:
        answer = pooled.post("/anomaly-score", content=body, headers=JSON_HEADERS)
        assert answer.status_code == 200, answer.text
        # the body parsed, and the answer (100 x 64 feature errors) encoded, by the worker
        assert pooled.app.state.service.json_pool.parsed == 2  # type: ignore[attr-defined]
        npy_answer = pooled.post("/anomaly-score?model=digits-pca", content=npy(X), headers=NPY_HEADERS)
    with serve(models_dir, json_workers=0) as local:
        expected = local.post("/anomaly-score", content=body, headers=JSON_HEADERS)
        assert local.app.state.service.json_pool.parsed == 0  # type: ignore[attr-defined]
    assert answer.json() == expected.json()
    np.testing.assert_allclose(answer.json()["scores"], npy_answer.json()["scores"], rtol=1e-6)


def test_a_large_json_answer_is_encoded_in_a_worker_and_is_the_same_answer(models_dir: Path) -> None:
    Z = np.random.default_rng(4).random((1500, 16)).astype(np.float32)  # 96,000 values: ~1.5 MB predicted
    answers = []
    for workers in (1, 0):
        with serve(models_dir, json_offload_bytes=OFFLOAD, json_workers=workers) as client:
            answers.append(client.post("/decode?model=digits-pca", content=npy(Z), headers=NPY_HEADERS))
            assert client.app.state.service.json_pool.parsed == workers  # type: ignore[attr-defined]
    pooled, local = answers
    assert pooled.status_code == 200 and pooled.content == local.content
    assert np.asarray(pooled.json()["outputs"]).shape == (1500, 8, 8)


def test_small_json_bodies_do_not_take_the_process_hop(models_dir: Path) -> None:
    with serve(models_dir, json_offload_bytes=OFFLOAD) as client:
        body = orjson.dumps({"model": "digits-pca", "inputs": _rows(40).tolist()})
        assert 16 * 1024 < len(body) <= OFFLOAD  # parsed in a worker thread, not in a process
        assert client.post("/encode", content=body, headers=JSON_HEADERS).status_code == 200
        assert client.app.state.service.json_pool.parsed == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "case",
    ["bad row", "bad row and unknown model", "boolean", "ragged", "malformed", "no inputs", "too many"],
)
def test_errors_are_the_same_whichever_process_parses(models_dir: Path, case: str) -> None:
    rows: list[Any] = _rows().tolist()
    options: dict[str, Any] = {}
    if case.startswith("bad row"):
        rows[7][3] = "x"
        if case.endswith("model"):
            options["model"] = "no-such-model"
    elif case == "boolean":
        rows[5][0] = True
    elif case == "ragged":
        rows[9] = rows[9][:10]
    body = _body(rows, **options)
    if case == "malformed":
        body = body[:-1]
    elif case == "no inputs":
        body = orjson.dumps({"model": "digits-pca", "input": rows})
    limits = {"max_rows": 50} if case == "too many" else {}
    answers = []
    for workers in (1, 0):
        with serve(models_dir, json_offload_bytes=OFFLOAD, json_workers=workers, **limits) as client:
            answers.append(client.post("/anomaly-score", content=body, headers=JSON_HEADERS))
            assert client.app.state.service.json_pool.parsed == workers  # type: ignore[attr-defined]
    pooled, local = answers
    assert pooled.status_code == local.status_code and pooled.json() == local.json()
    status = {"bad row and unknown model": 404, "too many": 413}.get(case, 422)
    error = error_of(pooled, status)
    if case in ("bad row", "boolean", "ragged"):
        assert error["details"]["row"] == {"bad row": 7, "boolean": 5, "ragged": 9}[case]


def test_past_the_pools_queue_a_large_json_body_is_a_counted_503(models_dir: Path) -> None:
    with serve(models_dir, json_offload_bytes=OFFLOAD, json_workers=1, json_queue=0) as client:
        pool = client.app.state.service.json_pool  # type: ignore[attr-defined]
        body = _body(_rows().tolist())
        with pool.slot():  # the one worker is taken: a body being parsed
            refused = client.post("/anomaly-score", content=body, headers=JSON_HEADERS)
        error = error_of(refused, 503)
        assert refused.headers["retry-after"] == "1" and "JSON_QUEUE" in error["message"]
        metrics = client.get("/metrics").text
        assert 'latentserve_shed_total{limit="json_queue"} 1.0' in metrics
        assert client.post("/anomaly-score", content=body, headers=JSON_HEADERS).status_code == 200


def test_a_worker_that_dies_is_replaced_and_its_body_still_answered() -> None:
    settings = Settings(json_workers=1)
    pool = JsonPool(settings, build_admission(settings))
    body = orjson.dumps({"inputs": [[1.0, 2.0], [3.0, 4.0]]})
    try:
        pool.start()
        _, rows = pool.parse(body, "inputs", deadline=_in(30))
        assert isinstance(rows, np.ndarray) and rows.tolist() == [[1.0, 2.0], [3.0, 4.0]]
        executor = pool._executor
        assert executor is not None
        for pid in list(executor._processes):  # the worker is killed (the OOM killer, say)
            os.kill(pid, signal.SIGKILL)  # a child of the forkserver: its death breaks the pool
        _, rows = pool.parse(body, "inputs", deadline=_in(30))  # answered in process meanwhile
        assert isinstance(rows, np.ndarray) and rows.shape == (2, 2)
        _, rows = pool.parse(body, "inputs", deadline=_in(30))  # and by a new worker
        assert pool._executor is not executor and pool.parsed == 2
        _, bad = pool.parse(orjson.dumps({"inputs": [[1.0], ["a"]]}), "inputs", deadline=_in(30))
        assert isinstance(bad, BadRows) and len(bad) == 2 and bad.error.details == {"row": 1}
    finally:
        pool.close()


def test_after_close_bodies_are_parsed_in_the_server() -> None:
    settings = Settings(json_workers=1, json_offload_bytes=0)
    pool = JsonPool(settings, build_admission(settings))
    body = orjson.dumps({"inputs": [[1.0, 2.0]]})
    assert pool.takes(body)
    pool.close()
    assert not pool.takes(body)
    _, rows = pool.parse(body, "inputs", deadline=_in(30))
    assert isinstance(rows, np.ndarray) and rows.tolist() == [[1.0, 2.0]]
    assert pool._executor is None and pool.parsed == 0


def test_a_full_pool_refuses_before_sending_anything() -> None:
    settings = Settings(json_workers=1, json_queue=1)
    admission = build_admission(settings)
    pool = JsonPool(settings, admission)
    with pool.slot(), pool.slot(), pytest.raises(Overloaded):
        pool.parse(b"{}", "inputs", deadline=_in(30))
    assert admission.shed["json_queue"] == 1 and pool.busy == 0 and pool._executor is None


def _in(seconds: float) -> float:
    return time.monotonic() + seconds


def test_a_worker_that_does_not_answer_by_the_deadline_is_replaced_so_the_pool_never_wedges() -> None:
    """Break 2: a pool whose workers hang (or died unnoticed) made every later large body wait for
    its 504; a timeout now replaces the pool, so the next body is parsed at once."""
    settings = Settings(json_workers=1)
    pool = JsonPool(settings, build_admission(settings))
    pool.start()
    try:
        with pytest.raises(TimeoutError):
            pool._run(time.sleep, time.monotonic() + 0.5, 30)  # a worker that never answers in time
        data, rows = pool.parse(_body(_rows().tolist()), "inputs", time.monotonic() + 10)
        assert data["model"] == "digits-pca" and isinstance(rows, np.ndarray) and rows.shape == (100, 64)
    finally:
        pool.close()
