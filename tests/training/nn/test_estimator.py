"""The estimator contract of training.base, the default networks, and MNIST-sized conv rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import OnnxRuntime
from latentserve_core.runtime.base import row_scores
from training.api import fit
from training.base import NotFittedError
from training.config import Default
from training.data import Splits, load_dataset
from training.export import TrainingRun, export
from training.nn.config import NetConfig, TrainConfig
from training.nn.estimator import AutoencoderEstimator
from training.nn.export import picture_writer, write_onnx
from training.nn.fit import DEFAULT_NETWORKS
from training.nn.onnx_io import ATOL, RTOL

QUICK = TrainConfig(epochs=2, batch_size=64, quiet=True)


def test_fit_returns_self_and_checks_shapes(digits: Splits) -> None:
    est = AutoencoderEstimator(NetConfig(hidden=(16,), latent_dim=4), QUICK)
    with pytest.raises(NotFittedError):
        est.encode(digits.X_val)
    assert est.fit(digits.X_train, digits.X_val) is est
    assert est.kind == "dense" and est.latent_dim_ == 4 and est.input_shape_ == (8, 8)
    Z = est.encode(digits.X_val)
    assert Z.shape == (len(digits.X_val), 4)
    assert est.decode(Z).shape == digits.X_val.shape
    np.testing.assert_array_equal(est.encode(digits.X_val.reshape(-1, 64)), Z)  # flat rows too
    with pytest.raises(ValueError, match="fitted on"):
        est.encode(np.zeros((2, 7, 7), np.float32))
    scores = est.score_samples(digits.X_val)
    expected = row_scores(digits.X_val, est.reconstruct(digits.X_val), est.score_spec_)
    np.testing.assert_allclose(scores, expected)
    params = est.hyperparameters()  # what the manifest records
    assert params["kind"] == "dense" and params["hidden"] == [16] and params["train_epochs"] == 2


def test_feature_rows_are_standardised_inside_the_model() -> None:
    ds = load_dataset("breast-cancer")
    est = AutoencoderEstimator(NetConfig(hidden=(8,), latent_dim=3, layout="features"), QUICK).fit(ds.X[:400])
    std = ds.X[:400].std(axis=0)
    assert est.standardized_ and est.loss_ == "mse" and est.output_ == "identity"
    assert est.score_spec_.scale is not None
    np.testing.assert_allclose(est.score_spec_.scale, std, rtol=1e-4)
    # raw rows in, raw rows out: reconstructions live on the data's own scale
    X_hat = est.reconstruct(ds.X[400:])
    assert abs(float(X_hat[:, 3].mean()) - float(ds.X[:, 3].mean())) < 0.5 * float(std[3])


@pytest.mark.parametrize("default", DEFAULT_NETWORKS, ids=lambda d: d.name)
def test_default_networks_train_into_an_empty_registry(tmp_path: Path, default: Default) -> None:
    folder = fit(default.config, default.data, name=default.name, models_dir=tmp_path)
    assert folder == tmp_path / default.name / "1"
    manifest = Manifest.read(folder)
    losses = [h.validation_loss for h in manifest.metrics.history]
    assert losses[-1] is not None and losses[0] is not None and losses[-1] < 0.8 * losses[0]


@pytest.mark.mnist
def test_conv_on_mnist_rows_with_the_lecture_layout(mnist_dir: Path, tmp_path: Path) -> None:
    ds = load_dataset("mnist", data_dir=mnist_dir, download=False)
    X, y = ds.X[:900], ds.y
    assert y is not None
    splits = Splits(X[:600], X[600:750], X[750:], y[:600], y[600:750], y[750:900])
    net = NetConfig(kind="conv", latent_dim=16, layout="image")  # default channels 16-32-64
    est = AutoencoderEstimator(net, TrainConfig(epochs=1, quiet=True))
    est.fit(splits.X_train, splits.X_val)
    run = TrainingRun(dataset=ds, splits=splits, seed=0, history=est.history_)
    folder = export(
        est,
        run,
        tmp_path,
        "mnist-conv",
        [write_onnx, picture_writer(run)],
        primary_format="onnx",
        rtol=RTOL,
        atol=ATOL,
    )
    manifest = Manifest.read(folder)
    assert manifest.input.shape == [28, 28]
    rec = OnnxRuntime.load(manifest, folder).reconstruct(splits.X_cal[:5])
    assert rec.X_hat.shape == (5, 28, 28)


def test_params_clone_and_score_settings_follow_sklearn(digits: Splits) -> None:
    """The network's score settings are an __init__ argument like its net and train configs:
    stored as given, checked by fit; clone rebuilds an unfitted twin that fits to the same model."""
    from sklearn.base import clone
    from sklearn.utils.estimator_checks import check_get_params_invariance, check_set_params

    from training.config import ScoreConfig
    from training.errors import UsageError

    net, score = NetConfig(hidden=(8,), latent_dim=3), ScoreConfig(reduction="topk", topk=5)
    est = AutoencoderEstimator(net, QUICK, score)
    assert est.get_params() == {"net": net, "train": QUICK, "score": score}
    assert est.get_params()["net"] is net and est.kind == "dense"
    check_get_params_invariance("AutoencoderEstimator", est)
    check_set_params("AutoencoderEstimator", est)
    est.fit(digits.X_train[:300])
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "score_spec_")
    twin.fit(digits.X_train[:300])
    assert twin.score_spec_ == est.score_spec_ and est.score_spec_.topk == 5
    np.testing.assert_allclose(twin.score_samples(digits.X_val), est.score_samples(digits.X_val))
    bad = clone(est).set_params(score=ScoreConfig(pool=4))  # stored as given, refused by fit
    with pytest.raises(UsageError, match="--score-pool must be an odd"):
        bad.fit(digits.X_train[:300])
    with pytest.raises(ValueError, match="invalid parameter 'kind'"):
        est.set_params(kind="conv")
