"""`Client` against the live service (answers agree with the JSON endpoints) and against a scripted stub
(retries on 5xx and connection errors, none on 4xx, timeouts, the API key header)."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from latentserve_client import AnomalyScores, Client, ClientError, ServiceUnreachable
from tests.client.conftest import Reply, Stub, error_reply, scores_reply
from tests.deploy.live import free_port, service


def post_json(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{url}{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# ---- against the live service ------------------------------------------------------------------------
def test_models_lists_the_registry(live_url: str) -> None:
    with Client(live_url) as client:
        names = [m["name"] for m in client.models()]
        assert names == ["breast-cancer-pca", "digits-pca"]
        detail = client.model("digits-pca")
        assert detail["latest"] == 1 and detail["versions"][0]["manifest"]["input"]["shape"] == [8, 8]
        assert client.ready()


def test_encode_decode_reconstruct_agree_with_json(live_url: str, digit_rows: np.ndarray) -> None:
    X = digit_rows[:50]
    with Client(live_url) as client:
        Z = client.encode("digits-pca", X)
        want = post_json(live_url, "/encode", {"model": "digits-pca", "inputs": X.tolist()})
        assert Z.shape == (50, 8)
        np.testing.assert_allclose(Z, np.asarray(want["codes"]), rtol=1e-5, atol=1e-6)

        X_out = client.decode("digits-pca", Z, version=1)
        want = post_json(live_url, "/decode", {"model": "digits-pca", "version": 1, "codes": Z.tolist()})
        np.testing.assert_allclose(
            X_out, np.asarray(want["outputs"]).reshape(X_out.shape), rtol=1e-5, atol=1e-6
        )

        X_hat, errors = client.reconstruct("digits-pca", X)
        want = post_json(live_url, "/reconstruct", {"model": "digits-pca", "inputs": X.tolist()})
        assert X_hat.shape == X.shape and errors.shape == (50,)
        np.testing.assert_allclose(X_hat, np.asarray(want["reconstructions"]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(errors, np.asarray(want["errors"]), rtol=1e-5, atol=1e-7)
        # decoding the codes is reconstructing
        np.testing.assert_allclose(X_out.reshape(X_hat.shape), X_hat, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threshold", [None, 0.25])
def test_anomaly_score_agrees_with_json(
    live_url: str, cancer_rows: np.ndarray, threshold: float | None
) -> None:
    X = cancer_rows[::5]
    body: dict[str, Any] = {"model": "breast-cancer-pca", "inputs": X.tolist()}
    if threshold is not None:
        body["threshold"] = threshold
    want = post_json(live_url, "/anomaly-score", body)
    with Client(live_url) as client:
        got = client.anomaly_score("breast-cancer-pca", X, threshold=threshold)
    assert isinstance(got, AnomalyScores)
    assert (got.model, got.version) == (want["model"], want["version"]) == ("breast-cancer-pca", 1)
    assert got.threshold == pytest.approx(want["threshold"], rel=1e-6)
    if threshold is not None:
        assert got.threshold == threshold
    np.testing.assert_allclose(got.scores, want["scores"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.p_values, want["p_values"], rtol=1e-6)
    assert got.is_anomaly.dtype == np.bool_
    assert got.is_anomaly.tolist() == want["is_anomaly"]


def test_alpha_flags_p_values_at_most_alpha_as_the_json_answer_does(
    live_url: str, cancer_rows: np.ndarray
) -> None:
    X = cancer_rows[::3]
    want = post_json(
        live_url, "/anomaly-score", {"model": "breast-cancer-pca", "inputs": X.tolist(), "alpha": 0.2}
    )
    with Client(live_url) as client:
        got = client.anomaly_score("breast-cancer-pca", X, alpha=0.2)
        plain = client.anomaly_score("breast-cancer-pca", X)
    assert (got.rule, got.alpha) == (want["rule"], want["alpha"]) == ("alpha", 0.2)
    assert (plain.rule, plain.alpha) == ("threshold", None)
    assert got.is_anomaly.tolist() == want["is_anomaly"] == (got.p_values <= 0.2).tolist()
    assert got.is_anomaly.sum() > plain.is_anomaly.sum()  # a 20% rate flags more than the 0.99 quantile
    assert got.threshold == pytest.approx(want["threshold"], rel=1e-6)
    with Client(live_url) as client, pytest.raises(ClientError) as bad:
        client.anomaly_score("breast-cancer-pca", X, alpha=1.5)
    assert bad.value.status == 422 and "alpha" in bad.value.message


def test_unknown_model_and_version_are_404s(live_url: str, digit_rows: np.ndarray) -> None:
    with Client(live_url) as client:
        with pytest.raises(ClientError) as caught:
            client.encode("no-such-model", digit_rows[:2])
        assert caught.value.status == 404 and caught.value.error_type == "ModelNotFound"
        assert "no-such-model" in caught.value.message and "digits-pca" in caught.value.message
        with pytest.raises(ClientError) as caught:
            client.anomaly_score("digits-pca", digit_rows[:2], version=7)
        assert caught.value.status == 404


def test_wrong_width_is_a_422_with_the_servers_message(live_url: str) -> None:
    with Client(live_url) as client, pytest.raises(ClientError) as caught:
        client.anomaly_score("breast-cancer-pca", np.zeros((3, 29)))
    assert caught.value.status == 422 and caught.value.message
    assert not isinstance(caught.value, ServiceUnreachable)


# ---- retries, against a stub --------------------------------------------------------------------------
def test_retries_5xx_with_backoff_then_succeeds(stub: Stub) -> None:
    stub.replies = [error_reply(503, "loading"), error_reply(502, "bad gateway"), scores_reply(4)]
    start = time.monotonic()
    with Client(stub.url, retries=3, backoff=0.05) as client:
        got = client.anomaly_score("m", np.ones((4, 3)), version=3, threshold=0.5)
    elapsed = time.monotonic() - start
    assert len(stub.seen) == 3
    assert elapsed >= 0.05 + 0.1  # backoff, 2 x backoff
    assert (got.model, got.version, got.threshold) == ("stub-model", 3, 0.5)
    np.testing.assert_array_equal(got.is_anomaly, got.scores > 0.5)
    # what went over the wire: an .npy body, model/version/threshold as query parameters
    seen = stub.seen[-1]
    assert seen.method == "POST" and seen.path.startswith("/anomaly-score?")
    assert "model=m" in seen.path and "version=3" in seen.path and "threshold=0.5" in seen.path
    assert seen.headers["Content-Type"] == "application/x-npy"
    assert seen.headers["Accept"] == "application/x-npz"
    np.testing.assert_array_equal(np.load(io.BytesIO(seen.body)), np.ones((4, 3)))


def test_5xx_until_retries_run_out(stub: Stub) -> None:
    stub.replies = [error_reply(500, "internal error; the server log has the details")]
    with Client(stub.url, retries=2, backoff=0.01) as client, pytest.raises(ClientError) as caught:
        client.encode("m", np.ones((1, 2)))
    assert len(stub.seen) == 3
    assert caught.value.status == 500 and caught.value.message.startswith("internal error")


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_4xx_is_not_retried(stub: Stub, status: int) -> None:
    stub.replies = [error_reply(status, f"refused with {status}", "InvalidInput"), scores_reply(1)]
    with Client(stub.url, retries=3, backoff=0.01) as client, pytest.raises(ClientError) as caught:
        client.anomaly_score("m", np.ones((1, 2)))
    assert len(stub.seen) == 1
    assert caught.value.status == status and caught.value.message == f"refused with {status}"
    assert caught.value.error_type == "InvalidInput"


def test_a_non_json_error_body_still_gives_a_message(stub: Stub) -> None:
    stub.replies = [Reply(404, b"<html>nginx 404</html>", "text/html")]
    with Client(stub.url) as client, pytest.raises(ClientError) as caught:
        client.models()
    assert caught.value.status == 404 and "nginx 404" in caught.value.message


def test_connection_refused_is_retried_then_unreachable() -> None:
    port = free_port()  # nothing listens here
    start = time.monotonic()
    client = Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.05)
    with client, pytest.raises(ServiceUnreachable) as caught:
        client.encode("m", np.ones((1, 2)))
    assert time.monotonic() - start < 5
    assert caught.value.status is None
    assert f"127.0.0.1:{port}" in caught.value.message and "after 3 attempts" in caught.value.message


def test_connection_errors_then_success() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        buf = io.BytesIO()
        np.save(buf, np.arange(6.0).reshape(2, 3))
        return httpx.Response(200, content=buf.getvalue(), headers={"content-type": "application/x-npy"})

    with Client("http://service", retries=3, backoff=0.01, transport=httpx.MockTransport(handler)) as client:
        Z = client.encode("m", np.ones((2, 4)))
    assert len(calls) == 3
    np.testing.assert_array_equal(Z, np.arange(6.0).reshape(2, 3))


def test_timeouts_are_retried_then_unreachable(stub: Stub) -> None:
    stub.replies = [Reply(200, b"", delay=1.0)]
    client = Client(stub.url, timeout=0.2, retries=1, backoff=0.01)
    with client, pytest.raises(ServiceUnreachable) as caught:
        client.models()
    assert len(stub.seen) == 2
    assert "Timeout" in caught.value.message


def test_api_key_is_sent(stub: Stub) -> None:
    stub.replies = [Reply(200, b'{"models": []}')]
    with Client(stub.url, api_key="s3cret") as client:
        assert client.models() == []
    assert stub.seen[0].headers["X-API-Key"] == "s3cret"
    with Client(stub.url) as client:
        client.models()
    assert "X-API-Key" not in stub.seen[1].headers


def test_context_manager_closes_the_connection_pool() -> None:
    with Client("http://127.0.0.1:9") as client:
        pass
    assert client._http.is_closed


def test_the_package_needs_only_httpx_and_numpy() -> None:
    code = (
        "import sys; import latentserve_client; "
        "bad = [m for m in ('service', 'training', 'fastapi', 'starlette', 'pydantic', 'uvicorn', "
        "'onnxruntime', 'sklearn', 'PIL', 'torch') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_api_key_against_a_service_that_demands_one(client_registry: Path, tmp_path: Path) -> None:
    with service(client_registry, tmp_path / "service.log", LATENTSERVE_API_KEY="s3cret") as url:
        with Client(url, retries=0) as client, pytest.raises(ClientError) as caught:
            client.models()
        assert caught.value.status == 401 and "API key" in caught.value.message
        with Client(url, api_key="s3cret") as client:
            assert [m["name"] for m in client.models()] == ["breast-cancer-pca", "digits-pca"]
            assert client.encode("digits-pca", np.zeros((1, 64))).shape == (1, 8)
