"""`python -m training evaluate`: scores held-out rows through the service runtime; reports land in
`<version>/evaluations/` and leave the published files untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentserve_core.manifest import Manifest, sha256_of
from training.cli import main
from training.evaluate import REPORTS_DIR, evaluate

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"auroc", "average_precision", "precision", "recall", "f1", "fpr_at_threshold", "expected_fpr"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits, one class: a PCA trained on the zeros only (ONNX + joblib)."""
    models = tmp_path_factory.mktemp("models")
    argv = [
        "fit",
        "--model",
        "pca",
        "--dataset",
        "digits",
        "--classes",
        "0",
        "--name",
        "zeros",
        "--n-components",
        "8",
        "--models-dir",
        str(models),
    ]
    assert main(argv) == 0
    return models


def _listed(folder: Path) -> dict[str, str]:
    return {e.path: sha256_of(folder / e.path) for e in Manifest.read(folder).files}


def test_digits_one_class_report_and_files(registry: Path) -> None:
    folder = registry / "zeros" / "1"
    before = _listed(folder)
    manifest_bytes = (folder / "manifest.json").read_bytes()
    report = evaluate(registry, "zeros", "digits")
    assert report.keys() >= KEYS
    assert report["auroc"] > 0.9 and report["average_precision"] > 0.9
    assert report["format"] == "onnx" and report["normal_classes"] == [0]
    assert report["expected_fpr"] == pytest.approx(0.01)
    # held-out rows only: the 27 validation zeros (neither train nor calibration) and all 1619 others
    assert report["n_normal"] == 27 and report["n_anomalies"] == 1797 - 178
    json_path, png_path = (Path(p) for p in report["files"])
    assert json_path.parent == png_path.parent == folder / REPORTS_DIR
    assert json.loads(json_path.read_text())["auroc"] == report["auroc"]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the published version is unchanged: same manifest, same files, same checksums
    assert (folder / "manifest.json").read_bytes() == manifest_bytes
    assert _listed(folder) == before
    assert {e.path for e in Manifest.read(folder).files}.isdisjoint({REPORTS_DIR})


def test_other_normal_classes_and_joblib_needs_permission(registry: Path) -> None:
    # zeros and sixes normal: every six is held out (the model never saw one), as are the validation zeros
    report = evaluate(registry, "zeros:1", "digits", normal_classes=[0, 6], save=False)
    assert report["n_normal"] == 27 + 181 and "files" not in report
    assert 0.0 <= report["fpr_at_threshold"] <= 1.0


def test_cli_json_output_parses(registry: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "evaluate",
            "--name",
            "zeros:1",
            "--dataset",
            "digits",
            "--models-dir",
            str(registry),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report.keys() >= KEYS and report["auroc"] > 0.9


def test_cli_text_output(registry: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--name", "zeros", "--dataset", "digits", "--models-dir", str(registry)]) == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "false-positive rate" in out and "promised 0.0100" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--name", "zeros:7"], "has no version 7"),
        (["--name", "Zeros/../x"], "is not a model name"),
        (["--name", "zeros:x"], "version: expected a positive integer"),
        (["--name", "nobody"], "no model 'nobody'"),
        (["--name", "zeros", "--normal-classes", "12"], "normal classes [12] do not occur"),
        (["--name", "zeros", "--normal-classes", "a,b"], "expected comma-separated integers"),
        (["--name", "zeros", "--normal-classes", "0,1,2,3,4,5,6,7,8,9"], "both are needed"),
        (["--name", "zeros", "--dataset", "breast-cancer"], "expects rows of shape [8, 8]"),
    ],
)
def test_bad_arguments_give_one_error_line(
    registry: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full = ["evaluate", "--dataset", "digits", "--models-dir", str(registry), *argv]
    try:
        rc = main(full)
    except SystemExit as exc:  # argparse rejects a malformed flag value itself
        rc = int(exc.code or 0)
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_joblib_only_model_needs_allow_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "fit",
        "--model",
        "kernel-pca",
        "--dataset",
        "digits",
        "--classes",
        "1",
        "--name",
        "k",
        "--n-components",
        "8",
        "--max-rows",
        "200",
        "--models-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    base = ["evaluate", "--name", "k", "--dataset", "digits", "--models-dir", str(tmp_path), "--json"]
    assert main(base) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert main([*base, "--allow-pickle"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "joblib" and report["auroc"] > 0.5


@pytest.mark.mnist
def test_mnist_test_split_and_calibration(mnist_dir: Path, tmp_path: Path) -> None:
    argv = [
        "fit",
        "--model",
        "pca",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_dir),
        "--classes",
        "1",
        "--name",
        "ones",
        "--n-components",
        "16",
        "--models-dir",
        str(tmp_path),
        "--no-download",
    ]
    assert main(argv) == 0
    report = evaluate(tmp_path, "ones", "mnist", data_dir=mnist_dir, download=False)
    assert report["n_rows"] == 10_000 and report["n_normal"] == 1135
    assert report["auroc"] > 0.99
    # the threshold's promise (1% of normal rows flagged) holds on the test split within a few s.e.
    assert abs(report["fpr_at_threshold"] - 0.01) < 4 * report["fpr_standard_error"] + 0.005
    assert np.isfinite(report["average_precision"])
