"""The answer's media type from Accept, and binary answers naming the model (`service.codecs.negotiation`)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from service import codecs
from service.codecs import JSON, NPY, NPZ, PNG
from service.errors import NotAcceptable

OFFERED = (JSON, NPY, NPZ, PNG)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/x-npz;q=0.5, application/x-npy", NPY),  # by q first
        ("application/x-npz, application/x-npy", NPZ),  # then by order
        ("text/html, application/*;q=0.1", JSON),  # a wildcard takes the first offered
        ("image/*", PNG),
        ("application/x-npy;q=0, application/json", JSON),  # q=0 is refused
    ],
)
def test_accept_picks_by_q_then_order(accept: str | None, expected: str) -> None:
    assert codecs.negotiate(accept, OFFERED) == expected


def test_an_accept_we_cannot_produce_is_406_listing_what_we_can() -> None:
    with pytest.raises(NotAcceptable) as caught:
        codecs.negotiate("text/csv", (JSON, NPY))
    assert caught.value.field == "accept" and caught.value.details == {"produces": [JSON, NPY]}


def test_binary_answers_name_the_model_and_carry_the_primary_array() -> None:
    scores = np.asarray([0.5, 2.0], dtype=np.float32)
    result = codecs.Result("m", 3, {"scores": scores, "is_anomaly": scores > 1}, scalars={"threshold": 1.0})
    npy = codecs.encode_response(result, NPY)
    assert npy.headers["x-model"] == "m" and npy.headers["x-model-version"] == "3"
    assert npy.headers["x-threshold"] == "1.0"
    np.testing.assert_array_equal(np.load(io.BytesIO(npy.body)), scores)
    npz = np.load(io.BytesIO(codecs.encode_response(result, NPZ).body))
    assert sorted(npz.files) == ["is_anomaly", "scores"]
    with pytest.raises(NotAcceptable, match="only produced for image models"):
        codecs.encode_response(result, PNG)
