"""The Open Inference Protocol codec, and real third-party clients against `python -m service`.

tritonclient (the dev extra) runs in CI. KServe's InferenceRESTClient pulls in kubernetes, grpcio
and a protobuf older than onnx's, so it is not in the dev extra: with LATENTSERVE_KSERVE_PYTHON
naming the python of a venv where `kserve` is installed, the same checks run through it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.protocols.v2 import wire
from tests.deploy.live import service


def test_ops_for_computes_only_what_is_asked():
    assert wire.ops_for(["score"]) == ("scores",)
    assert wire.ops_for(["is_anomaly", "p_value"]) == ("scores",)
    assert wire.ops_for(["code"]) == ("encode",)
    assert wire.ops_for(["reconstruction", "score"]) == ("reconstruct",)
    assert wire.ops_for(["code", "score"]) == ("encode", "scores")
    assert wire.ops_for(["code", "reconstruction", "score", "is_anomaly", "p_value"]) == (
        "encode",
        "reconstruct",
    )


def test_split_name_prefers_a_model_of_the_full_name():
    assert wire.split_name("a", {"a"}) == ("a", "model")
    assert wire.split_name("a.decoder", {"a"}) == ("a", "decoder")
    assert wire.split_name("a.sample", {"a"}) == ("a", "sample")
    assert wire.split_name("a.decoder", {"a", "a.decoder"}) == ("a.decoder", "model")
    assert wire.split_name(".decoder", set()) == (".decoder", "model")


@pytest.fixture(scope="module")
def url(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m service` over a socket: /v2 infer takes the HTTP fast path (service.fastpath.protocol)."""
    with service(models_dir, tmp_path_factory.mktemp("oip") / "service.log") as base:
        yield base


def test_tritonclient(url: str, digits: np.ndarray) -> None:
    import tritonclient.http as triton

    X = np.ascontiguousarray(digits[:5])
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("digits-pca") and client.is_model_ready("digits-pca", "1")
        assert not client.is_model_ready("no-such-model")
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "model_repository"]
        meta = client.get_model_metadata("digits-pca")
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8]}]
        assert [o["name"] for o in meta["outputs"]] == [
            "code",
            "reconstruction",
            "score",
            "is_anomaly",
            "p_value",
        ]

        ours = httpx.post(f"{url}/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist()}).json()
        codes = httpx.post(f"{url}/encode", json={"model": "digits-pca", "inputs": X.tolist()}).json()[
            "codes"
        ]
        for binary in (False, True):
            inp = triton.InferInput("input", list(X.shape), "FP32")
            inp.set_data_from_numpy(X, binary_data=binary)
            some = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("score", "is_anomaly")]
            result = client.infer("digits-pca", [inp], outputs=some, request_id=f"r-{binary}")
            assert result.get_response()["id"] == f"r-{binary}"
            assert result.as_numpy("score").tolist() == np.float32(ours["scores"]).tolist()
            assert result.as_numpy("is_anomaly").tolist() == ours["is_anomaly"]
            assert result.as_numpy("code") is None  # not asked for
            every = client.infer("digits-pca", [inp], model_version="1")  # all outputs, binary by default
            assert every.as_numpy("code").tolist() == np.float32(codes).tolist()
            assert every.as_numpy("p_value").tolist() == np.float32(ours["p_values"]).tolist()
            assert every.as_numpy("reconstruction").shape == (5, 8, 8)

        index = client.get_model_repository_index()
        assert {"name": "digits-pca", "version": "1", "state": "READY", "reason": ""} in index
        client.load_model("digits-pca")  # the registry's reload

        bad = triton.InferInput("input", [5, 63], "FP32")
        bad.set_data_from_numpy(np.ascontiguousarray(X.reshape(5, 64)[:, :63]))
        with pytest.raises(triton.InferenceServerException) as err:
            client.infer("digits-pca", [bad])
        assert err.value.status() == "400" and "expects rows of shape [8, 8]" in err.value.message()
    finally:
        client.close()


KSERVE_CLIENT = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

async def main(url, X):
    client = InferenceRESTClient(RESTConfig(protocol="v2"))
    out = {"live": await client.is_server_live(url), "ready": await client.is_server_ready(url),
           "model_ready": await client.is_model_ready(url, "digits-pca")}
    for binary in (False, True):
        inp = InferInput("input", list(X.shape), "FP32")
        inp.set_data_from_numpy(X, binary_data=binary)
        asked = [RequestedOutput(n, {"binary_data": binary}) for n in ("score", "code")]
        req = InferRequest(model_name="digits-pca", infer_inputs=[inp], request_id="k", request_outputs=asked)
        res = await client.infer(url, req, model_name="digits-pca")
        out[str(binary)] = {o.name: o.as_numpy().tolist() for o in res.outputs} | {"id": res.id}
    await client.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], np.asarray(json.load(sys.stdin), dtype=np.float32)))
"""


def test_kserve_inference_rest_client(url: str, digits: np.ndarray) -> None:
    python = os.environ.get("LATENTSERVE_KSERVE_PYTHON")
    if not python:
        pytest.skip("LATENTSERVE_KSERVE_PYTHON is not set (a venv with kserve; it is not in the dev extra)")
    X = digits[:3]
    run = subprocess.run(
        [python, "-c", KSERVE_CLIENT, url], input=json.dumps(X.tolist()), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)
    assert got["live"] and got["ready"] and got["model_ready"]
    ours = httpx.post(f"{url}/anomaly-score", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    codes = httpx.post(f"{url}/encode", json={"model": "digits-pca", "inputs": X.tolist()}).json()["codes"]
    for binary in ("False", "True"):
        assert got[binary]["id"] == "k"
        assert np.float32(got[binary]["score"]).tolist() == np.float32(ours["scores"]).tolist()
        assert np.float32(got[binary]["code"]).tolist() == np.float32(codes).tolist()
