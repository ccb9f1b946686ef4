"""ModelRuntime.compute and its timing-based prediction, on a real exported model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentserve_core.runtime import ModelRuntime
from latentserve_core.runtime.base import TIMED_MIN_ROWS
from service.registry import Registry


@pytest.fixture
def runtime(models_dir: Path) -> ModelRuntime:
    registry = Registry(models_dir)
    registry.reload()
    return registry.get("digits-pca", None)  # a fresh runtime: no timings yet


def test_ops_agree_with_the_public_methods(runtime: ModelRuntime, digits: np.ndarray) -> None:
    X = runtime.check_inputs(digits)
    (Z,) = runtime.compute("encode", X)
    np.testing.assert_allclose(Z, runtime.encode(digits), rtol=1e-6)
    (X_hat,) = runtime.compute("decode", Z)
    assert X_hat.shape == X.shape
    rec_hat, rec_scores = runtime.compute("reconstruct", X)
    (scores,) = runtime.compute("scores", X)
    np.testing.assert_allclose(rec_hat, runtime.reconstruct(digits).X_hat, rtol=1e-6)
    np.testing.assert_allclose(scores, rec_scores, rtol=1e-5)
    np.testing.assert_allclose(scores, runtime.reconstruct(digits).scores, rtol=1e-5)


def test_prediction_is_learned_from_calls_of_enough_rows(runtime: ModelRuntime) -> None:
    small = np.random.default_rng(0).random((TIMED_MIN_ROWS - 1, 8, 8), dtype=np.float32)
    runtime.compute("scores", small)
    assert runtime.predicted_seconds("scores", 100) is None  # small calls do not count
    big = np.random.default_rng(1).random((4 * TIMED_MIN_ROWS, 8, 8), dtype=np.float32)
    runtime.compute("scores", big)
    one = runtime.predicted_seconds("scores", 100)
    assert one is not None and one > 0
    assert runtime.predicted_seconds("scores", 200) == pytest.approx(2 * one)  # linear in rows
    assert runtime.predicted_seconds("encode", 100) is None  # per op


def test_outputs_that_overflow_float32_are_an_invalid_input_naming_the_row(
    runtime: ModelRuntime, digits: np.ndarray
) -> None:
    from service.errors import InvalidInput

    X = runtime.check_inputs(np.concatenate([digits[:2], np.full((1, 8, 8), 1e20, dtype=np.float32)]))
    for op in ("scores", "reconstruct"):
        with pytest.raises(InvalidInput, match="row 2 gives a non-finite") as info:
            runtime.compute(op, X)  # type: ignore[arg-type]
        assert info.value.details == {"rows": [2]} and "digits-pca" in info.value.message
    (Z,) = runtime.compute("encode", X[:2])
    assert np.isfinite(Z).all()


def test_values_beyond_float32_are_named(runtime: ModelRuntime) -> None:
    from service.errors import InvalidInput

    X = np.zeros((2, 64))
    X[1, 5] = 1e300
    with pytest.raises(InvalidInput, match="row 1 contains NaN or infinity, or a value beyond float32"):
        runtime.check_inputs(X)
