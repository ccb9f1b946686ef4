from __future__ import annotations

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import error_of


def test_live_and_ready(client):
    assert client.get("/health/live").json() == {"status": "ok", "models": None}
    body = client.get("/health/ready").json()
    assert body["status"] == "ready" and body["models"] >= 3


def test_not_ready_before_the_registry_loads(models_dir):
    app = create_app(Settings(models_dir=models_dir, reload_interval_s=0))
    c = TestClient(app)  # no `with`: the lifespan (and so the first load) never runs
    assert c.get("/health/live").status_code == 200
    err = error_of(c.get("/health/ready"), 503)
    assert "still loading" in err["message"]
    err = error_of(c.post("/encode", json={"model": "digits-pca", "inputs": [[0.0] * 64]}), 503)
    assert err["type"] == "NotReady"


def test_health_needs_no_key(make_client):
    with make_client(api_key="s3cret") as c:
        assert c.get("/health/live").status_code == 200
        assert c.get("/health/ready").status_code == 200


def test_not_ready_while_draining(make_client):
    with make_client() as c:
        c.app.state.draining = True  # what service.server sets on SIGTERM
        err = error_of(c.get("/health/ready"), 503)
        assert "shutting down" in err["message"]
        assert c.get("/health/live").status_code == 200


def test_liveness_answers_while_every_worker_thread_is_taken(client: TestClient) -> None:
    """Break 3: /health/live shared anyio's thread pool with file reads, reloads, /metrics and /ui;
    a pool taken by blocked reads took liveness down with it."""
    import threading

    import anyio.to_thread

    limiter = client.portal.call(anyio.to_thread.current_default_thread_limiter)  # type: ignore[union-attr]
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        client.portal.call(limiter.acquire_on_behalf_of, holder)  # type: ignore[union-attr]
    answers: list[int] = []
    try:
        for path in ("/health/live", "/v2/health/live"):
            getter = threading.Thread(target=lambda p=path: answers.append(client.get(p).status_code))
            getter.start()
            getter.join(10)
            assert not getter.is_alive(), f"{path} waited for a worker thread"
    finally:
        for holder in holders:
            client.portal.call(limiter.release_on_behalf_of, holder)  # type: ignore[union-attr]
    assert answers == [200, 200]
