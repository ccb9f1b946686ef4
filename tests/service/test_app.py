"""The app factory: one error shape for everything, OpenAPI docs, and no torch in the service."""

from __future__ import annotations

import subprocess
import sys

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import ROOT, error_of


def test_service_never_imports_torch_or_training():
    code = (
        "import sys, service.app, service.__main__; "
        "app = service.app.create_app(service.settings.Settings(models_dir='/nonexistent')); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_unknown_path_and_wrong_method_use_the_error_shape(client):
    err = error_of(client.get("/nowhere"), 404)
    assert err["type"] == "RouteNotFound" and "/nowhere" in err["message"]
    err = error_of(client.get("/encode"), 405)
    assert err["type"] == "MethodNotAllowed" and "allowed: POST" in err["message"]


def test_unexpected_errors_leak_no_stack_trace(models_dir):
    app = create_app(Settings(models_dir=models_dir, reload_interval_s=0))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    err = error_of(r, 500)
    assert err["type"] == "InternalError" and "secret" not in r.text and "Traceback" not in r.text


def test_request_validation_errors_use_the_error_shape(models_dir):
    app = create_app(Settings(models_dir=models_dir, reload_interval_s=0))

    @app.get("/typed/{n}")
    def typed(n: int) -> int:
        return n

    with TestClient(app) as c:
        err = error_of(c.get("/typed/abc"), 422)
    assert err["type"] == "InvalidInput" and err["field"] == "n" and "valid integer" in err["message"]


def test_openapi_documents_every_endpoint_with_examples(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/encode", "/decode", "/reconstruct", "/anomaly-score", "/sample"):
        content = paths[path]["post"]["requestBody"]["content"]
        assert content["application/json"]["example"]["model"], path
        assert "inputs" in content["application/json"]["schema"]["properties"] or path in (
            "/decode",
            "/sample",
        )
    assert "application/x-npy" in paths["/encode"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in paths["/anomaly-score"]["post"]["requestBody"]["content"]
    assert "image/png" in paths["/reconstruct"]["post"]["responses"]["200"]["content"]
    for path in ("/models", "/models/{name}", "/health/live", "/health/ready", "/metrics", "/admin/reload"):
        assert path in paths
    schemas = spec["components"]["schemas"]
    for name in (
        "EncodeResponse",
        "AnomalyScoreResponse",
        "ModelsResponse",
        "HealthResponse",
        "ErrorResponse",
    ):
        assert schemas[name]["examples"], name
    assert client.get("/docs").status_code == 200


def test_the_fastapi_routes_answer_like_the_fast_path(make_client, digits):
    """With LATENTSERVE_FAST_PATH=false the same requests go through FastAPI's router."""
    import numpy as np

    from tests.service.conftest import NPY_HEADERS, npy, png

    body = {"model": "digits-pca", "inputs": digits[:2].tolist()}
    answers = []
    for fast in (True, False):
        with make_client(fast_path=fast, api_key="k3y") as c:
            key = {"x-api-key": "k3y"}
            r = c.post("/anomaly-score", json=body, headers=key)
            assert r.status_code == 200, r.text
            answers.append(r.json())
            r = c.post("/encode?model=digits-pca", content=npy(digits[:2]), headers={**NPY_HEADERS, **key})
            assert r.status_code == 200 and len(r.json()["codes"]) == 2
            files = [("files", ("a.png", png(digits[0]), "image/png"))]
            assert c.post("/reconstruct?model=digits-pca", files=files, headers=key).status_code == 200
            bad = c.post(
                "/encode?model=digits-pca", files=[("files", ("a.png", b"junk", "image/png"))], headers=key
            )
            assert error_of(bad, 422)["field"] == "files"
            assert error_of(c.post("/encode", json=body), 401)["message"].startswith("missing API key")
            assert error_of(c.post("/encode", json={**body, "model": "x"}, headers=key), 404)
    np.testing.assert_allclose(answers[0]["scores"], answers[1]["scores"])


def test_docs_sit_behind_the_key_unless_docs_public(make_client):
    paths = ("/docs", "/redoc", "/openapi.json")
    with make_client(api_key="s3cret") as c:
        for path in paths:
            assert error_of(c.get(path), 401)["type"] == "Unauthorized"
            assert c.get(path, headers={"x-api-key": "s3cret"}).status_code == 200, path
        spec = c.get("/openapi.json", headers={"x-api-key": "s3cret"}).json()
        assert "/encode" in spec["paths"] and "/docs" not in spec["paths"]
    with make_client(api_key="s3cret", docs_public=True) as c:
        assert all(c.get(path).status_code == 200 for path in paths)
    with make_client() as c:  # no key: open, as before
        assert all(c.get(path).status_code == 200 for path in paths)
