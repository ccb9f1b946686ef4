"""`training.fit` and `training.bootstrap`: the Python API that the CLI, benchmarks and tests call."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

import training
from latentserve_core.layout import model_names
from latentserve_core.manifest import Manifest
from training import DataConfig, FitConfig, PCAConfig, ScoreConfig, fit
from training.errors import DataError, UsageError
from training.nn.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    """The Python block of README's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {})
    digits = Manifest.read(tmp_path / "models" / "digits-3" / "1")
    assert digits.kind == "pca" and digits.latent_dim == 16 and digits.score.pool == 3
    assert digits.data.classes == [3]
    table = Manifest.read(tmp_path / "models" / "breast-cancer" / "1")
    assert table.hyperparameters["preset"] == "tabular" and table.data.seed == 1
    assert table.score.neighbors is not None and table.score.neighbors.k == 5


def test_the_kind_alone_takes_every_default(tmp_path: Path) -> None:
    folder = fit("pca", "breast-cancer", name="bc", models_dir=tmp_path)
    m = Manifest.read(folder)
    assert folder == tmp_path / "bc" / "1" and m.preprocessing.kind == "standardize"
    assert m.hyperparameters["n_components"] == PCAConfig.DEFAULT_SHARE
    assert m.threshold.quantile == ScoreConfig().quantile and m.data.seed == FitConfig("pca").seed
    total = m.data.rows_train + m.data.rows_validation + m.data.rows_calibration
    assert m.data.rows_validation == round(total * DataConfig("x").validation)


@pytest.mark.parametrize(
    ("settings", "data", "error", "message"),
    [
        ({"name": "Bad Name"}, DataConfig("digits"), UsageError, "is not a valid model name"),
        ({"kind": "nope"}, DataConfig("digits"), UsageError, "--model: unknown kind 'nope'"),
        ({"train": TrainConfig(epochs=0)}, DataConfig("digits"), UsageError, "--epochs"),
        ({"score": ScoreConfig(quantile=1.0)}, DataConfig("digits"), UsageError, "--quantile"),
        (
            {"score": ScoreConfig(reference_rows=0)},
            DataConfig("digits"),
            UsageError,
            "--score-reference-rows",
        ),
        ({"kind": "kernel-pca"}, DataConfig("x.npy", mmap=True), UsageError, "--mmap streams rows"),
        ({}, DataConfig("no-such-file.npy"), DataError, "no such file"),
        (
            {"pca": PCAConfig(n_components=65)},
            DataConfig("digits"),
            UsageError,
            "larger than the input size 64",
        ),
        ({"score": ScoreConfig(pool=4)}, DataConfig("digits"), UsageError, "odd window size"),
    ],
)
def test_a_bad_setting_is_a_typed_error_and_publishes_nothing(
    tmp_path: Path, settings: dict[str, object], data: DataConfig, error: type[Exception], message: str
) -> None:
    name = str(settings.pop("name", "m"))
    with pytest.raises(error, match=re.escape(message)):
        fit(replace(FitConfig("pca"), **settings), data, name=name, models_dir=tmp_path)  # type: ignore[arg-type]
    assert model_names(tmp_path) == []


def test_bootstrap_trains_nothing_into_a_registry_that_holds_models(tmp_path: Path) -> None:
    fit("pca", "digits", name="mine", models_dir=tmp_path, pca=PCAConfig(n_components=3))
    assert training.bootstrap(tmp_path) == []
    assert model_names(tmp_path) == ["mine"]
