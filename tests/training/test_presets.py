"""`fit --preset NAME`: the preset's kind and flags apply first, explicit flags override them."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.manifest import Manifest
from training.cli import fit_argv, main
from training.presets import PRESETS, Preset, apply_preset, describe


def test_presets_command_lists_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert f"{name}\t{preset.kind}\t{preset.description}" in out
    assert out.strip() == describe()


def test_every_preset_is_well_formed() -> None:
    for name, preset in PRESETS.items():
        assert isinstance(preset, Preset) and preset.description and "\n" not in preset.description, name
        assert all(isinstance(t, str) for t in preset.flags)
        assert (
            "--model" not in preset.flags
            and "--dataset" not in preset.flags
            and "--classes" not in preset.flags
        )


def test_apply_preset_puts_explicit_flags_last() -> None:
    argv = ["fit", "--dataset", "digits", "--preset", "one-class-pca", "--n-components", "4"]
    out = apply_preset(argv)
    p = PRESETS["one-class-pca"]
    assert out == ["fit", "--model", p.kind, *p.flags, *argv[1:]]
    assert apply_preset(["list"]) == ["list"] and apply_preset(["fit", "--model", "pca"]) == [
        "fit",
        "--model",
        "pca",
    ]


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
    assert m.kind == p.kind
    assert m.hyperparameters["preset"] == "one-class-pca"
    assert m.hyperparameters["n_components"] == 16 == m.latent_dim
    assert m.score.pool == 3 and m.score.image_shape == [8, 8, 1] and m.score.relative
    assert m.score.reduction == "mean"
    assert m.score.neighbors is not None and m.score.neighbors.k == 5
    assert m.score.neighbors.reference_rows == m.data.rows_train  # fewer rows than the 4096 cap
    assert m.data.classes == [3]


def test_explicit_flags_override_the_preset(tmp_path: Path) -> None:
    m = _fit(
        tmp_path, "--n-components", "5", "--score-pool", "5", "--score-reduction", "topk", "--score-topk", "9"
    )
    assert m.hyperparameters["n_components"] == 5 and m.latent_dim == 5
    assert m.score.pool == 5 and m.score.relative  # overridden / kept from the preset
    assert m.score.reduction == "topk" and m.score.topk == 9
    m = _fit(tmp_path, "--model", "sklearn-pca")
    assert m.kind == "sklearn-pca" and m.hyperparameters["preset"] == "one-class-pca"


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
