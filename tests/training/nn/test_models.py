"""The networks: shapes for every architecture and input layout, the linear AE's PCA subspace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.nn.config import NetConfig, TrainConfig
from training.nn.estimator import AutoencoderEstimator
from training.nn.models import ConvAE, DenseAE, LinearAE, build_network
from training.pca import PCA

from .conftest import spectral_gap_data

SHAPES = [(8, 8), (28, 28), (7, 5, 3), (12, 4), (20,)]


CASES = [
    (kind, shape)
    for kind in ("dense", "linear", "conv", "lstm", "vae")
    for shape in SHAPES
    if not (kind == "conv" and len(shape) < 2)  # conv refuses feature rows (test_export)
]


@pytest.mark.parametrize(("kind", "shape"), CASES)
def test_every_architecture_maps_rows_to_codes_and_back(kind: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    net = build_network(
        NetConfig(kind=kind, hidden=(8,), channels=(4, 8, 16), latent_dim=3),
        shape,
        torch.zeros(shape),
        torch.ones(shape),
        sigmoid=kind != "linear",
    )
    X = torch.rand(5, *shape)
    with torch.no_grad():
        Z = net.encode(X)
        X_hat = net.decode(Z)
    assert Z.shape == (5, 3)
    assert X_hat.shape == X.shape
    with torch.no_grad():
        assert torch.equal(net.encode(X.reshape(5, -1)), Z)  # flat rows are accepted too
    if kind != "linear":
        assert float(X_hat.min()) >= 0.0 and float(X_hat.max()) <= 1.0  # sigmoid output


def test_conv_depth_adapts_to_the_image_size() -> None:
    def pools(shape: tuple[int, ...]) -> int:
        zeros, ones = torch.zeros(shape), torch.ones(shape)
        net = build_network(NetConfig(kind="conv", latent_dim=4), shape, zeros, ones, True)
        assert isinstance(net, ConvAE)
        return sum(isinstance(m, torch.nn.MaxPool2d) for m in net.down)

    assert pools((28, 28)) == 3  # the lecture's 16-32-64 layout: 28 -> 14 -> 7 -> 4
    assert pools((8, 8)) == 2  # digits: 8 -> 4 -> 2
    assert pools((3, 3)) == 0


def test_standardisation_is_folded_into_the_module() -> None:
    center, scale = torch.tensor([10.0, -3.0, 0.5]), torch.tensor([2.0, 0.1, 4.0])
    net = build_network(NetConfig(kind="dense", hidden=(4,), latent_dim=2), (3,), center, scale, False)
    assert isinstance(net, DenseAE)
    last = net.decoder[-1]
    assert isinstance(last, torch.nn.Linear)
    X = center + scale * torch.randn(6, 3)
    assert torch.allclose(net.normalise(X), (X - center) / scale)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    # a zero output in normalised units is the training mean in raw units
    with torch.no_grad():
        assert torch.allclose(net.decode(torch.randn(6, 2)), center.expand(6, 3))


def test_linear_autoencoder_spans_the_pca_subspace() -> None:
    X = spectral_gap_data()
    cfg = NetConfig(kind="linear", latent_dim=3, layout="features")  # standardised, like the PCA
    est = AutoencoderEstimator(cfg, TrainConfig(epochs=40, batch_size=64, lr=3e-3, patience=40, quiet=True))
    est.fit(X[:1200], X[1200:])
    assert est.standardized_
    # (d, k): the decoder's columns, in the standardised units both models work in
    assert isinstance(est.net_, LinearAE)
    W = est.net_.decoder.weight.detach().numpy().astype(np.float64)
    Q_ae, _ = np.linalg.qr(W)
    pca = PCA(3, standardize=True).fit(X[:1200])
    cosines = np.linalg.svd(Q_ae.T @ pca.components_.T, compute_uv=False)
    assert cosines.min() > 0.99, cosines  # cos of the largest principal angle


def test_vae_samples_have_the_row_shape(digits) -> None:  # type: ignore[no-untyped-def]
    est = AutoencoderEstimator(
        NetConfig(kind="vae", hidden=(32,), latent_dim=4), TrainConfig(epochs=2, quiet=True)
    )
    est.fit(digits.X_train[:300], digits.X_val[:60])
    samples = est.sample(7, seed=1)
    assert samples.shape == (7, 8, 8)
    assert np.isfinite(samples).all() and samples.min() >= 0.0 and samples.max() <= 1.0
    assert not np.allclose(samples[0], samples[1])  # different draws decode differently
