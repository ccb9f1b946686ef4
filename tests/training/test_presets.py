"""`fit --preset NAME`: a preset is a FitConfig; explicit flags override its fields."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import JoblibRuntime, OnnxRuntime
from training.api import fit
from training.cli import describe, fit_argv, main
from training.config import DataConfig, FitConfig, PCAConfig
from training.data import filter_classes, load_dataset, split
from training.errors import PresetError
from training.evaluate import evaluate
from training.presets import PRESETS, Preset, default_config, preset


def test_presets_command_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, p in PRESETS.items():
        assert f"{name}\t{p.config.kind}\t{p.description}" in out
    assert out.strip() == describe()
    assert "\tflags: --model pca --n-components 16 --score-pool 3 --score-relative --score-neighbors 5" in out


def test_every_preset_is_well_formed() -> None:
    for name, p in PRESETS.items():
        assert isinstance(p, Preset) and p.description and "\n" not in p.description, name
        assert isinstance(p.config, FitConfig) and p.config.preset == name
        assert preset(name) is p.config
    with pytest.raises(PresetError, match="unknown preset 'nope'"):
        preset("nope")


def _fit(tmp_path: Path, *extra: str) -> Manifest:
    argv = [
        "fit",
        "--preset",
        "one-class-pca",
        "--dataset",
        "digits",
        "--classes",
        "3",
        "--name",
        "p",
        "--models-dir",
        str(tmp_path),
        *extra,
    ]
    assert main(argv) == 0
    versions = sorted(int(v.name) for v in (tmp_path / "p").iterdir())
    return Manifest.read(tmp_path / "p" / str(versions[-1]))


def test_fit_preset_applies_its_settings(tmp_path: Path) -> None:
    m = _fit(tmp_path)
    p = PRESETS["one-class-pca"]
    assert m.kind == p.config.kind
    assert m.hyperparameters["preset"] == "one-class-pca"
    assert m.hyperparameters["n_components"] == 16 == m.latent_dim
    assert m.score.pool == 3 and m.score.image_shape == [8, 8, 1] and m.score.relative
    assert m.score.reduction == "mean"
    assert m.score.neighbors is not None and m.score.neighbors.k == 5
    assert m.score.neighbors.reference_rows == m.data.rows_train  # fewer rows than the 4096 cap
    assert m.data.classes == [3]


def test_the_api_takes_a_preset_and_publishes_what_the_cli_does(tmp_path: Path) -> None:
    m = _fit(tmp_path / "cli")
    folder = fit(
        preset("one-class-pca"), DataConfig("digits", classes=(3,)), name="p", models_dir=tmp_path / "api"
    )
    api = Manifest.read(folder)
    same = {"created_at", "frameworks"}
    assert api.model_dump(exclude=same) == m.model_dump(exclude=same)


def test_explicit_flags_override_the_preset(tmp_path: Path) -> None:
    m = _fit(
        tmp_path, "--n-components", "5", "--score-pool", "5", "--score-reduction", "topk", "--score-topk", "9"
    )
    assert m.hyperparameters["n_components"] == 5 and m.latent_dim == 5
    assert m.score.pool == 5 and m.score.relative  # overridden / kept from the preset
    assert m.score.reduction == "topk" and m.score.topk == 9
    m = _fit(tmp_path, "--model", "sklearn-pca")
    assert m.kind == "sklearn-pca" and m.hyperparameters["preset"] == "one-class-pca"


def test_api_settings_override_the_preset(tmp_path: Path) -> None:
    config = preset("one-class-pca")
    folder = fit(config, "digits", name="o", models_dir=tmp_path, pca=replace(config.pca, n_components=4))
    m = Manifest.read(folder)
    assert m.latent_dim == 4 and m.score.pool == 3 and m.hyperparameters["preset"] == "one-class-pca"
    assert fit("pca", "digits", name="o", models_dir=tmp_path, pca=PCAConfig(n_components=3)).name == "2"


def test_unknown_preset_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fit", "--preset", "nope", "--dataset", "digits", "--name", "p", "--models-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'nope'" in err[0]
    assert not (tmp_path / "p").exists()


def test_pca_score_topk_needs_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = fit_argv("pca", "digits", "t", tmp_path, "--score-reduction", "topk")
    assert main(argv) == 2
    assert "--score-topk" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


# ---- the image default -----------------------------------------------------------------------
def test_the_image_default_is_the_one_class_images_preset() -> None:
    image = default_config("image")
    assert image is PRESETS["one-class-images"].config
    assert image.kind == "pca" and image.preset == "one-class-images"
    assert default_config("features") is PRESETS["features"].config
    # the default is the torch-free preset plus the rotation term
    plain = PRESETS["one-class-images-pca"].config
    assert image.pca == plain.pca and image.score.rotation == 0.25 and plain.score.rotation is None
    settings = {"rotation_epochs": plain.score.rotation_epochs, "rotation_size": plain.score.rotation_size}
    assert replace(image.score, rotation=None, **settings) == plain.score


def _digits_class(c: int) -> tuple[np.ndarray, np.ndarray]:
    """The training and validation rows `fit` keeps for class c of digits (the seeded split),
    flattened, float64."""
    ds = load_dataset("digits")
    X, y = filter_classes(ds, [c])
    splits = split(X, y, seed=0)
    return tuple(part.reshape(-1, 64).astype(np.float64) for part in (splits.X_train, splits.X_val))  # type: ignore[return-value]


def _box3(e: np.ndarray) -> np.ndarray:
    """3x3 window means of 8x8 rows, zeros outside, by loops (docs/score.md step 2)."""
    img = np.pad(e.reshape(len(e), 8, 8), ((0, 0), (1, 1), (1, 1)))
    out = sum(img[:, dh : dh + 8, dw : dw + 8] for dh in range(3) for dw in range(3)) / 9.0
    return np.asarray(out).reshape(len(e), 64)


def _pooled_score(flat: np.ndarray, mean: np.ndarray, W: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Mean 3x3-pooled squared error after the directions W + mean squared distance of the code to
    its 5 nearest codes R, / 64, in float64."""
    Z = (flat - mean) @ W.T
    error = _box3(flat - (Z @ W + mean))
    near = np.sort(((Z[:, None, :] - R[None, :, :]) ** 2).sum(axis=2), axis=1)[:, :5].mean(axis=1)
    return np.asarray((error**2).mean(axis=1) + near / 64)


def _share(s: np.ndarray, share: float) -> int:
    return int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), share)) + 1


@pytest.mark.parametrize(("c", "floored"), [(1, True), (8, False)])
def test_image_pca_preset_takes_k_from_the_spectrum_and_serves_the_numpy_score(
    tmp_path: Path, c: int, floored: bool
) -> None:
    """k = the fewest components reaching 60% of the training images' variance, at least 4, and
    the detail term's directions up to 95%, computed here by an SVD; the published ONNX and joblib
    runtimes serve the score docs/score.md defines, computed here in float64 from that SVD: the
    relative score plus half the plain one, each divided by its 99% quantile on the validation rows."""
    config = PRESETS["one-class-images-pca"].config
    folder = fit(config, DataConfig("digits", classes=(c,)), name="img", models_dir=tmp_path)
    m = Manifest.read(folder)
    X, X_val = _digits_class(c)
    mean = X.mean(axis=0)
    _, s, Vt = np.linalg.svd(X - mean, full_matrices=False)
    share = _share(s, 0.6)
    assert (share < 4) == floored  # digits 1 needs fewer than 4 components for 60%: the floor bites
    k = max(share, 4)
    k2 = max(_share(s, 0.95), k + 1)
    assert m.latent_dim == k and m.hyperparameters["preset"] == "one-class-images-pca"
    assert m.score.pool == 3 and m.score.relative and m.score.neighbors is not None
    assert m.score.neighbors.k == 5 and m.score.neighbors.reference_rows == len(X)
    assert m.score.detail is not None and m.score.detail.components == k2 - k

    def parts(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        relative = _pooled_score(flat, mean, Vt[:k], (X - mean) @ Vt[:k].T) / (flat.var(axis=1) + 1e-6)
        return relative, _pooled_score(flat, mean, Vt[:k2], (X - mean) @ Vt[:k2].T)

    first_val, detail_val = parts(X_val)
    first_w, detail_w = 1 / np.quantile(first_val, 0.99), 0.5 / np.quantile(detail_val, 0.99)
    assert m.score.detail.primary_weight == pytest.approx(first_w, rel=2e-3)
    assert m.score.detail.weight == pytest.approx(detail_w, rel=2e-3)
    rows = load_dataset("digits").X[:50]
    first, detail = parts(rows.reshape(len(rows), 64).astype(np.float64))
    expected = first_w * first + detail_w * detail
    for rt in (OnnxRuntime.load(m, folder), JoblibRuntime.load(m, folder)):
        np.testing.assert_allclose(rt.compute("scores", rows)[0], expected, rtol=2e-3)
        np.testing.assert_allclose(rt.reconstruct(rows).scores, expected, rtol=2e-3)


def test_the_image_default_adds_the_rotation_term_to_the_pca_presets_score(tmp_path: Path) -> None:
    """The default publishes the same PCA, detail term and neighbors as one-class-images-pca on the
    same rows, plus the rotation term: served score = primary_weight x that preset's score + weight x
    the term, the term computed here by onnxruntime alone from rotation.onnx, both weights set by
    the 99% quantiles on the validation rows (the term's at quarter weight)."""
    data = DataConfig("digits", classes=(3,))
    plain = Manifest.read(fit(PRESETS["one-class-images-pca"].config, data, name="p", models_dir=tmp_path))
    folder = fit(default_config("image"), data, name="d", models_dir=tmp_path)
    m = Manifest.read(folder)
    assert m.score.rotation is not None and m.score.rotation.pool == 1  # 8 x 8 images: not pooled (< 2 x 14)
    assert m.score.model_copy(update={"rotation": None}) == plain.score and m.latent_dim == plain.latent_dim
    session = ort.InferenceSession(str(folder / "rotation.onnx"), providers=["CPUExecutionProvider"])

    def term(rows: np.ndarray) -> np.ndarray:
        (out,) = session.run(None, {session.get_inputs()[0].name: rows.reshape(len(rows), -1)})
        return np.asarray(out, dtype=np.float64)

    before = OnnxRuntime.load(plain, tmp_path / "p" / "1")
    _, X_val = _digits_class(3)
    X_val = X_val.reshape(-1, 8, 8).astype(np.float32)
    q_first = np.quantile(before.compute("scores", X_val)[0].astype(np.float64), 0.99)
    assert m.score.rotation.primary_weight == pytest.approx(1 / q_first, rel=1e-4)
    assert m.score.rotation.weight == pytest.approx(0.25 / np.quantile(term(X_val), 0.99), rel=1e-4)
    rows = load_dataset("digits").X[:50]
    expected = m.score.rotation.primary_weight * before.compute("scores", rows)[
        0
    ] + m.score.rotation.weight * term(rows)
    for rt in (OnnxRuntime.load(m, folder), JoblibRuntime.load(m, folder)):
        np.testing.assert_allclose(rt.compute("scores", rows)[0], expected, rtol=1e-4)


def test_image_default_reads_an_npz_image_set_by_path(tmp_path: Path) -> None:
    ds = load_dataset("digits")
    x, y = np.round(ds.X * 255).astype(np.uint8), ds.y
    assert y is not None
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x[:1500], y_train=y[:1500], x_test=x[1500:], y_test=y[1500:])
    argv = ["fit", "--preset", "one-class-images", "--dataset", str(path), "--classes", "0"]
    assert main([*argv, "--name", "n", "--models-dir", str(tmp_path)]) == 0
    m = Manifest.read(tmp_path / "n" / "1")
    assert m.input.shape == [8, 8] and m.data.classes == [0]
    assert m.hyperparameters["preset"] == "one-class-images"
    report = evaluate(tmp_path, "n", str(path), save=False)
    assert report["auroc"] > 0.9  # zeros against the other digits of x_test, through the runtime
