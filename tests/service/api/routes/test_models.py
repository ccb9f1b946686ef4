"""/models and /models/{name}: what loaded, what failed and why; tampered and pickled artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from tests.service.conftest import error_of


def test_models_lists_every_model(client):
    r = client.get("/models")
    assert r.status_code == 200
    models = {m["name"]: m for m in r.json()["models"]}
    assert {"digits-pca", "breast-cancer-pca", "digits-kernel-pca"} <= set(models)
    v = models["digits-pca"]["versions"][0]
    assert models["digits-pca"]["latest"] == 1
    assert v["status"] == "ready" and v["kind"] == "pca" and v["format"] == "onnx"
    assert v["input_shape"] == [8, 8] and v["latent_dim"] == 16 and v["threshold"] > 0
    assert v["metrics"]["validation_error"] > 0
    k = models["digits-kernel-pca"]
    assert k["latest"] is None and k["versions"][0]["status"] == "failed"
    assert "pickle" in k["versions"][0]["error"]


def test_model_detail_has_the_manifest(client):
    r = client.get("/models/breast-cancer-pca")
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "breast-cancer-pca" and body["latest"] == 1
    assert body["versions"][0]["manifest"]["input"]["shape"] == [30]


def test_unknown_model_lists_what_exists(client):
    err = error_of(client.get("/models/nope"), 404)
    assert "model 'nope' not found" in err["message"] and "digits-pca" in err["details"]["available"]


def test_joblib_model_serves_only_with_permission(make_client, digits):
    body = {"model": "digits-kernel-pca", "inputs": digits[:2].tolist()}
    with make_client() as c:
        err = error_of(c.post("/encode", json=body), 503)
        assert "joblib (pickle)" in err["message"] and "LATENTSERVE_TRUSTED_MODELS" in err["message"]
    with make_client(trusted_models=["digits-kernel-pca"]) as c:
        r = c.post("/reconstruct", json=body)
        assert r.status_code == 200, r.text
        assert np_shape(r.json()["reconstructions"]) == (2, 8, 8)
        assert c.get("/models/digits-kernel-pca").json()["versions"][0]["status"] == "ready"
    with make_client(allow_pickle=True) as c:
        assert c.post("/anomaly-score", json=body).status_code == 200


def np_shape(rows: list) -> tuple[int, ...]:
    import numpy as np

    return tuple(np.asarray(rows).shape)


def test_tampered_file_is_refused_and_reported(make_client, registry_copy: Path, digits):
    onnx = registry_copy / "digits-pca" / "1" / "encoder.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with make_client(registry_copy) as c:
        err = error_of(c.post("/encode", json={"model": "digits-pca", "inputs": digits[:1].tolist()}), 503)
        assert "sha256" in err["message"] and "encoder.onnx" in err["message"]
        listed = {m["name"]: m for m in c.get("/models").json()["models"]}
        v = listed["digits-pca"]["versions"][0]
        assert v["status"] == "failed" and "refusing to load it" in v["error"]
        # the other models still serve
        r = c.post("/encode", json={"model": "breast-cancer-pca", "inputs": [[10.0] * 30]})
        assert r.status_code == 200
        assert "latentserve_model_load_failures_total 2.0" in c.get("/metrics").text  # + kernel-pca


def test_unreadable_manifest_is_reported(make_client, registry_copy: Path):
    manifest = registry_copy / "breast-cancer-pca" / "1" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["version"] = 7
    manifest.write_text(json.dumps(data))
    with make_client(registry_copy) as c:
        v = c.get("/models/breast-cancer-pca").json()["versions"][0]
        assert v["status"] == "failed" and "does not describe itself" in v["error"] and v["manifest"] is None
        err = error_of(c.post("/encode", json={"model": "breast-cancer-pca", "inputs": [[1.0] * 30]}), 503)
        assert "no version loaded" in err["message"]
