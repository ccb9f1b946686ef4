"""Our PCA against the theorem and against scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA as SkPCA

from training.api import fit
from training.config import PCAConfig
from training.data import gaussian_2d, load_dataset
from training.errors import UsageError
from training.pca import PCA, IncrementalPCA, KernelPCA, SklearnPCA, resolve_n_components


def _compare_with_sklearn(X: np.ndarray, k: int) -> None:
    ours = PCA(k, device="cpu").fit(X)
    ref = SkPCA(n_components=X.reshape(len(X), -1).shape[1], svd_solver="full").fit(X.reshape(len(X), -1))
    # same explained-variance ratios, all of them
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, atol=1e-6)
    # same components up to sign where the eigenvalue is well separated from its neighbours
    ev = ref.explained_variance_
    for i in range(k):
        gap = min(abs(ev[i] - ev[j]) for j in (i - 1, i + 1) if 0 <= j < len(ev)) / ev[i]
        if gap < 0.05:
            continue
        cos = abs(float(ours.components_[i] @ ref.components_[i]))
        assert cos > 0.999, f"component {i}: |cos| = {cos}"


def test_pca_matches_sklearn_on_digits() -> None:
    _compare_with_sklearn(load_dataset("digits").X, k=20)


@pytest.mark.mnist
def test_pca_matches_sklearn_on_mnist(mnist_dir: Path) -> None:
    X = load_dataset("mnist", data_dir=mnist_dir).X[:10000]
    _compare_with_sklearn(X, k=30)


def test_explained_variance_ratios_sum_to_one_and_decrease() -> None:
    ours = PCA(5, device="cpu").fit(load_dataset("digits").X)
    assert ours.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.diff(ours.explained_variance_) <= 1e-12)
    # the eigenvalues are the variances of the data along the components
    Z = ours.encode(load_dataset("digits").X)
    np.testing.assert_allclose(Z.var(axis=0, ddof=1), ours.explained_variance_[:5], rtol=1e-4)


def test_lecture_gaussian_example() -> None:
    X = gaussian_2d(n=10_000, seed=0)
    mu, sigma = np.array([-1.0, 2.0]), np.array([[4.0, 2.0], [2.0, 2.0]])
    assert np.allclose(X.mean(axis=0), mu, atol=0.06)
    assert np.allclose(np.cov(X.T), sigma, atol=0.15)
    pca = PCA(2, device="cpu").fit(X)
    vals, vecs = np.linalg.eigh(sigma)
    analytic = vecs[:, np.argmax(vals)]
    angle = np.degrees(np.arccos(min(1.0, abs(float(pca.components_[0] @ analytic)))))
    share = pca.explained_variance_ratio_[0]
    print(
        f"first principal direction {pca.components_[0]}, {angle:.3f} deg from analytic; "
        f"variance share {share:.4f} (analytic {vals.max() / vals.sum():.4f})"
    )
    assert angle < 1.0
    assert share == pytest.approx(vals.max() / vals.sum(), abs=0.01)


def test_full_rank_round_trip_returns_the_input() -> None:
    X = load_dataset("breast-cancer").X
    for est in (PCA(30, standardize=True, device="cpu"), SklearnPCA(30, standardize=True)):
        est.fit(X)
        np.testing.assert_allclose(est.reconstruct(X), X, rtol=1e-4, atol=1e-2 * float(np.abs(X).mean()))
        assert est.score_samples(X).max() < 1e-8


def test_fraction_keeps_fewest_components_reaching_the_share() -> None:
    ratios = np.array([0.5, 0.3, 0.15, 0.05])
    assert resolve_n_components(0.8, ratios) == 2
    assert resolve_n_components(0.81, ratios) == 3
    assert resolve_n_components(2, ratios) == 2
    est = PCA(0.9, device="cpu").fit(load_dataset("digits").X)
    total = est.explained_variance_ratio_
    assert total[: est.latent_dim_].sum() >= 0.9 > total[: est.latent_dim_ - 1].sum()
    with pytest.raises(ValueError, match="between 1 and 64"):
        PCA(65, device="cpu").fit(load_dataset("digits").X)


def test_sklearn_variants_span_the_same_subspace_as_ours() -> None:
    X = load_dataset("digits").X
    ours = PCA(8, device="cpu").fit(X).components_
    for est in (SklearnPCA(8), SklearnPCA(8, solver="randomized"), IncrementalPCA(8, batch_size=300)):
        W = est.fit(X).components_
        cosines = np.linalg.svd(ours @ W.T, compute_uv=False)
        assert cosines.min() > 0.99, (type(est).__name__, cosines)


def test_incremental_pca_streams_a_memory_mapped_file(tmp_path: Path) -> None:
    X = load_dataset("digits").X.reshape(-1, 64)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    est = IncrementalPCA(10, batch_size=200).fit(mm)
    ref = SklearnPCA(10).fit(X)
    assert np.linalg.svd(est.components_ @ ref.components_.T, compute_uv=False).min() > 0.99


def test_kernel_pca_decodes_better_than_the_mean() -> None:
    ds = load_dataset("digits")
    X_train, X_test = ds.X[:1200], ds.X[1200:]
    est = KernelPCA(16, seed=0).fit(X_train)
    err = est.score_samples(X_test).mean()
    baseline = np.square(X_test - X_train.mean(axis=0)).mean()
    assert err < 0.5 * baseline
    assert est.decode(est.encode(X_test[:3])).shape == (3, 8, 8)


def test_post_fit_methods_check_fit_and_width() -> None:
    est = PCA(4, device="cpu")
    with pytest.raises(RuntimeError, match="not fitted"):
        est.encode(np.zeros((2, 64), np.float32))
    est.fit(load_dataset("digits").X)
    with pytest.raises(ValueError, match=r"fitted on \[8, 8\]"):
        est.encode(np.zeros((2, 10), np.float32))
    with pytest.raises(ValueError, match=r"codes must have shape \(n, 4\)"):
        est.decode(np.zeros((2, 3), np.float32))


def test_incremental_pca_uses_every_row_and_handles_fewer_rows_than_features() -> None:
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((50, 100)).astype(np.float32)
    est = IncrementalPCA(0.9, batch_size=16).fit(wide)  # every chunk shorter than the feature count
    assert est.explained_variance_ratio_[: est.latent_dim_].sum() >= 0.9
    # 1037 rows in chunks of 100: the 37-row tail joins the last chunk instead of being dropped
    X = rng.standard_normal((1037, 20)).astype(np.float32)
    X[-37:] += 50.0  # the tail alone moves the mean; skipping it would show
    est = IncrementalPCA(5, batch_size=100).fit(X)
    np.testing.assert_allclose(est.mean_std_, X.mean(axis=0, dtype=np.float64), atol=1e-4)
    ref = SklearnPCA(5).fit(X)  # the tail's offset is the one dominant direction
    assert abs(float(est.components_[0] @ ref.components_[0])) > 0.999
    with pytest.raises(ValueError, match="needs at least that many rows"):
        IncrementalPCA(60).fit(wide)


def test_min_components_floors_a_variance_share_only() -> None:
    ratios = np.array([0.7, 0.2, 0.05, 0.05])
    assert resolve_n_components(0.6, ratios) == 1
    assert resolve_n_components(0.6, ratios, 3) == 3
    assert resolve_n_components(0.95, ratios, 2) == 3  # the share already needs more
    assert resolve_n_components(0.6, ratios, 9) == 4  # never more than there are
    assert resolve_n_components(2, ratios, 3) == 2  # an integer k is kept as given
    X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32) * np.arange(1, 7) ** 2
    assert PCA(0.5, min_components=4, device="cpu").fit(X).latent_dim_ == 4
    assert IncrementalPCA(0.5, min_components=4, batch_size=50).fit(X).latent_dim_ == 4
    assert PCA(0.5, device="cpu").fit(X).latent_dim_ < 4


def test_min_components_is_refused_where_it_does_not_apply(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--min-components applies to --model pca and incremental-pca"):
        fit("sklearn-pca", "digits", name="s", models_dir=tmp_path, pca=PCAConfig(0.6, min_components=4))
    with pytest.raises(UsageError, match="--min-components must be >= 1, got 0"):
        fit("pca", "digits", name="s", models_dir=tmp_path, pca=PCAConfig(0.6, min_components=0))


def test_wide_data_is_fitted_from_the_rows_gram_matrix_and_equals_the_covariance_path() -> None:
    """Break 13: 20 rows x 100,000 columns tried to allocate a 74.5 GiB covariance; with more
    columns than rows the eigenpairs come from the n x n Gram matrix, the same maths."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 40)).astype(np.float32)
    wide = PCA(n_components=5, device="cpu").fit(X)
    Xs = X.astype(np.float64) - X.mean(axis=0)
    cov_vals, cov_vecs = np.linalg.eigh(Xs.T @ Xs / (len(Xs) - 1))
    top = cov_vecs[:, np.argsort(cov_vals)[::-1][:5]].T
    np.testing.assert_allclose(np.abs(wide.components_ @ top.T), np.eye(5), atol=1e-6)
    np.testing.assert_allclose(wide.explained_variance_[:5], np.sort(cov_vals)[::-1][:5], rtol=1e-6)
    big = rng.normal(size=(20, 100_000)).astype(np.float32)
    model = PCA(n_components=19, device="cpu").fit(big)  # full rank: 19 directions of 20 centred rows
    assert model.components_.shape[1] == 100_000
    np.testing.assert_allclose(model.reconstruct(big), big, atol=1e-3)
