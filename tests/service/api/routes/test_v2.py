"""The Open Inference Protocol routes (/v2) over the tiny real models, checked against our own routes."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from tests.service.conftest import error_of

INFER = "/v2/models/digits-pca/infer"


def v2_error(response: Any, status: int) -> str:
    """Assert the status and the protocol's error shape; return the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return body["error"]  # type: ignore[no-any-return]


def tensor(name: str, A: np.ndarray, datatype: str = "FP32", **kw: Any) -> dict[str, Any]:
    return {"name": name, "shape": list(A.shape), "datatype": datatype, "data": A.reshape(-1).tolist(), **kw}


def outputs_of(body: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in body["outputs"]}


def binary_request(doc: dict[str, Any], *arrays: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(doc)
    return header + b"".join(a.tobytes() for a in arrays), {
        "Inference-Header-Content-Length": str(len(header))
    }


def binary_outputs(response: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and every output of a binary answer."""
    n = int(response.headers["inference-header-content-length"])
    header = orjson.loads(response.content[:n])
    out, offset = {}, n
    for o in header["outputs"]:
        dtype = np.bool_ if o["datatype"] == "BOOL" else np.dtype("<f4")
        if "data" in o:
            out[o["name"]] = np.asarray(o["data"], dtype=dtype).reshape(o["shape"])
            continue
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(response.content[offset : offset + size], dtype=dtype).reshape(
            o["shape"]
        )
        offset += size
    assert offset == len(response.content)
    return header, out


# ---- health and metadata --------------------------------------------------------------------------
def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    r = client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json() == {"ready": True}
    assert client.get("/v2").json() == {
        "name": "latentserve",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data", "model_repository"],
    }


def test_model_metadata_names_every_tensor(client):
    body = client.get("/v2/models/digits-pca").json()
    assert body == {
        "name": "digits-pca",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8]}],
        "outputs": [
            {"name": "code", "datatype": "FP32", "shape": [-1, 16]},
            {"name": "reconstruction", "datatype": "FP32", "shape": [-1, 8, 8]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
            {"name": "is_anomaly", "datatype": "BOOL", "shape": [-1]},
            {"name": "p_value", "datatype": "FP32", "shape": [-1]},
        ],
    }
    assert client.get("/v2/models/digits-pca/versions/1").json() == body
    decoder = client.get("/v2/models/digits-pca.decoder").json()
    assert decoder["inputs"] == [{"name": "code", "datatype": "FP32", "shape": [-1, 16]}]
    assert decoder["outputs"] == [{"name": "reconstruction", "datatype": "FP32", "shape": [-1, 8, 8]}]
    sample = client.get("/v2/models/digits-vae.sample").json()
    assert sample["inputs"] == [{"name": "n", "datatype": "INT64", "shape": [1]}]
    assert sample["outputs"] == [{"name": "sample", "datatype": "FP32", "shape": [-1, 8, 8]}]


def test_model_ready_and_what_does_not_exist(client):
    assert client.get("/v2/models/digits-pca/ready").json() == {"name": "digits-pca", "ready": True}
    assert client.get("/v2/models/digits-pca/versions/1/ready").status_code == 200
    assert "available models" in v2_error(client.get("/v2/models/nope/ready"), 404)
    assert "no version 9" in v2_error(client.get("/v2/models/digits-pca/versions/9"), 404)
    assert "positive integer" in v2_error(client.get("/v2/models/digits-pca/versions/x/ready"), 400)
    assert "standard-normal" in v2_error(client.get("/v2/models/digits-pca.sample"), 404)
    assert "no route" in v2_error(client.get("/v2/nothing"), 404)
    assert "not allowed" in v2_error(client.delete("/v2/models/digits-pca"), 405)
    # our own routes keep their richer shape
    assert error_of(client.get("/models/nope"), 404)["type"] == "ModelNotFound"


def test_a_version_that_failed_to_load_is_not_ready(make_client, registry_copy):
    (registry_copy / "digits-pca" / "1" / "encoder.onnx").write_bytes(b"tampered")
    with make_client(registry_copy) as c:
        assert "sha256" in v2_error(c.get("/v2/models/digits-pca/ready"), 400)
        assert "sha256" in v2_error(c.post(INFER, json={"inputs": []}), 400)


def test_not_ready_before_the_registry_loads(models_dir):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    c = TestClient(create_app(Settings(models_dir=models_dir, reload_interval_s=0)))  # no lifespan
    r = c.get("/v2/health/ready")
    assert r.status_code == 400 and r.json() == {"ready": False}
    assert "still loading" in v2_error(c.post(INFER, json={"inputs": []}), 503)


# ---- inference in JSON ------------------------------------------------------------------------------
def test_infer_equals_our_score_and_encode_routes(client, digits):
    X = digits[:5]
    r = client.post(INFER, json={"id": "req-7", "inputs": [tensor("input", X)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "digits-pca" and body["model_version"] == "1" and body["id"] == "req-7"
    got = outputs_of(body)
    assert list(got) == ["code", "reconstruction", "score", "is_anomaly", "p_value"]
    score = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    codes = client.post("/encode", json={"model": "digits-pca", "inputs": X.tolist()}).json()["codes"]
    recon = client.post("/reconstruct", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    assert got["score"].tolist() == score["scores"]
    assert got["is_anomaly"].tolist() == score["is_anomaly"]
    assert got["p_value"].tolist() == score["p_values"]
    assert got["code"].tolist() == codes
    assert got["reconstruction"].tolist() == recon["reconstructions"]
    assert body["parameters"] == {"threshold": score["threshold"], "rule": "threshold"}
    assert [o["datatype"] for o in body["outputs"]] == ["FP32", "FP32", "FP32", "BOOL", "FP32"]


def test_requested_outputs_come_back_in_order_nested_data_too(client, digits):
    X = digits[:3]
    doc = {
        "inputs": [
            {"name": "input", "shape": [3, 64], "datatype": "FP32", "data": X.reshape(3, 64).tolist()}
        ],
        "outputs": [{"name": "p_value"}, {"name": "score"}],
    }
    body = client.post(INFER, json=doc).json()
    assert [o["name"] for o in body["outputs"]] == ["p_value", "score"]
    assert body["outputs"][1]["shape"] == [3]
    ref = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    assert outputs_of(body)["score"].tolist() == ref["scores"]
    assert "parameters" not in body  # no threshold was compared with


def test_reconstruction_keeps_the_rows_layout(client, digits):
    flat = tensor("input", digits[:2].reshape(2, 64))
    body = client.post(INFER, json={"inputs": [flat], "outputs": [{"name": "reconstruction"}]}).json()
    assert body["outputs"][0]["shape"] == [2, 64]


def test_threshold_parameter_and_other_parameters_pass_through(client, digits):
    doc = {
        "inputs": [tensor("input", digits[:2])],
        "outputs": [{"name": "is_anomaly"}],
        "parameters": {"threshold": 0.0, "trace": "abc"},
    }
    body = client.post(INFER, json=doc).json()
    assert outputs_of(body)["is_anomaly"].tolist() == [True, True]
    assert body["parameters"] == {"threshold": 0.0, "trace": "abc", "rule": "threshold"}


def test_alpha_parameter_flags_p_values_at_most_alpha_and_names_the_rule(client, digits):
    X = np.concatenate([digits, 1.0 - digits])
    doc = {
        "inputs": [tensor("input", X)],
        "outputs": [{"name": "is_anomaly"}, {"name": "p_value"}],
        "parameters": {"alpha": 0.2},
    }
    body = client.post(INFER, json=doc).json()
    got = outputs_of(body)
    assert got["is_anomaly"].tolist() == (got["p_value"].astype(np.float32) <= np.float32(0.2)).tolist()
    assert body["parameters"]["rule"] == "alpha" and body["parameters"]["alpha"] == 0.2
    ours = client.post(
        "/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist(), "alpha": 0.2}
    ).json()
    assert (
        got["is_anomaly"].tolist() == ours["is_anomaly"]
        and body["parameters"]["threshold"] == ours["threshold"]
    )
    header = {**doc, "inputs": [{**tensor("input", X), "parameters": {"binary_data_size": X.nbytes}}]}
    header["inputs"][0].pop("data")
    raw, headers = binary_request(header, X.astype("<f4"))
    r = client.post(INFER, content=raw, headers=headers)
    assert r.status_code == 200, r.text
    assert outputs_of(r.json())["is_anomaly"].tolist() == ours["is_anomaly"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"alpha": 0}, "parameters.alpha: expected a false-positive rate in (0, 1), got 0"),
        ({"alpha": 1.0}, "parameters.alpha: expected a false-positive rate in (0, 1), got 1.0"),
        ({"alpha": "5%"}, "parameters.alpha: expected a finite number, got '5%'"),
        ({"alpha": 0.1, "threshold": 1.0}, "not both"),
    ],
)
def test_bad_alpha_parameters_are_a_400_naming_alpha(client, digits, parameters, message):
    doc = {"inputs": [tensor("input", digits[:2])], "parameters": parameters}
    assert message in v2_error(client.post(INFER, json=doc), 400)


def test_versions_in_the_path(client, digits):
    r = client.post("/v2/models/digits-pca/versions/1/infer", json={"inputs": [tensor("input", digits[:1])]})
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    r = client.post("/v2/models/digits-pca/versions/2/infer", json={"inputs": [tensor("input", digits[:1])]})
    assert "no version 2" in v2_error(r, 404)


def test_decoder_and_sample_equal_our_routes(client):
    Z = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    body = client.post("/v2/models/digits-pca.decoder/infer", json={"inputs": [tensor("code", Z)]}).json()
    assert body["model_name"] == "digits-pca.decoder"
    ref = client.post("/decode", json={"model": "digits-pca", "codes": Z.tolist()}).json()["outputs"]
    assert outputs_of(body)["reconstruction"].tolist() == ref
    doc = {"inputs": [tensor("n", np.array([3]), "INT64")], "parameters": {"seed": 5}}
    body = client.post("/v2/models/digits-vae.sample/infer", json=doc).json()
    ref = client.post("/sample", json={"model": "digits-vae", "n": 3, "seed": 5}).json()["outputs"]
    assert outputs_of(body)["sample"].tolist() == ref


# ---- the binary tensor extension ------------------------------------------------------------------
def test_binary_in_binary_out_equals_json(client, digits):
    X = digits[:4].astype("<f4")
    doc = {
        "inputs": [
            {
                "name": "input",
                "shape": [4, 8, 8],
                "datatype": "FP32",
                "parameters": {"binary_data_size": X.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    body, headers = binary_request(doc, X)
    r = client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header, got = binary_outputs(r)
    assert all("data" not in o for o in header["outputs"])
    ref = outputs_of(client.post(INFER, json={"inputs": [tensor("input", X)]}).json())
    for name, A in ref.items():
        np.testing.assert_array_equal(got[name], A.astype(got[name].dtype), err_msg=name)


def test_binary_per_output_and_octet_stream(client, digits):
    X = digits[:2].astype("<f4")
    doc = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 64],
                "datatype": "FP32",
                "parameters": {"binary_data_size": X.nbytes},
            }
        ],
        "outputs": [{"name": "score", "parameters": {"binary_data": True}}, {"name": "is_anomaly"}],
    }
    body, headers = binary_request(doc, X)
    r = client.post(INFER, content=body, headers={**headers, "content-type": "application/octet-stream"})
    header, got = binary_outputs(r)
    assert "data" in header["outputs"][1] and "data" not in header["outputs"][0]
    ref = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    np.testing.assert_array_equal(got["score"], np.asarray(ref["scores"], dtype=np.float32))  # bit for bit
    assert got["is_anomaly"].tolist() == ref["is_anomaly"]


def test_json_in_json_out_when_nothing_is_binary(client, digits):
    r = client.post(INFER, json={"inputs": [tensor("input", digits[:1])], "outputs": [{"name": "score"}]})
    assert (
        r.headers["content-type"] == "application/json" and "inference-header-content-length" not in r.headers
    )


# ---- bad input: a 400 naming the tensor and what was expected -------------------------------------
def _bad(client: Any, doc: dict[str, Any], status: int = 400) -> str:
    return v2_error(client.post(INFER, json=doc), status)


def test_wrong_datatype(client, digits):
    msg = _bad(client, {"inputs": [tensor("input", digits[:1], "INT32")]})
    assert msg.startswith("input:") and "'INT32'" in msg and "FP32" in msg
    msg = _bad(client, {"inputs": [tensor("input", digits[:1], "BYTES")]})
    assert "'BYTES'" in msg


def test_shape_not_matching_the_data(client, digits):
    doc = {"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [0.5] * 100}]}
    assert _bad(client, doc) == "input: shape [2, 64] holds 128 values, data has 100"
    doc = {"inputs": [tensor("input", digits[:1].reshape(1, 64)[:, :60])]}
    msg = _bad(client, doc)
    assert msg.startswith("input:") and "shape [8, 8]" in msg and "[60]" in msg


def test_binary_size_not_matching(client, digits):
    X = digits[:2].astype("<f4")
    spec = {"name": "input", "shape": [2, 64], "datatype": "FP32"}
    body, headers = binary_request({"inputs": [{**spec, "parameters": {"binary_data_size": 100}}]}, X)
    msg = v2_error(client.post(INFER, content=body, headers=headers), 400)
    assert msg == "input: binary_data_size is 100 bytes, but shape [2, 64] of FP32 needs 512"
    ok = {"inputs": [{**spec, "parameters": {"binary_data_size": X.nbytes}}]}
    body, headers = binary_request(ok, X)
    msg = v2_error(client.post(INFER, content=body[:-8], headers=headers), 400)
    assert msg.startswith("input: binary_data_size 512 runs past the end of the body")
    msg = v2_error(client.post(INFER, content=body + b"1234", headers=headers), 400)
    assert msg.startswith("body: the binary section holds 516 bytes") and "add up to 512" in msg
    bad_header = {"Inference-Header-Content-Length": str(len(body) + 1)}
    assert "Inference-Header-Content-Length" in v2_error(
        client.post(INFER, content=body, headers=bad_header), 400
    )


def test_unknown_output(client, digits):
    msg = _bad(client, {"inputs": [tensor("input", digits[:1])], "outputs": [{"name": "scores"}]})
    assert msg.startswith("outputs: model 'digits-pca' version 1 has no output 'scores'") and "'score'" in msg


def test_missing_or_other_input(client, digits):
    msg = _bad(client, {"inputs": []})
    assert msg == (
        "inputs: model 'digits-pca' version 1 takes one input 'input' (FP32, shape [-1, 8, 8]); "
        "the request has none"
    )
    assert "the request has ['x']" in _bad(client, {"inputs": [tensor("x", digits[:1])]})
    doc = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32"}]}
    assert _bad(client, doc) == "input: data is missing (and no binary_data_size)"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": ["a", 1]}]},
            "input: data",
        ),
        (
            {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [None, 1]}]},
            "input: data",
        ),
        (
            {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [True, False]}]},
            "input: data",
        ),
        (
            {"inputs": [{"name": "input", "shape": [-1, 2], "datatype": "FP32", "data": [1, 1]}]},
            "inputs.0.shape",
        ),
        (
            {"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": 3}]},
            "input: data must be a list",
        ),
        ({"inputs": "x"}, "inputs"),
        (
            {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [1e39] * 64}]},
            "input: row 0",
        ),
        (
            {
                "inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [1] * 64}],
                "parameters": {"threshold": "high"},
            },
            "parameters.threshold",
        ),
    ],
)
def test_other_bad_bodies_are_400(client, doc, expected):
    assert _bad(client, doc).startswith(expected)


def test_malformed_json_and_bad_sample_requests(client):
    assert v2_error(client.post(INFER, content=b"{nope"), 400).startswith("body: malformed JSON")
    url = "/v2/models/digits-vae.sample/infer"
    r = client.post(url, json={"inputs": [tensor("n", np.array([0]), "INT64")]})
    assert "one positive integer" in v2_error(r, 400)
    r = client.post(url, json={"inputs": [tensor("n", np.array([2.5]), "FP32")]})
    assert v2_error(r, 400).startswith("n: datatype 'FP32' is not accepted")
    r = client.post(url, json={"inputs": [tensor("n", np.array([2]), "INT64")], "parameters": {"seed": -1}})
    assert "parameters.seed" in v2_error(r, 400)
    r = client.post(
        "/v2/models/digits-pca.sample/infer", json={"inputs": [tensor("n", np.array([2]), "INT64")]}
    )
    assert "standard-normal" in v2_error(r, 404)


# ---- the same rules as our routes: key, limits, metrics -------------------------------------------
def test_api_key_limits_and_metrics(make_client, digits):
    with make_client(api_key="s3cret", max_rows=4, max_body_bytes=50_000) as c:
        assert c.get("/v2/health/live").status_code == 200 and c.get("/v2/health/ready").status_code == 200
        assert "missing API key" in v2_error(c.get("/v2/models/digits-pca"), 401)
        assert "missing API key" in v2_error(
            c.post(INFER, json={"inputs": [tensor("input", digits[:1])]}), 401
        )
        key = {"X-API-Key": "s3cret"}
        assert c.get("/v2", headers=key).status_code == 200
        r = c.post(INFER, json={"inputs": [tensor("input", digits[:5])]}, headers=key)
        assert v2_error(r, 413) == "input: 5 rows is over the limit of 4 rows per request; split the batch"
        r = c.post(INFER, content=b"{" + b" " * 60_000 + b"}", headers=key)
        assert "over the limit" in v2_error(r, 413)
        assert c.post(INFER, json={"inputs": [tensor("input", digits[:2])]}, headers=key).status_code == 200
        metrics = c.get("/metrics", headers=key).text
    assert 'latentserve_requests_total{endpoint="v2/infer",model="digits-pca",status="200"} 1.0' in metrics
    assert 'latentserve_requests_total{endpoint="v2/infer",model="digits-pca",status="413"} 1.0' in metrics
    assert 'latentserve_requests_total{endpoint="v2/infer",model="<unknown>",status="401"} 1.0' in metrics
    assert 'latentserve_rows_total{endpoint="v2/infer",model="digits-pca"} 2.0' in metrics


def test_score_alone_runs_only_the_scorer(make_client, digits):
    """The version's own timings record each op it ran (calls of 32 rows and more)."""
    X = np.concatenate([digits] * 3)  # 36 rows
    with make_client() as c:
        r = c.post(INFER, json={"inputs": [tensor("input", X)], "outputs": [{"name": "score"}]})
        assert r.status_code == 200
        runtime = c.app.state.registry.get("digits-pca")  # type: ignore[attr-defined]
        assert set(runtime._seconds_per_row) == {"scores"}
        c.post(INFER, json={"inputs": [tensor("input", X)], "outputs": [{"name": "code"}]})
        assert set(runtime._seconds_per_row) == {"scores", "encode"}


def test_fast_path_off_answers_the_same(make_client, client, digits):
    doc = {"inputs": [tensor("input", digits[:3])], "outputs": [{"name": "score"}, {"name": "code"}]}
    with make_client(fast_path=False) as c:
        routed = c.post(INFER, json=doc)
        assert routed.content == client.post(INFER, json=doc).content
        assert "takes one input" in v2_error(c.post(INFER, json={"inputs": []}), 400)


def test_openapi_follows_the_protocol_spec(client):
    """Our /v2 OpenAPI against kserve/open-inference-protocol's open_inference_rest.yaml: its paths
    (templated `${MODEL_NAME}` there) and the required fields of its request and response objects."""
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2", "get"),
        ("/v2/models/{name}", "get"),
        ("/v2/models/{name}/versions/{version}", "get"),
        ("/v2/models/{name}/ready", "get"),
        ("/v2/models/{name}/versions/{version}/ready", "get"),
        ("/v2/models/{name}/infer", "post"),
        ("/v2/models/{name}/versions/{version}/infer", "post"),
    ]:
        assert method in paths.get(path, {}), path
    schemas = spec["components"]["schemas"]
    required = {  # the spec's `required` lists
        "V2ServerMetadata": {"name", "version", "extensions"},
        "V2ModelMetadata": {"name", "platform"},
        "V2Tensor": {"name", "datatype", "shape"},
        "V2InferenceResponse": {"model_name", "outputs"},
        "V2ResponseOutput": {"name", "shape", "datatype"},  # + data, which binary outputs omit
        "V2Error": {"error"},
    }
    for name, fields in required.items():
        assert fields <= set(schemas[name].get("required", [])), name
    body = paths["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["inputs"]
    assert {"name", "shape", "datatype"} <= set(body["properties"]["inputs"]["items"]["required"])
    assert body["properties"]["outputs"]["anyOf"][0]["items"]["required"] == ["name"]


def test_a_repeated_binary_header_reads_each_bodys_own_tensor(client, digits):
    """Binary headers are parsed once (a client repeats them); the data always comes from the body."""
    A, B = digits[:2].astype("<f4"), digits[2:4].astype("<f4")
    spec = {
        "name": "input",
        "shape": [2, 8, 8],
        "datatype": "FP32",
        "parameters": {"binary_data_size": A.nbytes},
    }
    doc = {"inputs": [spec], "outputs": [{"name": "score", "parameters": {"binary_data": True}}]}
    scores = []
    for X in (A, B, A):
        body, headers = binary_request(doc, X)
        scores.append(binary_outputs(client.post(INFER, content=body, headers=headers))[1]["score"].tolist())
    ref = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": B.tolist()}).json()["scores"]
    assert scores[0] == scores[2] != scores[1] == np.float32(ref).tolist()


def test_a_repeated_binary_header_with_an_error_is_refused_each_time_naming_the_model(client, digits):
    """What a binary header asks is worked out once; a header with an error is not kept, so every
    request with it gets the full message."""
    X = digits[:1].astype("<f4")
    spec = {
        "name": "input",
        "shape": [1, 8, 8],
        "datatype": "FP32",
        "parameters": {"binary_data_size": X.nbytes},
    }
    for doc, expected in [
        (
            {"inputs": [spec], "outputs": [{"name": "scores"}]},
            "outputs: model 'digits-pca' version 1 has no output",
        ),
        (
            {"inputs": [spec], "parameters": {"threshold": "high"}},
            "parameters.threshold: expected a finite number",
        ),
        ({"inputs": [{**spec, "name": "x"}]}, "inputs: model 'digits-pca' version 1 takes one input 'input'"),
    ]:
        body, headers = binary_request(doc, X)
        for _ in range(2):
            assert v2_error(client.post(INFER, content=body, headers=headers), 400).startswith(expected)


def test_a_binary_header_seen_for_one_model_is_checked_against_another(client, digits):
    """The same header sent to two models: each answers with its own name and input checks."""
    X = digits[:1].astype("<f4").reshape(1, 64)
    spec = {
        "name": "input",
        "shape": [1, 64],
        "datatype": "FP32",
        "parameters": {"binary_data_size": X.nbytes},
    }
    body, headers = binary_request({"inputs": [spec], "outputs": [{"name": "score"}]}, X)
    r = client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["model_name"] == "digits-pca"
    msg = v2_error(client.post("/v2/models/breast-cancer-pca/infer", content=body, headers=headers), 400)
    assert "breast-cancer-pca" in msg and "30" in msg  # its input is 30 values, not 64


def test_model_repository_index_load_and_unload(make_client, registry_copy):
    import shutil

    with make_client(registry_copy) as c:
        index = c.post("/v2/repository/index").json()
        assert {"name": "digits-pca", "version": "1", "state": "READY", "reason": ""} in index
        assert "available models" in v2_error(c.post("/v2/repository/models/copy-pca/load"), 404)
        shutil.copytree(registry_copy / "digits-pca", registry_copy / "copy-pca")  # a new model appears
        manifest = registry_copy / "copy-pca" / "1" / "manifest.json"
        manifest.write_text(manifest.read_text().replace('"digits-pca"', '"copy-pca"'))
        assert c.post("/v2/repository/models/copy-pca/load").json() == {}  # the registry's reload
        assert c.get("/v2/models/copy-pca/ready").status_code == 200
        assert "unload is not supported" in v2_error(c.post("/v2/repository/models/copy-pca/unload"), 400)


def test_large_json_bodies_take_simdjson_and_still_name_bad_data(client, digits):
    X = np.concatenate([digits] * 4)  # 48 rows: a body of ~20 KB, read by simdjson
    doc = {"inputs": [{"name": "input", "shape": [48, 8, 8], "datatype": "FP32", "data": X.tolist()}]}
    body = client.post(INFER, json={**doc, "outputs": [{"name": "score"}]}).json()
    ref = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    assert outputs_of(body)["score"].tolist() == ref["scores"]
    bad = X.reshape(-1).tolist()
    bad[100] = "x"
    doc = {"inputs": [{"name": "input", "shape": [48, 64], "datatype": "FP32", "data": bad}]}
    assert _bad(client, doc) == "input: data must hold numbers only (flat or nested lists)"


# ---- the protections of issue 13, through the same core -------------------------------------------
def test_v2_shares_the_input_rules_and_limits(make_client, digits):
    body = {"inputs": [tensor("input", digits[:2].reshape(2, 64))]}
    with make_client(max_response_bytes=100) as c:
        r = c.post(INFER, content=orjson.dumps(body), headers={"content-encoding": "gzip"})
        assert "Content-Encoding" in v2_error(r, 415)
        assert "LATENTSERVE_MAX_RESPONSE_BYTES" in v2_error(c.post(INFER, json=body), 413)
        c.app.state.draining = True
        assert c.get("/v2/health/ready").status_code == 400  # the protocol's "not ready"


@pytest.mark.parametrize("n", [1, 40])  # orjson below SIMDJSON_MIN_BYTES, simdjson above
def test_v2_booleans_and_repeated_keys_follow_our_rules_at_every_size(client, n):
    data = ([0.5] * 63 + [True]) * n
    body = {"inputs": [{"name": "input", "shape": [n, 64], "datatype": "FP32", "data": data}]}
    assert "numbers only" in v2_error(client.post(INFER, content=orjson.dumps(body)), 400)

    def inputs(value: float) -> str:
        data = orjson.dumps([value] * 64 * n).decode()
        return f'[{{"name": "input", "shape": [{n}, 64], "datatype": "FP32", "data": {data}}}]'

    raw = f'{{"inputs": {inputs(0.5)}, "inputs": {inputs(0.25)}}}'.encode()  # the last counts
    r = client.post(INFER, content=raw, headers={"content-type": "application/json"})
    last = client.post(INFER, content=f'{{"inputs": {inputs(0.25)}}}'.encode())
    assert r.status_code == 200 and r.json()["outputs"] == last.json()["outputs"], r.text[:200]


# ---- red-team breaks (issue 22): bad input is a 4xx, never a 500 ----------------------------------
def test_bad_shapes_versions_header_lengths_and_sample_counts_are_4xx_never_500(client, digits):
    """Break 4: a 0-d shape, non-ASCII digits ('²' passes str.isdigit, not int) and a huge sample
    count answered 500."""
    X = digits[:2].reshape(2, -1).astype(np.float32)
    zero_d = {"inputs": [{"name": "input", "shape": [], "datatype": "FP32", "data": [1.0]}]}
    assert "shape" in v2_error(client.post(INFER, json=zero_d), 400)
    negative = {"inputs": [{"name": "input", "shape": [-2, -64], "datatype": "FP32", "data": [1.0]}]}
    assert "shape" in v2_error(client.post(INFER, json=negative), 400)
    doc = {"inputs": [tensor("input", X)]}
    assert "version" in v2_error(client.post("/v2/models/digits-pca/versions/²/infer", json=doc), 400).lower()
    header = orjson.dumps(
        {"inputs": [{**tensor("input", X), "data": None, "parameters": {"binary_data_size": X.nbytes}}]}
    )
    header = orjson.dumps(orjson.loads(header) | {})
    body = header + X.tobytes()
    r = client.post(
        INFER,
        content=body,
        headers={
            "Inference-Header-Content-Length": "²".encode("latin-1"),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code in (400, 422), r.text
    for n in (10**12, 10**30):
        r = client.post(
            "/v2/models/digits-vae.sample/infer",
            json={"inputs": [{"name": "n", "shape": [1], "datatype": "INT64", "data": [n]}]},
        )
        assert r.status_code in (400, 413), r.text


def test_a_binary_body_whose_json_header_is_the_whole_body_is_refused_before_parsing(client, digits):
    """Break 5: Inference-Header-Content-Length equal to the body admitted a 60 MiB JSON header
    at the binary price; a header past MAX_V2_HEADER_BYTES is refused unparsed."""
    from service.protocols.v2.wire import MAX_V2_HEADER_BYTES

    X = digits[:2].reshape(2, -1).astype(np.float32)
    doc = orjson.dumps({"inputs": [tensor("input", X)], "pad": "x" * MAX_V2_HEADER_BYTES})
    r = client.post(
        INFER,
        content=doc,
        headers={
            "Inference-Header-Content-Length": str(len(doc)),
            "content-type": "application/octet-stream",
        },
    )
    message = v2_error(r, 413)
    assert "Inference-Header-Content-Length" in message and "application/json" in message


def test_the_answer_size_is_predicted_from_the_outputs_asked_for(client, digits):
    """Break 6: 6,000 rows asking only `score` were a 413 ("JSON answer 9.1 MB") that
    /anomaly-score answers with 200: every output was priced, and binary ones as JSON."""
    X = np.resize(digits.reshape(len(digits), -1), (9000, 64)).astype(np.float32)
    doc = {
        "inputs": [
            {
                "name": "input",
                "shape": list(X.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": X.nbytes},
            }
        ],
        "outputs": [{"name": "score"}],
    }
    body, headers = binary_request(doc, X)
    r = client.post(INFER, content=body, headers={**headers, "content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["outputs"][0]["data"]) == 9000
