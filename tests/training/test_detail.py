"""The detail term (docs/score.md, step 6): its directions, its weights, parity of the published
runtimes with the trained model, its manifest and its files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import JoblibRuntime, OnnxRuntime
from latentserve_core.runtime.base import neighbor_distances, row_scores
from service.errors import IntegrityError
from training.base import DETAIL_QUANTILE
from training.cli import main
from training.config import ScoreConfig
from training.data import Dataset, split
from training.export import TrainingRun, export_pca_family
from training.pca import PCA, IncrementalPCA, PCAFamily, SklearnPCA

SHARE, WEIGHT = 0.9, 0.5


def _features(n: int, d: int = 10, seed: int = 0) -> np.ndarray:
    """Correlated Gaussian rows with features on very different scales."""
    A = np.random.default_rng(99).standard_normal((d, d))
    rows = np.random.default_rng(seed).standard_normal((n, d))
    return (rows @ A * np.logspace(0, 2, d) + 20.0).astype(np.float32)


def _run(X: np.ndarray) -> TrainingRun:
    ds = Dataset(name="synthetic", X=X, y=None, layout="features")
    return TrainingRun(dataset=ds, splits=split(X, None, seed=0), seed=0)


def _score(neighbors: bool) -> ScoreConfig:
    k = 4 if neighbors else 0
    return ScoreConfig(neighbors=k, reference_rows=200, detail=SHARE, detail_weight=WEIGHT)


def _detailed(est: PCAFamily, run: TrainingRun) -> PCAFamily:
    """est (its score settings given in __init__) fitted: the detail term is built in fit, last."""
    return est.fit(run.splits.X_train, run.splits.X_val)


ESTIMATORS: dict[str, Callable[[ScoreConfig], PCAFamily]] = {
    "pca": lambda score: PCA(2, standardize=True, device="cpu", score=score, layout="features"),
    "sklearn-pca": lambda score: SklearnPCA(2, standardize=True, score=score, layout="features"),
    "incremental-pca": lambda score: IncrementalPCA(2, standardize=True, score=score, layout="features"),
}


@pytest.mark.parametrize("neighbors", [False, True], ids=["plain", "neighbors"])
@pytest.mark.parametrize("kind", list(ESTIMATORS))
def test_the_detail_term_is_a_wider_pca_and_every_runtime_serves_it(
    tmp_path: Path, kind: str, neighbors: bool
) -> None:
    """The directions continue the model's own up to SHARE of the variance, so the term's error is
    that of a PCA keeping k + m components; each part is divided by its quantile on the validation
    rows; the ONNX scorer and the joblib runtime serve the trained model's score."""
    X = _features(1500)
    run = _run(X)
    est = _detailed(ESTIMATORS[kind](_score(neighbors)), run)
    spec = est.score_spec_
    assert spec.detail is not None and spec.scale is not None
    k, m = est.latent_dim_, spec.detail.components
    wide = PCA(k + m, standardize=True, device="cpu").fit(run.splits.X_train)
    reached = np.cumsum(wide.explained_variance_ratio_)  # over the whole spectrum
    assert reached[k + m - 1] >= SHARE - 1e-6 and (m == 1 or reached[k + m - 2] < SHARE)
    C = est.detail_.components
    np.testing.assert_allclose(C @ C.T, np.eye(m), atol=1e-5)
    np.testing.assert_allclose(C @ est.components_.T, 0.0, atol=1e-5)

    X_val = run.splits.X_val
    first_spec = spec.model_copy(update={"detail": None})
    wide_spec = first_spec.model_copy(update={"neighbors": None})
    term = row_scores(X_val, wide.reconstruct(X_val), wide_spec).astype(np.float64)
    if neighbors:
        Z = est.encode(X_val)
        err = (X_val - est.reconstruct(X_val)) / np.asarray(spec.scale, dtype=np.float32)
        codes = np.concatenate([Z, err @ C.T], axis=1).astype(np.float32)
        refs = np.concatenate([est.reference_codes_, est.detail_.reference], axis=1)
        term += neighbor_distances(codes, refs, 4) / X.shape[1]
    first = est.__class__.score_samples(_without_detail(est), X_val).astype(np.float64)
    assert spec.detail.primary_weight * np.quantile(first, DETAIL_QUANTILE) == pytest.approx(1.0, rel=1e-3)
    assert spec.detail.weight * np.quantile(term, DETAIL_QUANTILE) == pytest.approx(WEIGHT, rel=1e-3)
    expected = spec.detail.primary_weight * first + spec.detail.weight * term
    np.testing.assert_allclose(est.score_samples(X_val), expected, rtol=1e-3)

    folder = export_pca_family(est, run, tmp_path, "dt")
    manifest = Manifest.read(folder)
    assert manifest.score == spec
    roles = {(f.role, f.path) for f in manifest.files}
    assert ("detail", "detail.npy") in roles
    assert (("reference", "detail-neighbors.npy") in roles) == neighbors
    for rt in (OnnxRuntime.load(manifest, folder), JoblibRuntime.load(manifest, folder)):
        np.testing.assert_allclose(rt.compute("scores", X_val)[0], expected, rtol=1e-3)
        np.testing.assert_allclose(rt.reconstruct(X_val).scores, expected, rtol=1e-3)


def _without_detail(est: PCAFamily) -> PCAFamily:
    """A copy of est scoring steps 1-5 only."""
    import copy

    plain = copy.copy(est)
    plain.score_spec_ = est.score_spec_.model_copy(update={"detail": None})
    return plain


def _published(tmp_path: Path) -> tuple[Path, Manifest]:
    run = _run(_features(600))
    est = _detailed(ESTIMATORS["pca"](_score(True)), run)
    folder = export_pca_family(est, run, tmp_path, "dt")
    return folder, Manifest.read(folder)


def test_manifest_requires_the_detail_files(tmp_path: Path) -> None:
    _, manifest = _published(tmp_path)
    assert Manifest.model_validate_json(manifest.to_json()) == manifest
    data = manifest.model_dump(mode="json")
    for role, path in (("detail", "detail.npy"), ("reference", "detail-neighbors.npy")):
        changed = dict(data, files=[f for f in data["files"] if f["path"] != path])
        with pytest.raises(ValidationError, match=f"'{path}' is not listed in files with role {role}"):
            Manifest.model_validate(changed)
    lone = dict(data, score=dict(data["score"], neighbors=None))
    with pytest.raises(ValidationError, match=r"reference_file is given exactly when score\.neighbors is"):
        Manifest.model_validate(lone)


@pytest.mark.parametrize("file", ["detail.npy", "detail-neighbors.npy"])
def test_a_changed_or_misshapen_detail_file_is_refused(tmp_path: Path, file: str) -> None:
    folder, manifest = _published(tmp_path)
    A = np.load(folder / file)
    np.save(folder / file, A + 1.0)
    with pytest.raises(IntegrityError, match=file.replace(".", r"\.")):
        OnnxRuntime.load(manifest, folder)
    np.save(folder / file, A[:, :-1])
    entries = [
        f.model_copy(update={"sha256": _sha(folder / file), "bytes": (folder / file).stat().st_size})
        if f.path == file
        else f
        for f in manifest.files
    ]
    with pytest.raises(IntegrityError, match="expected float32"):
        JoblibRuntime.load(manifest.model_copy(update={"files": entries}), folder)


def _sha(path: Path) -> str:
    from latentserve_core.manifest import sha256_of

    return sha256_of(path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "dense", "--score-detail", "0.9"], "--model dense has no detail term"),
        (["--score-detail", "1.5"], "--score-detail must be a variance share in (0, 1), got 1.5"),
        (["--score-detail", "0.9", "--score-detail-weight", "0"], "--score-detail-weight must be > 0"),
    ],
)
def test_bad_detail_settings_exit_2_before_the_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["fit", "--dataset", "breast-cancer", "--name", "d", *flags, "--models-dir", str(tmp_path)]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_an_offline_bundle_carries_the_detail_files_and_scores_alike(tmp_path: Path) -> None:
    """The Spark scorer's bundle (the files an ONNX runtime loads) holds the detail term's files, so
    a worker scores as the service does."""
    from latentserve_client.spark._bundle import from_folder, runtime

    folder, manifest = _published(tmp_path)
    bundle = from_folder(folder)
    assert {"detail.npy", "detail-neighbors.npy"} <= set(bundle.files)
    X = _features(50, seed=7)
    served = OnnxRuntime.load(manifest, folder).compute("scores", X)[0]
    np.testing.assert_allclose(runtime(bundle).compute("scores", X)[0], served, rtol=1e-6)
