"""The network scorer computes `row_scores` for pooled and relative specs too, and the ONNX parity
checks allow 1e-4 plus float32-scale slack (1e-6 of the largest reference value), no more."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import RUNTIMES
from latentserve_core.runtime.base import row_scores
from training.cli import main
from training.config import ScoreConfig
from training.data import Splits
from training.errors import ExportError
from training.nn import export as nn_export
from training.nn.config import NetConfig, TrainConfig
from training.nn.estimator import AutoencoderEstimator
from training.nn.onnx_io import ATOL, RTOL, check_close, parity_bound

TINY = ["--epochs", "2", "--batch-size", "64", "--hidden", "16", "--quiet"]
SCORES = {
    "pool": ["--score-pool", "3"],
    "relative": ["--score-relative"],
    "both": ["--score-pool", "3", "--score-relative"],
}


# ---- the parity bound ----------------------------------------------------------------------------
def test_parity_bound_is_absolute_plus_float32_slack() -> None:
    assert parity_bound(np.zeros(3)) == ATOL
    assert parity_bound(np.array([-50.0, 20.0])) == pytest.approx(ATOL + RTOL * 50.0)


def test_large_codes_pass_with_a_difference_just_above_the_absolute_limit() -> None:
    # the MNIST class-8 conv encoder: codes of magnitude ~40 differed by 1.07e-4
    reference = np.linspace(-40.0, 40.0, 32, dtype=np.float32).reshape(4, 8)
    got = reference.astype(np.float64) + 1.07e-4
    assert check_close("encoder.onnx", got, reference) == pytest.approx(1.07e-4, rel=1e-3)
    # the same difference on small values is a real mismatch, and the bound is named
    small = reference / 100.0
    with pytest.raises(ExportError, match=r"encoder\.onnx differs .* by 0\.000107 \(allowed 0\.0001"):
        check_close("encoder.onnx", small.astype(np.float64) + 1.07e-4, small)
    # and a large difference stays a failure however large the values
    with pytest.raises(ExportError, match="nothing was published"):
        check_close("encoder.onnx", got + 1e-3, reference)
    with pytest.raises(ExportError):
        check_close("scorer.onnx", np.full(3, np.nan), np.ones(3))


def test_a_wrong_scorer_graph_fails_the_export(
    registry: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = nn_export._Scorer.forward

    def off_by_a_little(self: nn_export._Scorer, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        X_hat, scores = real(self, X)
        return X_hat, scores * 1.01 + 1e-3

    monkeypatch.setattr(nn_export._Scorer, "forward", off_by_a_little)
    argv = ["fit", "--models-dir", str(registry), "--model", "dense", "--dataset", "digits", "--name", "w"]
    assert main([*argv, "--latent-dim", "8", *TINY]) == 2
    err = capsys.readouterr().err
    assert "scorer.onnx (scores, random inputs) differs from the PyTorch model" in err and "allowed" in err
    assert not (registry / "w").exists()


# ---- pooled and relative scores --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("score", sorted(SCORES))
def test_network_scorer_serves_row_scores(registry: Path, digits: Splits, kind: str, score: str) -> None:
    extra = ["--channels", "4,8"] if kind == "conv" else []
    argv = ["fit", "--models-dir", str(registry), "--model", kind, "--dataset", "digits", "--name", "s"]
    assert main([*argv, "--latent-dim", "8", *TINY, *extra, *SCORES[score]]) == 0
    folder = registry / "s" / "1"
    manifest = Manifest.read(folder)
    spec = manifest.score
    assert (spec.pool == 3) == (score != "relative") and spec.relative == (score != "pool")
    assert spec.image_shape == ([8, 8, 1] if spec.pool else None)
    runtime = RUNTIMES["onnx"].load(manifest, folder)
    X = np.concatenate([digits.X_cal[:40], np.random.default_rng(0).random((8, 8, 8), np.float32)])
    rec = runtime.reconstruct(X)
    np.testing.assert_allclose(rec.scores, row_scores(X, rec.X_hat, spec), rtol=1e-5, atol=0.0)
    # the scorer graph and encode -> decode -> row_scores agree too
    X_hat = runtime.decode(runtime.encode(X))
    np.testing.assert_allclose(rec.scores, row_scores(X, X_hat, spec), rtol=1e-4)


def test_in_memory_scores_follow_pool_and_relative(digits: Splits) -> None:
    net = NetConfig(kind="conv", channels=(4,), latent_dim=6)
    train, score = TrainConfig(epochs=1, batch_size=64, quiet=True), ScoreConfig(pool=5, relative=True)
    est = AutoencoderEstimator(net, train, score).fit(digits.X_train)
    spec = est.score_spec_
    assert spec.pool == 5 and spec.image_shape == [8, 8, 1] and spec.relative
    X = digits.X_val[:20]
    np.testing.assert_allclose(est.score_samples(X), row_scores(X, est.reconstruct(X), spec), rtol=1e-6)
    _, scores = nn_export._Scorer(est.net_, spec)(torch.from_numpy(X))
    np.testing.assert_allclose(scores.detach().numpy(), est.score_samples(X), rtol=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "digits", "--score-pool", "4"], "odd window"),
        (["--dataset", "breast-cancer", "--score-pool", "3"], "needs image rows"),
    ],
)
def test_bad_pool_flags_fail_before_training(
    registry: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = ["fit", "--models-dir", str(registry), "--model", "dense", "--name", "bad", *TINY, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (registry / "bad").exists()
