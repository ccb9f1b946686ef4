"""`python -m training`: fit / list / show / bootstrap, and one clear line for every bad argument."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from latentserve_core.layout import model_names, versions_of
from latentserve_core.manifest import Manifest
from training.api import DEFAULT_MODELS, default_models
from training.cli import add_fit_arguments, build_parser, configs, field_default, fit_argv, flags_of, main
from training.config import Default, FitConfig, PCAConfig, ScoreConfig
from training.nn.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if ".staging" not in p.parts)


def test_fit_prints_the_new_version_folder(tmp_path: Path) -> None:
    extra = ["--n-components", "0.8", "--classes", "3", "--seed", "4"]
    argv = ["-m", "training", *fit_argv("sklearn-pca", "digits", "d", tmp_path, *extra)]
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "d" / "1")
    m = Manifest.read(tmp_path / "d" / "1")
    assert m.data.classes == [3] and m.data.seed == 4 and m.kind == "sklearn-pca"
    assert (
        m.metrics.explained_variance_ratio_total is not None
        and m.metrics.explained_variance_ratio_total >= 0.8
    )
    assert m.input.shape == [8, 8] and m.input.value_range == (0.0, 1.0)
    assert m.data.rows_train + m.data.rows_validation + m.data.rows_calibration == 183  # the 3s in digits


def test_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert main(fit_argv("pca", "breast-cancer", "bc", tmp_path, "--n-components", "5")) == 0
    capsys.readouterr()
    assert main(["list", "--models-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["bc:1", "bc:2"]
    assert main(["show", "bc", "--models-dir", str(tmp_path)]) == 0
    shown = Manifest.model_validate_json(capsys.readouterr().out)
    assert shown.version == 2 and shown.preprocessing.kind == "standardize"
    assert main(["show", "bc:1", "--models-dir", str(tmp_path)]) == 0
    assert Manifest.model_validate_json(capsys.readouterr().out).version == 1


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`python -m training argv` in this process: its exit status and what it wrote to stderr."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--model", "pca", "--dataset", "digits", "--name", "../evil"], "is not a valid model name"),
        (["fit", "--model", "pca", "--dataset", "digits", "--name", "Upper"], "is not a valid model name"),
        (["fit", "--model", "nope", "--dataset", "digits", "--name", "x"], "--model: unknown kind 'nope'"),
        (["fit", "--model", "pca", "--dataset", "nope", "--name", "x"], "unknown dataset 'nope'"),
        (
            ["fit", "--model", "pca", "--dataset", "digits", "--name", "x", "--n-components", "65"],
            "--n-components 65 is larger than the input size 64",
        ),
        (
            ["fit", "--model", "pca", "--dataset", "digits", "--name", "x", "--n-components", "1.5"],
            "expected an integer k >= 1 or a fraction in (0, 1)",
        ),
        (
            ["fit", "--model", "pca", "--dataset", "digits", "--name", "x", "--classes", "3,a"],
            "expected comma-separated integers",
        ),
        (
            ["fit", "--model", "pca", "--dataset", "digits", "--name", "x", "--classes", "12"],
            "classes [12] do not occur",
        ),
        (
            [
                "fit",
                "--model",
                "sklearn-pca",
                "--dataset",
                "digits",
                "--name",
                "x",
                "--solver",
                "randomized",
                "--n-components",
                "0.5",
            ],
            "randomized solver needs an integer",
        ),
        (
            [
                "fit",
                "--model",
                "pca",
                "--dataset",
                "mnist",
                "--name",
                "x",
                "--data-dir",
                "{empty}",
                "--no-download",
            ],
            "missing ['train-images-idx3-ubyte.gz'",
        ),
        (
            ["fit", "--model", "pca", "--dataset", "digits", "--name", "x", "--batch-size", "-5"],
            "--batch-size must be >= 1",
        ),
        (
            ["fit", "--model", "dense", "--dataset", "digits", "--name", "x", "--epochs", "0"],
            "--epochs must be >= 1",
        ),
        (
            ["fit", "--model", "pca", "--dataset", "digits", "--name", "x", "--mmap"],
            "--mmap streams rows through",
        ),
        (["show", "ghost"], "no model 'ghost'"),
        (["show", "x:zero"], "version: expected a positive integer"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line_and_touch_nothing(
    tmp_path: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = tmp_path / "models"
    assert main(fit_argv("pca", "digits", "x", models, "--n-components", "3")) == 0
    before = _tree(models)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("LATENTSERVE_DATA_DIR", str(empty))
    argv = [a.replace("{empty}", str(empty)) for a in argv]
    code, stderr = run_cli([*argv, "--models-dir", str(models)], capsys)
    assert code == 2
    err_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and message in err_lines[0], stderr
    assert "Traceback" not in stderr
    assert _tree(models) == before


def test_an_unwritable_registry_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host folder mounted at the train image's /models with another owner: one line that says
    which uid needs write access and how, before any data is loaded (root passes every access check,
    so the check is made to fail here)."""
    import training.api
    import training.publish

    models = tmp_path / "models"
    models.mkdir()
    real_access = os.access
    monkeypatch.setattr(
        training.publish.os, "access", lambda p, mode: Path(p) != models and real_access(p, mode)
    )
    monkeypatch.setattr(training.api, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    code, stderr = run_cli(fit_argv("pca", "digits", "x", models, "--n-components", "3"), capsys)
    assert code == 1
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert f"{models} belongs to uid {os.getuid()}" in line
    assert f"chown -R {os.getuid()}:{os.getgid()}" in line and "uid 10001" in line
    assert "Traceback" not in stderr
    assert list(models.iterdir()) == []


def test_the_entry_point_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The cases above run in-process; this one goes through `python -m training` itself."""
    proc = subprocess.run(
        [sys.executable, "-m", "training", "show", "ghost", "--models-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    err_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1 and "no model 'ghost'" in err_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bootstrap_trains_every_default_into_an_empty_registry_once(tmp_path: Path) -> None:
    assert main(["bootstrap", "--models-dir", str(tmp_path)]) == 0
    names = model_names(tmp_path)
    for default in DEFAULT_MODELS:
        assert default.name in names
        m = Manifest.read(tmp_path / default.name / "1")
        assert (m.kind, m.data.dataset) == (default.config.kind, default.data.dataset)
    assert main(["bootstrap", "--models-dir", str(tmp_path)]) == 0  # not empty: trains nothing
    assert all(versions_of(tmp_path, n) == [1] for n in names)


def test_mmap_streams_a_npy_file_through_incremental_pca(tmp_path: Path) -> None:
    X = np.random.default_rng(0).standard_normal((3000, 40)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    models = tmp_path / "models"
    flags = ["--n-components", "5", "--mmap"]
    assert main(fit_argv("incremental-pca", str(tmp_path / "x.npy"), "mm", models, *flags)) == 0
    m = Manifest.read(models / "mm" / "1")
    # split by position: the first 70% train, the tail validates and calibrates
    assert (m.data.rows_train, m.data.rows_validation + m.data.rows_calibration) == (2100, 900)
    for row in (1500, 2500):  # a bad row in the streamed train part, or in the held-out tail
        Y = X.copy()
        Y[row, 3] = np.nan
        np.save(tmp_path / "bad.npy", Y)
        bad = fit_argv("incremental-pca", str(tmp_path / "bad.npy"), "mm", models, *flags)
        cmd = [sys.executable, "-m", "training", *bad]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 2 and f"row {row} contains NaN or infinity" in proc.stderr, proc.stderr
    assert versions_of(models, "mm") == [1]


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("os.replace", errno.ENOSPC),  # the manifest write, after every artifact is staged
        ("os.rename", errno.EROFS),  # the publishing rename
        ("os.replace", errno.EACCES),
    ],
)
def test_a_failed_write_is_one_error_line_exit_1_and_the_registry_untouched(
    tmp_path: Path,
    where: str,
    code: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = tmp_path / "models"
    assert main(fit_argv("pca", "breast-cancer", "kept", models, "--n-components", "3")) == 0
    before = _tree(models)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(args[0]))

    monkeypatch.setattr(where, fail)
    status, err = run_cli(fit_argv("pca", "breast-cancer", "new", models, "--n-components", "3"), capsys)
    monkeypatch.undo()
    lines = err.strip().splitlines()
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and os.strerror(code) in lines[0], err
    assert "Traceback" not in err and "registry is unchanged" in lines[0]
    assert _tree(models) == before and model_names(models) == ["kept"]
    assert not list((models / ".staging").iterdir())


def test_an_unexpected_error_is_a_bug_with_its_traceback_not_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only our own typed errors become exit 2; a ValueError from a dependency (a bug) propagates."""
    from sklearn.decomposition import PCA

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("a bug deep inside scikit-learn")

    monkeypatch.setattr(PCA, "fit", broken)
    with pytest.raises(ValueError, match="a bug deep inside scikit-learn"):
        main(fit_argv("sklearn-pca", "digits", "x", tmp_path, "--n-components", "3"))
    assert not (tmp_path / "x").exists()


def fit_options() -> list[argparse.Action]:
    p = argparse.ArgumentParser()
    add_fit_arguments(p)
    return [a for a in p._actions if a.option_strings and a.dest != "help"]


def test_fit_help_shows_every_default_from_the_config_objects(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for action in fit_options():
        assert action.help and ("(default: " in action.help or "(required)" in action.help), action.dest
        try:
            default = field_default(action.dest)
        except (KeyError, ValueError):
            continue  # name, models_dir, batch_size: not one config field
        if isinstance(default, (int, float, str)) and not isinstance(default, bool):
            assert f"(default: {default})" in action.help, action.dest
    assert (
        f"(default: {PCAConfig().max_rows})" in text and f"incremental-pca {PCAConfig().batch_size}" in text
    )
    assert (
        f"(default: {ScoreConfig().reference_rows})" in text
        and f"networks {TrainConfig().batch_size}" in text
    )


@pytest.mark.parametrize("default", default_models(), ids=lambda d: d.name)
def test_the_flags_of_each_default_build_its_configs(default: Default) -> None:
    """`flags_of` (what `presets` prints) and `configs` (what `fit` reads) are inverse on the defaults."""
    classes = ["--classes", ",".join(map(str, default.data.classes))] if default.data.classes else []
    argv = fit_argv(
        default.config.kind, default.data.dataset, default.name, "m", *flags_of(default.config)[2:], *classes
    )
    config, data = configs(build_parser().parse_args(argv))
    assert data == default.data
    sections = ("kind", "seed", "latent_dim", "standardize", "net", "score")
    assert [getattr(config, s) for s in sections] == [getattr(default.config, s) for s in sections]
    # --batch-size sets pca.batch_size and train.batch_size alike
    assert replace(config.pca, batch_size=0) == replace(default.config.pca, batch_size=0)
    assert replace(config.train, seed=0) == default.config.train


def test_flags_of_writes_both_sides_of_a_switch() -> None:
    config = FitConfig("dense", standardize=False, train=TrainConfig(quiet=True), score=ScoreConfig(pool=3))
    assert flags_of(config) == ["--model", "dense", "--no-standardize", "--quiet", "--score-pool", "3"]
    argv = fit_argv("dense", "digits", "x", "m", *flags_of(config)[2:])
    assert configs(build_parser().parse_args(argv))[0] == config


def test_fit_without_a_model_or_preset_takes_the_layouts_default(tmp_path: Path) -> None:
    """Images get one-class-images, feature rows the `features` preset; explicit flags still apply."""
    base = ["fit", "--models-dir", str(tmp_path)]
    assert main([*base, "--dataset", "digits", "--classes", "3", "--name", "img"]) == 0
    assert Manifest.read(tmp_path / "img" / "1").hyperparameters["preset"] == "one-class-images"
    assert main([*base, "--dataset", "breast-cancer", "--name", "rows", "--seed", "3"]) == 0
    rows = Manifest.read(tmp_path / "rows" / "1")
    assert rows.hyperparameters["preset"] == "features" and rows.data.seed == 3
    assert rows.score.neighbors is not None and rows.score.neighbors.weight is not None


def test_a_csv_header_becomes_the_manifests_feature_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4)).astype(np.float32)
    data = tmp_path / "rows.csv"
    data.write_text("height,width,depth,mass\n" + "\n".join(",".join(f"{v:.5f}" for v in r) for r in X))
    argv = ["fit", "--model", "pca", "--dataset", str(data), "--name", "rows", "--models-dir", str(tmp_path)]
    assert main([*argv, "--n-components", "2"]) == 0
    manifest = Manifest.read(tmp_path / "rows" / "1")
    assert manifest.input.feature_names == ["height", "width", "depth", "mass"]


# ---- tables by column name -------------------------------------------------------------------
def _cancer_csv(path: Path, order: list[int] | None = None) -> list[str]:
    """The breast-cancer table as a user has it: an id, the 30 features (in `order`), the label
    `target` (1 benign, 0 malignant) and a text column; returns the feature names."""
    import csv

    from sklearn.datasets import load_breast_cancer

    bc = load_breast_cancer()
    names = [str(n) for n in bc.feature_names]
    order = order if order is not None else list(range(len(names)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *(names[j] for j in order), "target", "notes"])
        for i, (row, y) in enumerate(zip(bc.data, bc.target, strict=True)):
            w.writerow([i, *(repr(float(row[j])) for j in order), int(y), f"patient {i}"])
    return names


def test_fit_a_table_by_name_one_class_on_its_label_column_and_evaluate_on_those_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    data = tmp_path / "a" / "cancer.csv"
    names = _cancer_csv(data)
    table = ["--drop-columns", "id,notes", "--label-column", "target"]
    argv = fit_argv(
        "pca", str(data), "bc", tmp_path / "models", *table, "--classes", "1", "--n-components", "0.9"
    )
    assert main(argv) == 0
    m = Manifest.read(tmp_path / "models" / "bc" / "1")
    assert m.input.feature_names == names and m.data.label_column == "target" and m.data.classes == [1]
    assert m.data.rows_train + m.data.rows_validation + m.data.rows_calibration == 357  # the benign rows
    capsys.readouterr()
    evaluate = ["evaluate", "--name", "bc", "--models-dir", str(tmp_path / "models"), "--json"]
    assert main([*evaluate, "--dataset", str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["normal_classes"] == [1] and report["n_anomalies"] == 212  # every malignant row
    assert report["auroc"] > 0.9
    # the same table with its columns shuffled (same file name: the same held-out rows) evaluates the same
    order = [int(j) for j in np.random.default_rng(0).permutation(len(names))]
    _cancer_csv(tmp_path / "b" / "cancer.csv", order)
    assert main([*evaluate, "--dataset", str(tmp_path / "b" / "cancer.csv")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["auroc"] == pytest.approx(report["auroc"], abs=1e-6) and again["n_rows"] == report["n_rows"]


def test_a_table_fit_refuses_label_text_and_unknown_columns_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "cancer.csv"
    _cancer_csv(data)
    base = fit_argv("pca", str(data), "bc", tmp_path / "models")
    cases = [
        ([], "column 'id' looks like row ids, not a feature; pass --drop-columns id"),
        (
            ["--drop-columns", "id,notes"],
            "column 'target' looks like labels, not a feature; pass --label-column target",
        ),
        (
            ["--drop-columns", "id", "--label-column", "target"],
            "line 2: column 'notes' holds text 'patient 0'",
        ),
        (["--columns", "mean radius,radius mean"], "no column named 'radius mean'"),
        (
            ["--columns", "mean radius", "--classes", "1"],
            "no labels; name its column of labels with --label-column",
        ),
    ]
    for extra, message in cases:
        code, stderr = run_cli([*base, *extra], capsys)
        assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr
    assert not (tmp_path / "models" / "bc").exists()


def test_the_python_api_takes_the_table_choices(tmp_path: Path) -> None:
    from training import DataConfig, fit

    data = tmp_path / "cancer.csv"
    _cancer_csv(data)
    cols = ("mean radius", "mean texture", "worst area")
    folder = fit(
        "pca", DataConfig(str(data), columns=cols, label_column="target"), name="bc3", models_dir=tmp_path
    )
    m = Manifest.read(folder)
    assert m.input.feature_names == list(cols) and m.input.shape == [3] and m.data.label_column == "target"


def test_hostile_dataset_files_exit_2_with_one_line_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Break 13: a FIFO as --dataset hung; a malformed Parquet or a binary CSV exited 1 with a
    traceback; all-constant data published a model that could never flag anything."""
    import threading

    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 8)
    np.save(tmp_path / "constant.npy", np.full((50, 4), 3.0, dtype=np.float32))
    cases = {
        fifo: "not a regular file",
        tmp_path / "bad.parquet": "not a readable Parquet file",
        tmp_path / "binary.csv": "not a text CSV file",
        tmp_path / "constant.npy": "constant",
    }
    for path, message in cases.items():
        result: list[tuple[int, str]] = []
        worker = threading.Thread(
            target=lambda p=path, out=result: out.append(
                run_cli(fit_argv("pca", str(p), "x", tmp_path / "m"), capsys)
            )
        )
        worker.start()
        worker.join(60)
        if worker.is_alive():  # blocked opening the FIFO: a writer that closes at once frees it
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(60)
            pytest.fail(f"{path.name}: the CLI blocked")
        [(code, stderr)] = result
        err_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(err_lines) == 1 and message in err_lines[0], (path.name, stderr[-800:])
        assert "Traceback" not in stderr
