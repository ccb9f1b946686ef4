"""Every kind trains through `python -m training fit`, exports with ONNX parity and loads in the service."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentserve_core.manifest import Manifest
from latentserve_core.runtime import OnnxRuntime
from training.cli import main
from training.data import Splits

TINY = ["--epochs", "2", "--batch-size", "64", "--hidden", "16", "--quiet"]


def fit(registry: Path, *argv: str) -> int:
    """`python -m training fit ...` in this process: its exit status (argparse's errors exit 2)."""
    try:
        return main(["fit", "--models-dir", str(registry), *argv])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


def load(registry: Path, name: str) -> tuple[Manifest, OnnxRuntime]:
    folder = registry / name / "1"
    manifest = Manifest.read(folder)
    return manifest, OnnxRuntime.load(manifest, folder)


@pytest.mark.parametrize(
    ("kind", "dataset", "extra"),
    [
        ("dense", "digits", ["--latent-dim", "8"]),
        ("linear", "digits", ["--latent-dim", "8"]),
        ("conv", "digits", ["--latent-dim", "8", "--channels", "4,8"]),
        ("lstm", "digits", ["--latent-dim", "8"]),
        ("denoising", "digits", ["--latent-dim", "8", "--base", "conv", "--channels", "4"]),
        ("vae", "digits", ["--latent-dim", "4"]),
        ("dense", "breast-cancer", ["--latent-dim", "4", "--score-reduction", "topk", "--score-topk", "5"]),
        ("lstm", "breast-cancer", ["--latent-dim", "4", "--noise", "0.1"]),
        ("denoising", "gaussian-2d", ["--latent-dim", "1", "--noise-kind", "dropout", "--sparsity", "0.01"]),
    ],
)
def test_every_kind_exports_with_parity(
    registry: Path, digits: Splits, kind: str, dataset: str, extra: list[str]
) -> None:
    assert fit(registry, "--model", kind, "--dataset", dataset, "--name", "m", *TINY, *extra) == 0
    manifest, runtime = load(registry, "m")
    assert manifest.kind == kind and manifest.format == "onnx"
    assert {f.role for f in manifest.files} >= {"encoder", "decoder", "scorer", "picture", "card"}
    assert [h.epoch for h in manifest.metrics.history] == [1, 2]
    # the service's answer on fresh rows matches the manifest's own claims
    rng = np.random.default_rng(0)
    shape = tuple(manifest.input.shape)
    if manifest.preprocessing.kind == "standardize":
        assert manifest.score.scale is not None and len(manifest.score.scale) == manifest.input.size
    X = rng.random((5, *shape)) if dataset == "digits" else rng.standard_normal((5, *shape))
    X = X.astype(np.float32)
    rec = runtime.reconstruct(X)
    assert rec.X_hat.shape == X.shape and rec.scores.shape == (5,)
    Z = runtime.encode(X)
    assert Z.shape == (5, manifest.latent_dim)
    # the fused scorer and encode -> decode agree
    np.testing.assert_allclose(runtime.decode(Z), rec.X_hat, atol=1e-5)


def test_scores_follow_the_score_spec(registry: Path) -> None:
    fit(
        registry,
        "--model",
        "dense",
        "--dataset",
        "breast-cancer",
        "--name",
        "m",
        "--latent-dim",
        "4",
        *TINY,
        "--score-reduction",
        "topk",
        "--score-topk",
        "3",
    )
    manifest, runtime = load(registry, "m")
    assert manifest.score.reduction == "topk" and manifest.score.topk == 3
    X = np.random.default_rng(1).normal(10.0, 5.0, (4, 30)).astype(np.float32)
    rec = runtime.reconstruct(X)
    sq = np.square((X - rec.X_hat) / np.asarray(manifest.score.scale, dtype=np.float32))
    np.testing.assert_allclose(rec.scores, np.sort(sq, axis=1)[:, -3:].mean(axis=1), rtol=1e-5)


def test_vae_manifest_allows_sampling(registry: Path) -> None:
    fit(registry, "--model", "vae", "--dataset", "digits", "--name", "v", "--latent-dim", "4", *TINY)
    manifest, runtime = load(registry, "v")
    assert manifest.latent_distribution == "standard-normal"
    samples = runtime.sample(6, seed=0)
    assert samples.shape == (6, 8, 8) and np.isfinite(samples).all()


def test_model_card_and_pictures(registry: Path) -> None:
    fit(
        registry,
        "--model",
        "dense",
        "--dataset",
        "digits",
        "--name",
        "d",
        "--latent-dim",
        "8",
        *TINY,
        "--hidden",
        "24,12",
    )
    folder = registry / "d" / "1"
    assert Manifest.read(folder).hyperparameters["hidden"] == [24, 12]
    card = (folder / "README.md").read_text()
    assert "hidden [24, 12]" in card
    pictures = {f.path for f in Manifest.read(folder).files if f.role == "picture"}
    assert pictures == {"loss.png", "reconstructions.png", "scores.png", "codes.png"}
    for name in pictures:
        assert f"]({name})" in card
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    assert "threshold" in card and "parity" in card


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "conv", "--dataset", "breast-cancer"], "conv needs image data"),
        (["--model", "dense", "--dataset", "digits", "--latent-dim", "64"], "--latent-dim 64"),
        (["--model", "dense", "--dataset", "breast-cancer", "--loss", "bce"], "--loss bce"),
        (["--model", "densest", "--dataset", "digits"], "unknown kind"),
        (["--model", "dense", "--dataset", "digits", "--hidden", "3,x"], "--hidden"),
        (["--model", "dense", "--dataset", "digits", "--score-reduction", "topk"], "--score-topk"),
    ],
)
def test_bad_arguments_fail_with_one_line_and_leave_the_registry_alone(
    registry: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert fit(registry, *argv, "--name", "bad", "--epochs", "1", "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not registry.exists() or not any(p.name == "bad" for p in registry.iterdir())
