"""`fit --preset NAME`: a preset is a FitConfig; explicit flags override its fields."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from latentserve_core.manifest import Manifest
from training.api import fit
from training.cli import describe, fit_argv, main
from training.config import DataConfig, FitConfig, PCAConfig
from training.errors import PresetError
from training.presets import PRESETS, Preset, preset


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
