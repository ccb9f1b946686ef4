"""ScoreSpec's pooled and relative scores: numpy (row_scores), the PCA ONNX scorer and the joblib
runtime agree, and the defaults compute exactly what they did before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.ndimage import uniform_filter

from latentserve_core.manifest import Manifest, ScoreSpec
from latentserve_core.runtime import RUNTIMES
from latentserve_core.runtime.base import RELATIVE_EPS, row_scores
from training.cli import fit_argv, main

rng = np.random.default_rng(0)


def test_defaults_are_the_plain_mean_squared_error() -> None:
    X, X_hat = rng.random((5, 12)).astype(np.float32), rng.random((5, 12)).astype(np.float32)
    spec = ScoreSpec()
    assert spec.pool is None and spec.image_shape is None and spec.relative is False
    np.testing.assert_allclose(row_scores(X, X_hat, spec), ((X - X_hat) ** 2).mean(axis=1), rtol=1e-6)
    # a manifest written before these fields existed still validates, with the old meaning
    assert (
        ScoreSpec.model_validate({"metric": "mse", "reduction": "mean", "topk": None, "scale": None}) == spec
    )


@pytest.mark.parametrize(("shape", "pool"), [((8, 8, 1), 3), ((28, 28, 1), 5), ((5, 7, 3), 3)])
def test_pool_and_relative_match_a_reference(shape: tuple[int, int, int], pool: int) -> None:
    d = int(np.prod(shape))
    X, X_hat = rng.random((6, d)).astype(np.float32), rng.random((6, d)).astype(np.float32)
    spec = ScoreSpec(pool=pool, image_shape=list(shape), relative=True)
    err = (X - X_hat).reshape(6, *shape).astype(np.float64)
    pooled = uniform_filter(err, size=(1, pool, pool, 1), mode="constant").reshape(6, -1)
    expected = (pooled**2).mean(axis=1) / (X.astype(np.float64).var(axis=1) + RELATIVE_EPS)
    np.testing.assert_allclose(row_scores(X, X_hat, spec), expected, rtol=1e-5)


def test_relative_score_ignores_a_brightness_offset_and_contrast() -> None:
    X, X_hat = rng.random((4, 64)).astype(np.float32), rng.random((4, 64)).astype(np.float32)
    spec = ScoreSpec(pool=3, image_shape=[8, 8, 1], relative=True)
    base = row_scores(X, X_hat, spec)
    np.testing.assert_allclose(row_scores(X + 0.5, X_hat + 0.5, spec), base, rtol=1e-4)
    np.testing.assert_allclose(row_scores(3 * X, 3 * X_hat, spec), base, rtol=1e-4)


def test_pool_needs_an_odd_window_and_an_image_shape() -> None:
    with pytest.raises(ValidationError, match="odd"):
        ScoreSpec(pool=2, image_shape=[8, 8, 1])
    with pytest.raises(ValidationError, match="image_shape"):
        ScoreSpec(pool=3)


def test_pca_onnx_and_joblib_serve_the_pooled_relative_score(tmp_path: Path) -> None:
    argv = ["fit", "--model", "pca", "--dataset", "digits", "--classes", "2", "--name", "r", "--n-components"]
    argv += ["6", "--score-pool", "3", "--score-relative", "--models-dir", str(tmp_path)]
    assert main(argv) == 0  # export verification compares both runtimes with row_scores
    folder = tmp_path / "r" / "1"
    m = Manifest.read(folder)
    assert m.score.pool == 3 and m.score.image_shape == [8, 8, 1] and m.score.relative
    from sklearn.datasets import load_digits

    X = (load_digits().images[:50] / 16.0).astype(np.float32)
    onnx_scores = RUNTIMES["onnx"].load(m, folder).reconstruct(X).scores
    joblib_scores = RUNTIMES["joblib"].load(m, folder).reconstruct(X).scores
    np.testing.assert_allclose(onnx_scores, joblib_scores, rtol=1e-4)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--score-pool", "2"], "odd window"),
        (["--dataset", "breast-cancer", "--score-pool", "3"], "needs image rows"),
    ],
)
def test_bad_score_flags(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = fit_argv("pca", "digits", "b", tmp_path, *extra)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "b").exists()
