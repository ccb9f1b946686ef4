"""The default for feature rows: `fit(None, ...)` / `fit` without --model or --preset, its score
(floored standardisation, the neighbors term balanced on validation rows), and the bootstrap's
one-class breast-cancer model that README's first example scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import RUNTIMES
from latentserve_core.runtime.base import ModelRuntime, load_reference, neighbor_distances, row_scores
from training import fit
from training.api import DEFAULT_MODELS
from training.base import BALANCE_EPS, floored_scale
from training.config import FitConfig, PCAConfig, ScoreConfig
from training.errors import UsageError
from training.pca import PCA
from training.presets import PRESETS, default_config

ROOT = Path(__file__).resolve().parents[2]


def table(n: int, seed: int = 0) -> np.ndarray:
    """n rows of 6 correlated features in very different units, as a table has."""
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 2))
    mixed = latent @ rng.standard_normal((2, 6)) + 0.1 * rng.standard_normal((n, 6))
    return (mixed * np.array([1.0, 10.0, 100.0, 0.01, 1.0, 1000.0])).astype(np.float32)


def load(folder: Path) -> tuple[Manifest, ModelRuntime]:
    manifest = Manifest.read(folder)
    return manifest, RUNTIMES[manifest.format].load(manifest, folder)


def test_default_config_by_layout() -> None:
    assert default_config("features") is PRESETS["features"].config
    assert default_config("image") is PRESETS["one-class-images"].config
    with pytest.raises(UsageError, match="sequence rows have no default model"):
        default_config("sequence")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default fitted on 7,000 rows: more training rows than the reference keeps."""
    root = tmp_path_factory.mktemp("default")
    np.save(root / "rows.npy", table(7000))
    return fit(None, root / "rows.npy", name="rows", models_dir=root / "models")


def test_fit_without_a_config_records_the_feature_default(published: Path) -> None:
    manifest = Manifest.read(published)
    assert manifest.hyperparameters["preset"] == "features"
    assert manifest.hyperparameters["scale_floor"] == PRESETS["features"].config.pca.scale_floor
    nb = manifest.score.neighbors
    assert nb is not None and nb.k == 5 and nb.weight is not None and nb.weight > 0


def test_the_reference_stays_fixed_size(published: Path) -> None:
    manifest = Manifest.read(published)
    kept = PRESETS["features"].config.score.reference_rows
    assert kept == 4096 and manifest.data.rows_train > kept
    reference = load_reference(manifest, published)
    assert reference is not None and reference.shape == (kept, manifest.latent_dim)


def test_served_scores_are_the_numpy_score(published: Path) -> None:
    """The ONNX scorer graph (weight included) and the numpy score of docs/score.md agree."""
    manifest, runtime = load(published)
    X = table(300, seed=5)
    X[:10] *= 3.0  # some rows far from the training rows, so that both parts matter
    (served,) = runtime.compute("scores", runtime.check_inputs(X))
    Z = runtime.encode(X)
    numpy = row_scores(X, runtime.decode(Z), manifest.score, Z, load_reference(manifest, published))
    np.testing.assert_allclose(served, numpy, rtol=1e-4, atol=1e-6)
    unweighted = row_scores(
        X,
        runtime.decode(Z),
        manifest.score.model_copy(
            update={"neighbors": manifest.score.neighbors.model_copy(update={"weight": None})}
        ),  # type: ignore[union-attr]
        Z,
        load_reference(manifest, published),
    )
    assert not np.allclose(unweighted, numpy, rtol=1e-3)  # the weight is not a no-op here


def test_the_balance_gives_both_parts_one_mean() -> None:
    X = table(600)
    score = ScoreConfig(neighbors=5, reference_rows=4096, balance=True)
    est = PCA(0.99, standardize=True, score=score).fit(X[:400], X[400:])
    spec = est.score_spec_
    assert spec.neighbors is not None and spec.neighbors.weight is not None
    rows = X[400:]
    Z = est.encode(rows)
    residual = row_scores(
        rows, est.reconstruct(rows).reshape(len(rows), -1), spec.model_copy(update={"neighbors": None})
    )
    near = neighbor_distances(Z, est.reference_codes_, 5) / X.shape[1]
    eps = BALANCE_EPS * (residual.mean() + near.mean())  # keeps a (near-)zero part from ruling the ratio
    assert spec.neighbors.weight == pytest.approx((residual.mean() + eps) / (near.mean() + eps), rel=1e-5)
    assert spec.neighbors.weight * near.mean() == pytest.approx(residual.mean(), rel=10 * BALANCE_EPS)


def test_the_data_driven_parts_are_deterministic(tmp_path: Path) -> None:
    np.save(tmp_path / "rows.npy", table(500))
    manifests = [
        Manifest.read(fit(None, tmp_path / "rows.npy", name="r", models_dir=tmp_path / "m", seed=seed))
        for seed in (7, 7, 8)
    ]
    weights = [m.score.neighbors.weight for m in manifests]  # type: ignore[union-attr]
    assert weights[0] == weights[1] and manifests[0].score.scale == manifests[1].score.scale
    assert weights[2] != weights[0]  # another seed, another split


def test_floored_scale() -> None:
    std = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 100.0])
    np.testing.assert_array_equal(floored_scale(std, 0.0), [1.0, 1.0, 2.0, 3.0, 4.0, 100.0])
    floor = np.quantile(std[1:], 0.75)
    np.testing.assert_allclose(floored_scale(std, 0.75), [1.0, floor, floor, floor, floor, 100.0])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (FitConfig("pca", score=ScoreConfig(balance=True)), "--score-balance"),
        (FitConfig("pca", pca=PCAConfig(scale_floor=1.0)), "--scale-floor must be a quantile"),
        (FitConfig("kernel-pca", pca=PCAConfig(scale_floor=0.5)), "--scale-floor applies to the linear"),
    ],
)
def test_settings_that_cannot_apply_are_usage_errors(tmp_path: Path, config: FitConfig, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        fit(config, "breast-cancer", name="x", models_dir=tmp_path)
    assert not (tmp_path / "x").exists()


def readme_rows() -> list[list[float]]:
    """The rows README's first example sends to breast-cancer-pca."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(curl[^`]*?breast-cancer-pca.*?)```", text, re.S)
    assert block is not None
    body = re.search(r"-d '(\{.*?\})'", block.group(1), re.S)
    assert body is not None
    rows: list[list[float]] = json.loads(body.group(1))["inputs"]
    return rows


def test_the_bootstrap_default_flags_readmes_malignant_row_only(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    default = next(d for d in DEFAULT_MODELS if d.name == "breast-cancer-pca")
    assert default.data.classes == (1,) and default.config is default_config("features")
    folder = fit(default.config, default.data, name=default.name, models_dir=tmp_path)
    manifest, runtime = load(folder)
    assert manifest.data.classes == [1]
    rows = readme_rows()
    data = load_breast_cancer()
    labels = [int(data.target[np.flatnonzero(np.isclose(data.data, row).all(axis=1))[0]]) for row in rows]
    assert labels == [0, 1]  # README sends a malignant row (0), then a benign one (1)
    (scores,) = runtime.compute("scores", runtime.check_inputs(np.asarray(rows)))
    _, flagged, _ = runtime.judge(scores)
    assert flagged.tolist() == [True, False]


def test_a_manifest_written_before_the_weight_still_loads() -> None:
    """neighbors.weight is optional: a score object without it reads as weight 1."""
    from latentserve_core.manifest import ScoreSpec

    old = {"metric": "mse", "neighbors": {"k": 5, "reference_rows": 10, "file": "neighbors.npy"}}
    spec = ScoreSpec.model_validate(old)
    assert spec.neighbors is not None and spec.neighbors.weight is None
    X = table(4)
    Z, R = X[:, :2], table(10, seed=1)[:, :2]
    weighted = spec.model_copy(update={"neighbors": spec.neighbors.model_copy(update={"weight": 1.0})})
    np.testing.assert_array_equal(row_scores(X, X * 0.9, spec, Z, R), row_scores(X, X * 0.9, weighted, Z, R))


def test_settings_given_with_no_config_replace_the_layouts_default(tmp_path: Path) -> None:
    """`fit(None, data, kind=...)`: the settings replace fields of the default (kind included),
    as they replace a given config's."""
    X = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    folder = fit(None, X, name="k", models_dir=tmp_path, kind="sklearn-pca", seed=2)
    manifest = Manifest.read(folder)
    assert manifest.kind == "sklearn-pca" and manifest.data.seed == 2
    assert manifest.hyperparameters["preset"] == "features"
