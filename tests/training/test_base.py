"""The estimator contract of training.base on the PCA family: score settings are __init__
arguments (stored as given, checked by fit), and get_params / set_params / clone follow
scikit-learn's rules, so a clone fitted on the same rows scores them as the original does."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_get_params_invariance, check_set_params

from training.base import ReconstructionEstimator
from training.config import ScoreConfig
from training.errors import UsageError
from training.pca import PCA, IncrementalPCA, KernelPCA, PCAFamily, SklearnPCA


def spectral_gap_data(n: int, seed: int = 0) -> np.ndarray:
    """Rows (n, 6): three strong directions over small noise, features of different scales."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((3, 6))
    rows = rng.standard_normal((n, 3)) @ basis + 0.1 * rng.standard_normal((n, 6))
    return (rows * np.logspace(0, 2, 6) + 5.0).astype(np.float32)


NEIGHBORS = ScoreConfig(neighbors=3, reference_rows=200, balance=True, reduction="topk", topk=4)


def _estimators() -> list[PCAFamily]:
    return [
        PCA(3, standardize=True, device="cpu"),
        SklearnPCA(3, standardize=True),
        IncrementalPCA(3, standardize=True, batch_size=300),
        KernelPCA(3, standardize=True, max_rows=400),
    ]


def _ids() -> list[str]:
    return [type(est).__name__ for est in _estimators()]


@pytest.mark.parametrize("est", _estimators(), ids=_ids())
def test_params_are_the_init_arguments_stored_as_given(est: PCAFamily) -> None:
    names = [n for n in inspect.signature(type(est).__init__).parameters if n != "self"]
    params = est.get_params()
    assert list(params) == names
    assert {"score", "layout", "seed"} <= set(params)
    assert est.get_params(deep=False) == params
    score = ScoreConfig(reduction="no-such-reduction")  # stored as given: refused by fit, not __init__
    assert est.set_params(score=score, layout="image") is est
    assert est.score is score and est.get_params()["layout"] == "image"
    with pytest.raises(UsageError, match="--score-reduction"):
        est.fit(spectral_gap_data(300))
    assert not hasattr(est, "score_spec_")
    with pytest.raises(ValueError, match="invalid parameter 'scores'"):
        est.set_params(scores=score)


@pytest.mark.parametrize("est", _estimators(), ids=_ids())
def test_sklearn_checks_of_get_and_set_params(est: PCAFamily) -> None:
    check_get_params_invariance(type(est).__name__, est)
    check_set_params(type(est).__name__, est)


@pytest.mark.parametrize("est", _estimators(), ids=_ids())
def test_a_fitted_clone_scores_as_the_original(est: PCAFamily) -> None:
    """clone keeps every argument, the score settings included, and no fitted state; fit builds
    the score spec and the neighbors reference from them."""
    X, X_val = spectral_gap_data(700), spectral_gap_data(150, seed=1)
    est.set_params(score=NEIGHBORS, seed=3).fit(X, X_val)
    twin = clone(est)
    assert type(twin) is type(est) and twin is not est
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "score_spec_") and not hasattr(twin, "reference_codes_")
    twin.fit(X, X_val)
    spec = twin.score_spec_
    assert spec == est.score_spec_
    assert spec.reduction == "topk" and spec.topk == 4 and spec.scale is not None
    assert spec.neighbors is not None and spec.neighbors.k == 3 and spec.neighbors.reference_rows == 200
    assert spec.neighbors.weight is not None and spec.neighbors.weight > 0
    np.testing.assert_array_equal(twin.reference_codes_, est.reference_codes_)
    np.testing.assert_array_equal(twin.score_samples(X_val), est.score_samples(X_val))
    # another seed picks other reference rows
    other = clone(est).set_params(seed=4).fit(X, X_val)
    assert not np.array_equal(other.reference_codes_, est.reference_codes_)


@pytest.mark.parametrize("est", _estimators(), ids=_ids())
def test_score_settings_are_checked_before_the_fit(est: PCAFamily) -> None:
    X = spectral_gap_data(300)
    cases = {
        "--score-neighbors must be in \\[1, 300\\]": ScoreConfig(neighbors=301),
        "--score-reference-rows must be in": ScoreConfig(neighbors=2, reference_rows=0),
        "--score-balance weighs the neighbors term: give": ScoreConfig(balance=True),
        "validation rows: give fit\\(X, X_val\\)": ScoreConfig(neighbors=2, balance=True),
        "--score-pool needs image rows": ScoreConfig(pool=3),
    }
    for message, score in cases.items():
        with pytest.raises(UsageError, match=message):
            clone(est).set_params(score=score).fit(X)


def test_the_manifest_records_the_same_hyperparameters() -> None:
    """The score settings are recorded in the manifest's score section, not among the
    hyper-parameters, which keep the names they had before the estimators took them."""
    pca = PCA(0.9, device="cpu", score=NEIGHBORS, seed=5)
    assert set(pca.hyperparameters()) == {
        "n_components",
        "min_components",
        "standardize",
        "scale_floor",
        "device",
    }
    sk = SklearnPCA(4, score=NEIGHBORS, seed=5)
    assert sk.hyperparameters() == {
        "n_components": 4,
        "solver": "full",
        "standardize": False,
        "scale_floor": 0.0,
        "seed": 5,
    }
    ipca = IncrementalPCA(4, score=NEIGHBORS)
    assert "seed" not in ipca.hyperparameters() and "score" not in ipca.hyperparameters()
    kpca = KernelPCA(4, score=NEIGHBORS)
    assert set(kpca.hyperparameters()) == {
        "n_components",
        "kernel",
        "gamma",
        "alpha",
        "standardize",
        "max_rows",
        "seed",
    }


def test_every_pca_kind_is_a_pca_family_estimator() -> None:
    for est in _estimators():
        assert isinstance(est, ReconstructionEstimator) and isinstance(est, PCAFamily)
