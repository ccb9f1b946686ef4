"""Every inference endpoint in every input and output format, against tiny real models."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import NPY_HEADERS, error_of, from_npy, npy, png


def test_encode_json_flat_and_shaped_agree(client, digits):
    flat = client.post("/encode", json={"model": "digits-pca", "inputs": digits[:3].reshape(3, -1).tolist()})
    shaped = client.post("/encode", json={"model": "digits-pca", "version": 1, "inputs": digits[:3].tolist()})
    assert flat.status_code == shaped.status_code == 200, flat.text
    body = flat.json()
    assert body["model"] == "digits-pca" and body["version"] == 1
    codes = np.asarray(body["codes"])
    assert codes.shape == (3, 16)
    np.testing.assert_allclose(codes, shaped.json()["codes"], rtol=1e-6)


def test_decode_json_returns_shaped_outputs(client):
    r = client.post("/decode", json={"model": "digits-pca", "codes": [[0.0] * 16, [0.5] * 16]})
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["outputs"]).shape == (2, 8, 8)
    assert r.json()["version"] == 1


def test_reconstruct_json_mirrors_the_row_layout(client, digits):
    flat = client.post(
        "/reconstruct", json={"model": "digits-pca", "inputs": digits[:2].reshape(2, -1).tolist()}
    )
    shaped = client.post("/reconstruct", json={"model": "digits-pca", "inputs": digits[:2].tolist()})
    assert np.asarray(flat.json()["reconstructions"]).shape == (2, 64)
    assert np.asarray(shaped.json()["reconstructions"]).shape == (2, 8, 8)
    errors = np.asarray(flat.json()["errors"])
    assert errors.shape == (2,) and (errors >= 0).all()
    np.testing.assert_allclose(errors, shaped.json()["errors"], rtol=1e-6)


def test_reconstruct_matches_the_models_own_error(client, digits):
    X = digits[:4]
    r = client.post("/reconstruct", json={"model": "digits-pca", "inputs": X.tolist()}).json()
    X_hat = np.asarray(r["reconstructions"], dtype=np.float32)
    np.testing.assert_allclose(
        ((X - X_hat) ** 2).reshape(4, -1).mean(axis=1), r["errors"], rtol=1e-3, atol=1e-6
    )


def test_anomaly_score_json(client, cancer):
    r = client.post("/anomaly-score", json={"model": "breast-cancer-pca", "inputs": cancer[:5].tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"model", "version", "scores", "threshold", "is_anomaly", "p_values", "rule"}
    assert body["rule"] == "threshold"
    scores = np.asarray(body["scores"])
    assert len(scores) == len(body["is_anomaly"]) == len(body["p_values"]) == 5
    assert body["is_anomaly"] == [bool(s > body["threshold"]) for s in scores]
    assert all(0 < p <= 1 for p in body["p_values"])


def test_anomaly_score_threshold_override_and_feature_errors(client, digits):
    body = client.post(
        "/anomaly-score",
        json={
            "model": "digits-pca",
            "inputs": digits[:2].tolist(),
            "threshold": 0.0,
            "return_feature_errors": True,
        },
    ).json()
    assert body["threshold"] == 0.0 and body["is_anomaly"] == [True, True]
    fe = np.asarray(body["feature_errors"])
    assert fe.shape == (2, 8, 8)  # the per-pixel map of an image model
    np.testing.assert_allclose(fe.reshape(2, -1).mean(axis=1), body["scores"], rtol=1e-4)


def test_npy_in_npy_out(client, digits):
    r = client.post(
        "/encode?model=digits-pca",
        content=npy(digits[:5]),
        headers={**NPY_HEADERS, "accept": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    assert r.headers["x-model"] == "digits-pca" and r.headers["x-model-version"] == "1"
    codes = from_npy(r.content)
    assert codes.shape == (5, 16) and codes.dtype == np.float32
    js = client.post("/encode", json={"model": "digits-pca", "inputs": digits[:5].tolist()}).json()
    np.testing.assert_allclose(codes, js["codes"], rtol=1e-5, atol=1e-6)


def test_npy_in_json_out_with_version_query(client, cancer):
    r = client.post(
        "/reconstruct?model=breast-cancer-pca&version=1",
        content=npy(cancer[:3].astype(np.float64)),
        headers=NPY_HEADERS,
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and np.asarray(r.json()["reconstructions"]).shape == (3, 30)


def test_anomaly_score_npy_and_npz(client, digits):
    url = "/anomaly-score?model=digits-pca&return_feature_errors=true"
    r = client.post(url, content=npy(digits[:4]), headers={**NPY_HEADERS, "accept": "application/x-npy"})
    assert r.status_code == 200, r.text
    scores = from_npy(r.content)
    assert scores.shape == (4,) and float(r.headers["x-threshold"]) > 0
    r = client.post(url, content=npy(digits[:4]), headers={**NPY_HEADERS, "accept": "application/x-npz"})
    arrays = np.load(io.BytesIO(r.content))
    assert set(arrays.files) == {"scores", "is_anomaly", "p_values", "feature_errors"}
    np.testing.assert_allclose(arrays["scores"], scores)
    assert arrays["feature_errors"].shape == (4, 8, 8)


def test_decode_npy(client):
    r = client.post(
        "/decode?model=digits-pca",
        content=npy(np.zeros((2, 16), np.float32)),
        headers={**NPY_HEADERS, "accept": "application/x-npy"},
    )
    assert r.status_code == 200, r.text
    assert from_npy(r.content).shape == (2, 8, 8)


def test_multipart_png_images(client, digits):
    files = [("files", (f"d{i}.png", png(digits[i]), "image/png")) for i in range(3)]
    r = client.post("/anomaly-score?model=digits-pca", files=files)
    assert r.status_code == 200, r.text
    assert len(r.json()["scores"]) == 3
    # the PNG round trip quantises to 1/255: the codes match the float rows closely
    r = client.post("/encode?model=digits-pca", files=files[:1])
    js = client.post("/encode", json={"model": "digits-pca", "inputs": digits[:1].tolist()}).json()
    np.testing.assert_allclose(r.json()["codes"], js["codes"], atol=0.05)


def test_multipart_resize(client, digits):
    big = np.kron(digits[0], np.ones((4, 4)))  # 32x32
    files = [("files", ("big.png", png(big), "image/png"))]
    err = error_of(client.post("/encode?model=digits-pca", files=files), 422)
    assert "32x32" in err["message"] and "8x8" in err["message"] and "resize=true" in err["message"]
    r = client.post("/encode?model=digits-pca&resize=true", files=files)
    assert r.status_code == 200, r.text
    assert client.post("/encode?model=digits-pca&resize=1", files=files).status_code == 200
    err = error_of(client.post("/encode?model=digits-pca&resize=false", files=files), 422)
    assert "resize=true" in err["message"]
    err = error_of(client.post("/encode?model=digits-pca&resize=maybe", files=files), 422)
    assert err["field"] == "resize" and "boolean" in err["message"]
    # /decode reads no images: resize there is an unknown parameter, not silently ignored
    err = error_of(
        client.post(
            "/decode?model=digits-pca&resize=true", content=npy(np.zeros((1, 16))), headers=NPY_HEADERS
        ),
        422,
    )
    assert err["field"] == "resize"


def test_multipart_rgb_image_becomes_grey(client, digits):
    rgb = np.stack([digits[0]] * 3, axis=-1)
    r = client.post("/reconstruct?model=digits-pca", files=[("files", ("c.png", png(rgb), "image/png"))])
    assert r.status_code == 200, r.text
    assert np.asarray(r.json()["reconstructions"]).shape == (1, 8, 8)


def test_multipart_jpeg(client, digits):
    buf = io.BytesIO()
    Image.fromarray((digits[0] * 255).astype(np.uint8)).save(buf, format="JPEG")
    r = client.post("/encode?model=digits-pca", files=[("files", ("d.jpg", buf.getvalue(), "image/jpeg"))])
    assert r.status_code == 200, r.text


def test_reconstruct_png_out(client, digits):
    r = client.post(
        "/reconstruct",
        json={"model": "digits-pca", "inputs": digits[:1].tolist()},
        headers={"accept": "image/png"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-model"] == "digits-pca"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (8, 8) and img.mode == "L"
    r = client.post(
        "/reconstruct?model=digits-pca",
        files=[("files", ("a.png", png(digits[0]), "image/png"))],
        headers={"accept": "image/png"},
    )
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


def test_png_out_needs_one_image_row(client, digits, cancer):
    err = error_of(
        client.post(
            "/reconstruct",
            json={"model": "digits-pca", "inputs": digits[:2].tolist()},
            headers={"accept": "image/png"},
        ),
        406,
    )
    assert "exactly one row" in err["message"]
    err = error_of(
        client.post(
            "/reconstruct",
            json={"model": "breast-cancer-pca", "inputs": cancer[:1].tolist()},
            headers={"accept": "image/png"},
        ),
        406,
    )
    assert "image models" in err["message"]
    err = error_of(
        client.post(
            "/encode",
            json={"model": "digits-pca", "inputs": digits[:1].tolist()},
            headers={"accept": "text/csv"},
        ),
        406,
    )
    assert "text/csv" in err["message"]


def test_sample_needs_a_generative_model(client):
    err = error_of(client.post("/sample", json={"model": "digits-pca", "n": 2}), 422)
    assert "standard-normal" in err["message"] and "digits-pca" in err["message"]


def test_sample_from_a_vae(client):
    r = client.post("/sample", json={"model": "digits-vae", "n": 3, "seed": 1})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "digits-vae" and np.asarray(r.json()["outputs"]).shape == (3, 8, 8)
    again = client.post("/sample", json={"model": "digits-vae", "n": 3, "seed": 1}).json()
    assert again["outputs"] == r.json()["outputs"]
    r = client.post("/sample", json={"model": "digits-vae", "n": 1}, headers={"accept": "image/png"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_autoencoder_serves_every_verb(client, digits):
    for path in ("/encode", "/reconstruct", "/anomaly-score"):
        r = client.post(path, json={"model": "digits-vae", "inputs": digits[:2].tolist()})
        assert r.status_code == 200, (path, r.text)
    codes = client.post("/encode", json={"model": "digits-vae", "inputs": digits[:2].tolist()}).json()[
        "codes"
    ]
    assert client.post("/decode", json={"model": "digits-vae", "codes": codes}).status_code == 200


# ---- bad input: never a 500; status and message checked -------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "nope", "inputs": [[0.0] * 64]}, 404, "available models"),
        ({"model": "digits-pca", "version": 9, "inputs": [[0.0] * 64]}, 404, "available versions: [1]"),
        (
            {"model": "digits-pca", "inputs": [[0.0] * 63]},
            422,
            "expects rows of shape [8, 8] (or 64 flat values)",
        ),
        ({"model": "digits-pca", "inputs": [[[0.0] * 8] * 7]}, 422, "got rows of shape [7, 8]"),
        ({"model": "digits-pca", "inputs": [[0.0] * 64, [0.0] * 63]}, 422, "row 1 has shape [63]"),
        (
            {"model": "digits-pca", "inputs": [[0.0] * 64, [0.0] * 63 + ["x"]]},
            422,
            "row 1 contains a non-numeric",
        ),
        (
            {"model": "digits-pca", "inputs": [[0.0] * 64, [None] * 64]},
            422,
            "row 1 contains a non-numeric value null",
        ),
        ({"model": "digits-pca", "inputs": [[0.0] * 64, [[0.0] * 8] * 8]}, 422, "row 1"),
        ({"model": "digits-pca", "inputs": [[1e39] * 64]}, 422, "row 0 contains NaN or infinity"),
        ({"model": "digits-pca", "inputs": [0.0] * 64}, 422, "wrap a single row"),
        ({"model": "digits-pca", "inputs": []}, 422, "non-empty list of rows"),
        ({"model": "digits-pca", "inputs": "abc"}, 422, "got a string"),
        ({"model": "digits-pca"}, 422, "inputs: field required"),
        ({"inputs": [[0.0] * 64]}, 422, "model: Field required"),
        ({"model": "digits-pca", "version": "two", "inputs": [[0.0] * 64]}, 422, "version: "),
        (
            {"model": "digits-pca", "version": 0, "inputs": [[0.0] * 64]},
            422,
            "version: Input should be greater",
        ),
        ({"model": "../etc", "inputs": [[0.0] * 64]}, 422, "model: String should match pattern"),
        ({"model": "digits-pca", "inputs": [[0.0] * 64], "colour": 1}, 422, "colour: Extra inputs"),
        ({"model": "digits-kernel-pca", "inputs": [[0.0] * 64]}, 503, "LATENTSERVE_ALLOW_PICKLE"),
    ],
)
def test_bad_json_inputs(client, body, status, needle):
    err = error_of(client.post("/encode", json=body), status)
    assert needle in err["message"], err


def test_ragged_nested_row_is_named(client):
    rows = [[[0.0] * 8] * 8, [[0.0] * 8] * 7 + [[0.0] * 7]]
    err = error_of(client.post("/reconstruct", json={"model": "digits-pca", "inputs": rows}), 422)
    assert "row 1 is ragged" in err["message"] and err["field"] == "inputs" and err["details"]["row"] == 1


def test_wrong_codes_width(client):
    err = error_of(client.post("/decode", json={"model": "digits-pca", "codes": [[0.0] * 5]}), 422)
    assert "expects rows of 16 latent values, got rows of shape [5]" in err["message"]
    assert err["field"] == "codes" and err["details"] == {"expected": [16], "got": [5]}


def test_anomaly_threshold_must_be_a_number(client):
    err = error_of(
        client.post(
            "/anomaly-score", json={"model": "digits-pca", "inputs": [[0.0] * 64], "threshold": "high"}
        ),
        422,
    )
    assert err["field"] == "threshold"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{", "malformed JSON at line 1 column 2"),
        (b"", "body: empty"),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (b'{"model": "digits-pca", "inputs": [[NaN]]}', "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_malformed_json(client, content, needle):
    err = error_of(client.post("/encode", content=content, headers={"content-type": "application/json"}), 422)
    assert needle in err["message"]


def test_unsupported_content_type(client):
    err = error_of(client.post("/encode", content=b"a,b", headers={"content-type": "text/plain"}), 415)
    assert "'text/plain'" in err["message"] and "application/json" in err["message"]
    assert "text/csv" in err["message"]  # rows by column name (tests/service/api/routes/test_named_rows.py)
    err = error_of(client.post("/sample", content=npy(np.zeros((1, 1))), headers=NPY_HEADERS), 415)
    assert "application/x-npy" in err["message"]


def _npz(A: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=A)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not numpy", "not a readable .npy array"),
        (npy(np.zeros((2, 64)))[:-20], "not a readable .npy array"),
        (npy(np.array(["a", "b"]).reshape(1, 2)), "numeric .npy array"),
        (npy(np.zeros(64)), "at least 2 dimensions"),
        (npy(np.zeros((2, 10))), "expects rows of shape [8, 8]"),
        (npy(np.full((2, 64), np.nan)), "row 0 contains NaN"),
        (_npz(np.zeros((2, 64))), "a .npz archive"),
    ],
)
def test_bad_npy(client, content, needle):
    err = error_of(client.post("/encode?model=digits-pca", content=content, headers=NPY_HEADERS), 422)
    assert needle in err["message"]


def test_npy_pickled_object_array_is_refused(client):
    buf = io.BytesIO()
    np.save(buf, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    err = error_of(client.post("/encode?model=digits-pca", content=buf.getvalue(), headers=NPY_HEADERS), 422)
    assert "not a readable .npy array" in err["message"]


def test_npy_needs_the_model_in_the_query(client, digits):
    err = error_of(client.post("/encode", content=npy(digits[:1]), headers=NPY_HEADERS), 422)
    assert err["message"].startswith("model: Field required")


def test_corrupt_and_wrong_images(client, cancer, digits):
    err = error_of(
        client.post(
            "/encode?model=digits-pca", files=[("files", ("x.png", b"\x89PNG garbage", "image/png"))]
        ),
        422,
    )
    assert "files[0] (x.png): not a readable image" in err["message"]
    truncated = png(digits[0])[:40]
    err = error_of(
        client.post("/encode?model=digits-pca", files=[("files", ("t.png", truncated, "image/png"))]), 422
    )
    assert "not a readable image" in err["message"]
    err = error_of(
        client.post(
            "/encode?model=breast-cancer-pca", files=[("files", ("a.png", png(digits[0]), "image/png"))]
        ),
        422,
    )
    assert "not images" in err["message"]
    err = error_of(
        client.post(
            "/encode?model=digits-pca",
            data={"other": "x"},
            files=[("notfiles", ("a.png", png(digits[0]), "image/png"))],
        ),
        422,
    )
    assert "under the form field 'files'" in err["message"]


def test_rows_and_body_limits(make_client, digits):
    with make_client(max_rows=4, max_body_bytes=20_000) as c:
        err = error_of(c.post("/encode", json={"model": "digits-pca", "inputs": [[0.0] * 64] * 5}), 413)
        assert "5 rows is over the limit of 4" in err["message"]
        err = error_of(
            c.post("/encode?model=digits-pca", content=npy(np.zeros((5, 64))), headers=NPY_HEADERS), 413
        )
        assert "limit of 4 rows" in err["message"]
        err = error_of(
            c.post("/encode?model=digits-pca", content=npy(np.zeros((40, 64))), headers=NPY_HEADERS), 413
        )
        assert "over the limit of 20000 bytes" in err["message"]

        def chunks():  # no Content-Length: the limit holds while streaming
            for _ in range(30):
                yield b" " * 1000

        err = error_of(c.post("/encode", content=chunks(), headers={"content-type": "application/json"}), 413)
        assert "more than the limit of 20000 bytes" in err["message"]
        err = error_of(c.post("/sample", json={"model": "digits-pca", "n": 5}), 413)
        assert "limit of 4 rows" in err["message"]
        assert (
            c.post("/encode", json={"model": "digits-pca", "inputs": digits[:4].tolist()}).status_code == 200
        )


def test_timeout_is_a_504(make_client, digits):
    # a timeout this small cannot be met by a threaded call; inline_bytes=0 forces the thread
    with make_client(request_timeout_s=1e-9, inline_bytes=0) as c:
        err = error_of(c.post("/encode", json={"model": "digits-pca", "inputs": digits[:2].tolist()}), 504)
        assert "longer than" in err["message"]


def test_large_batches_run_in_a_thread(make_client, digits):
    with make_client(inline_bytes=0) as c:
        r = c.post(
            "/anomaly-score", json={"model": "digits-pca", "inputs": np.tile(digits, (20, 1, 1)).tolist()}
        )
        assert r.status_code == 200 and len(r.json()["scores"]) == 240


def test_deeply_nested_rows_are_a_422(client):
    """A row nested a thousand lists deep (orjson reads up to 1024) is named, not a RecursionError."""
    deep = "[" * 1000 + "1" + "]" * 1000
    body = '{"model": "digits-pca", "inputs": [[0.5], ' + deep + "]}"
    err = error_of(client.post("/encode", content=body, headers={"content-type": "application/json"}), 422)
    assert "row 1 nests lists more than 32 deep" in err["message"], err


def test_scores_that_become_non_finite_are_a_422_naming_the_row(client, digits):
    """1e20 is a finite float32, its square is not: never a 200 with a null score."""
    rows = [digits[0].tolist(), [[1e20] * 8] * 8]
    for path in ("/anomaly-score", "/reconstruct"):
        err = error_of(client.post(path, json={"model": "digits-pca", "inputs": rows}), 422)
        assert "row 1 gives a non-finite" in err["message"] and err["details"]["rows"] == [1], err
    big = np.full((1, 64), 2**62, dtype=np.int64)
    r = client.post("/anomaly-score?model=digits-pca", content=npy(big), headers=NPY_HEADERS)
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert all(isinstance(s, float) for s in r.json()["scores"])


# ---- input semantics, identical on every path; bounded answers (issue 13) -------------------------
@pytest.mark.parametrize("fast_path", [True, False])
def test_booleans_in_numeric_rows_are_a_422_naming_the_row(make_client, fast_path):
    with make_client(fast_path=fast_path) as c:
        for rows in (
            [[0.0] * 64, [1.0] * 63 + [True]],
            [[0.5] * 64] * 600 + [[False] * 64],
        ):  # small, simdjson
            err = error_of(c.post("/encode", json={"model": "digits-pca", "inputs": rows}), 422)
            assert f"row {len(rows) - 1} contains a non-numeric value" in err["message"], err
        ok = {"model": "digits-pca", "inputs": [[0.5] * 64], "return_feature_errors": True}
        assert c.post("/anomaly-score", json=ok).status_code == 200  # a boolean option is fine


def test_duplicate_keys_follow_one_rule_whatever_the_body_size(client):
    """The last of repeated keys counts, for small bodies (orjson) and large ones (simdjson too)."""
    for n in (1, 600):
        rows = json.dumps([[0.5] * 64] * n)
        body = f'{{"model": "nope", "inputs": {rows}, "model": "digits-pca"}}'.encode()
        r = client.post("/encode", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.json()["model"] == "digits-pca", (n, r.text[:200])


def test_content_encoding_other_than_identity_is_415(client, digits):
    body = json.dumps({"model": "digits-pca", "inputs": digits[:1].tolist()}).encode()
    for coding in ("gzip", "br, identity"):
        r = client.post("/encode", content=body, headers={"content-encoding": coding})
        err = error_of(r, 415)
        assert err["field"] == "content-encoding" and "uncompressed" in err["message"]
    r = client.post("/encode", content=body, headers={"content-encoding": "identity"})
    assert r.status_code == 200


def test_an_answer_predicted_over_max_response_bytes_is_413_before_computing(make_client):
    codes = {"model": "digits-pca", "codes": [[0.0] * 16] * 100}  # 100 x 64 outputs
    with make_client(max_response_bytes=50_000) as c:
        err = error_of(c.post("/decode", json=codes), 413)
        assert (
            "LATENTSERVE_MAX_RESPONSE_BYTES" in err["message"]
            and "Accept: application/x-npy" in err["message"]
        )
        assert err["details"]["predicted"] > 50_000
        r = c.post("/decode", json=codes, headers={"accept": "application/x-npy"})  # 25,600 bytes
        assert r.status_code == 200 and from_npy(r.content).shape == (100, 8, 8)


def test_decoded_pixels_over_the_limit_are_413_before_decoding(make_client, digits):
    files = [("files", (f"d{i}.png", png(digits[i]), "image/png")) for i in range(3)]
    with make_client(max_request_pixels=64 * 2) as c:
        err = error_of(c.post("/encode?model=digits-pca", files=files), 413)
        assert "192 pixels" in err["message"] and "LATENTSERVE_MAX_REQUEST_PIXELS" in err["message"]
        assert c.post("/encode?model=digits-pca", files=files[:2]).status_code == 200


def test_a_worker_thread_call_stops_at_its_deadline(client):
    from service.errors import Timeout
    from service.inference import VERBS
    from service.protocols.records import Labels, Parsed

    service = client.app.state.service
    X = np.zeros((3 * 4096, 64), dtype=np.float32)
    job = service.intake.prepare(
        VERBS["encode"],
        Parsed("application/x-npy", npy(X), {"model": "digits-pca"}),
        "application/json",
        Labels(),
    )
    with pytest.raises(Timeout, match="REQUEST_TIMEOUT_S"):
        service.runner.scheduler.compute_by(job, deadline=0.0)
