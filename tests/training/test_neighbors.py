"""The neighbors score (reconstruction error + the code's distance to its nearest training codes):
its specification, parity of every implementation, its manifest, its calibration, its budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import latentserve_core.runtime.base as runtime_base
from latentserve_core.manifest import Manifest, NeighborsSpec
from latentserve_core.runtime import JoblibRuntime, OnnxRuntime
from latentserve_core.runtime.base import neighbor_distances, row_scores
from service.errors import IntegrityError
from training.cli import main
from training.config import ScoreConfig
from training.data import Dataset, split
from training.export import TrainingRun, export_pca_family
from training.pca import PCA, IncrementalPCA, SklearnPCA


def _features(n: int, d: int = 6, seed: int = 0) -> np.ndarray:
    """Correlated Gaussian rows with features on very different scales; `seed` draws new rows of
    the same distribution."""
    A = np.random.default_rng(99).standard_normal((d, d))
    rows = np.random.default_rng(seed).standard_normal((n, d))
    return (rows @ A * np.logspace(0, 3, d) + 50.0).astype(np.float32)


def _run(X: np.ndarray) -> TrainingRun:
    ds = Dataset(name="synthetic", X=X, y=None, layout="features")
    return TrainingRun(dataset=ds, splits=split(X, None, seed=0), seed=0)


def _published(tmp_path: Path, rows: int, k: int, max_rows: int) -> tuple[Path, Manifest]:
    """A standardised PCA (99% of the variance) with a k-nearest-codes score, published."""
    run = _run(_features(rows))
    score = ScoreConfig(neighbors=k, reference_rows=max_rows)
    est = PCA(0.99, standardize=True, device="cpu", score=score).fit(run.splits.X_train)
    folder = export_pca_family(est, run, tmp_path, "nb")
    return folder, Manifest.read(folder)


def _brute_force(Z: np.ndarray, R: np.ndarray, k: int) -> np.ndarray:
    """The definition, in float64: mean of the k smallest squared distances."""
    d = ((Z[:, None, :].astype(np.float64) - R[None, :, :].astype(np.float64)) ** 2).sum(axis=2)
    return np.sort(d, axis=1)[:, :k].mean(axis=1)


@pytest.mark.parametrize("k", [1, 3, 40])
def test_neighbor_distances_follow_the_definition(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((70, 4)).astype(np.float32)
    R = rng.standard_normal((40, 4)).astype(np.float32)
    expected = _brute_force(Z, R, k)
    np.testing.assert_allclose(neighbor_distances(Z, R, k), expected, rtol=1e-5, atol=1e-5)
    # cut into blocks of 3 rows: the same answer
    monkeypatch.setattr(runtime_base, "DISTANCE_BLOCK_BYTES", 3 * 4 * len(R))
    np.testing.assert_allclose(neighbor_distances(Z, R, k), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "est",
    [
        PCA(0.99, standardize=True, device="cpu"),
        SklearnPCA(4, standardize=True),
        IncrementalPCA(4, standardize=True),
    ],
)
def test_every_implementation_agrees(tmp_path: Path, est: PCA) -> None:
    """numpy (row_scores), the ONNX scorer and the joblib runtime give the same score, and it is
    the residual plus the code's mean squared distance to its k nearest reference codes, / d."""
    X = _features(1500)
    run = _run(X)
    est.set_params(score=ScoreConfig(neighbors=5, reference_rows=300), seed=0).fit(run.splits.X_train)
    folder = export_pca_family(est, run, tmp_path, "nb")
    manifest = Manifest.read(folder)
    assert manifest.score.neighbors == NeighborsSpec(k=5, reference_rows=300, file="neighbors.npy")
    assert {f.role for f in manifest.files} >= {"encoder", "decoder", "scorer", "estimator", "reference"}
    X_val = run.splits.X_val
    Z = est.encode(X_val)
    X_hat = est.reconstruct(X_val)
    plain = manifest.score.model_copy(update={"neighbors": None})
    expected = row_scores(X_val, X_hat, plain) + _brute_force(Z, est.reference_codes_, 5) / X.shape[1]
    np.testing.assert_allclose(est.score_samples(X_val), expected, rtol=1e-4)
    for rt in (OnnxRuntime.load(manifest, folder), JoblibRuntime.load(manifest, folder)):
        np.testing.assert_allclose(rt.compute("scores", X_val)[0], expected, rtol=1e-4)
        np.testing.assert_allclose(rt.reconstruct(X_val).scores, expected, rtol=1e-4)


def test_images_with_pooled_relative_score_agree(tmp_path: Path) -> None:
    """On images the term joins the pooled error before the division by the row's contrast."""
    from training.data import load_dataset

    ds = load_dataset("digits")
    run = TrainingRun(dataset=ds, splits=split(ds.X, ds.y, seed=0), seed=0)
    score = ScoreConfig(pool=3, relative=True, neighbors=5, reference_rows=500)
    est = PCA(16, device="cpu", score=score, layout="image").fit(run.splits.X_train)
    folder = export_pca_family(est, run, tmp_path, "img")
    manifest = Manifest.read(folder)
    X = run.splits.X_val
    Z, X_hat = est.encode(X), est.reconstruct(X)
    spec = manifest.score
    pooled = row_scores(X, X_hat, spec.model_copy(update={"neighbors": None, "relative": False}))
    flat = X.reshape(len(X), -1)
    contrast = flat.var(axis=1) + 1e-6
    expected = (pooled + _brute_force(Z, est.reference_codes_, 5) / 64) / contrast
    for rt in (OnnxRuntime.load(manifest, folder), JoblibRuntime.load(manifest, folder)):
        np.testing.assert_allclose(rt.compute("scores", X)[0], expected, rtol=1e-4)


def test_networks_refuse_the_neighbors_term(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", "--model", "dense", "--dataset", "breast-cancer", "--name", "d", "--score-neighbors", "3"]
    assert main([*argv, "--models-dir", str(tmp_path)]) == 2
    assert "--model dense keeps no reference codes" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_reference_is_a_capped_seeded_subset_of_training_codes() -> None:
    X = _features(900)
    score = ScoreConfig(neighbors=2, reference_rows=100)
    est = PCA(3, standardize=True, device="cpu", score=score, seed=0).fit(X)
    R = est.reference_codes_
    assert R.shape == (100, 3) and R.dtype == np.float32
    codes = est.encode(X)
    # every reference code is the code of one training row
    assert np.abs(codes[None, :, :] - R[:, None, :]).max(axis=2).min(axis=1).max() < 1e-5
    again = PCA(3, standardize=True, device="cpu", score=score, seed=0).fit(X)
    np.testing.assert_array_equal(again.reference_codes_, R)
    with pytest.raises(ValueError, match="reference-rows"):
        PCA(3, score=ScoreConfig(neighbors=2, reference_rows=10**6)).fit(X)
    with pytest.raises(ValueError, match="score-neighbors"):
        PCA(3, score=ScoreConfig(neighbors=6, reference_rows=100)).fit(X[:5])


def test_manifest_round_trips_and_requires_its_reference_file(tmp_path: Path) -> None:
    _, manifest = _published(tmp_path, 600, 3, 50)
    assert Manifest.model_validate_json(manifest.to_json()) == manifest
    data = manifest.model_dump(mode="json")
    data["files"] = [f for f in data["files"] if f["role"] != "reference"]
    with pytest.raises(ValidationError, match="not listed in files with role reference"):
        Manifest.model_validate(data)
    with pytest.raises(ValidationError, match="exceeds reference_rows"):
        NeighborsSpec(k=51, reference_rows=50, file="neighbors.npy")


def test_a_changed_reference_file_is_refused(tmp_path: Path) -> None:
    folder, manifest = _published(tmp_path, 600, 3, 50)
    R = np.load(folder / "neighbors.npy")
    np.save(folder / "neighbors.npy", R + 1.0)
    with pytest.raises(IntegrityError, match=r"neighbors\.npy"):
        OnnxRuntime.load(manifest, folder)


def test_calibrated_threshold_flags_about_one_percent_of_new_normal_rows(tmp_path: Path) -> None:
    """The reference codes come from training rows only, so calibration rows are scored like
    unseen rows: on fresh rows of the same distribution about 1 - quantile are flagged."""
    folder, manifest = _published(tmp_path, 20000, 5, 4096)
    rt = OnnxRuntime.load(manifest, folder)
    fresh = _features(8000, seed=123)
    scores = rt.compute("scores", rt.check_inputs(fresh))[0]
    fpr = float(np.mean(scores > manifest.threshold.value))
    # 3,000 calibration rows: the 0.99 quantile's false-positive rate has a standard error of ~0.2%
    assert 0.004 <= fpr <= 0.02, fpr


def test_near_zero_scores_export(tmp_path: Path) -> None:
    """3 features whose PCA residuals are tiny: the score parity bound has an absolute part that
    follows the inputs' size, so float32 rounding on scores near 0 does not fail the export."""
    rng = np.random.default_rng(0)
    t = rng.standard_normal((3000, 1))
    X = np.hstack([t, 2 * t, -t]) + 1e-7 * rng.standard_normal((3000, 3))
    run = _run(X.astype(np.float32))
    est = PCA(1, standardize=True, device="cpu").fit(run.splits.X_train)
    assert float(est.score_samples(run.splits.X_val).max()) < 1e-6  # the scores are near zero
    folder = export_pca_family(est, run, tmp_path, "tiny")
    assert Manifest.read(folder).formats == ["onnx", "joblib"]


def test_cli_tabular_preset_publishes_a_neighbors_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    X = _features(800)
    data = tmp_path / "rows.npy"
    np.save(data, X)
    argv = [
        "fit",
        "--preset",
        "tabular",
        "--dataset",
        str(data),
        "--name",
        "t",
        "--models-dir",
        str(tmp_path / "m"),
    ]
    assert main(argv) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = Manifest.read(folder)
    assert manifest.score.neighbors is not None and manifest.score.neighbors.k == 5
    assert manifest.score.scale is not None  # feature data is standardised
    assert main([*argv, "--score-neighbors", "-1"]) == 2
    assert "--score-neighbors must be >= 0 (0: off)" in capsys.readouterr().err
    assert main([*argv, "--score-neighbors", "0"]) == 0  # an explicit 0 turns the preset's term off
    plain = Manifest.read(Path(capsys.readouterr().out.strip().splitlines()[-1]))
    assert plain.score.neighbors is None and plain.version == 2
    assert main([*argv, "--score-reference-rows", "99999"]) == 2
    assert "--score-reference-rows must be in [1, 16384]" in capsys.readouterr().err
