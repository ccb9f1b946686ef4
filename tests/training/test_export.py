"""Export into the registry: formats agree, checksums hold, publishing is atomic."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentserve_core.layout import versions_of
from latentserve_core.manifest import Manifest, sha256_of
from latentserve_core.runtime import JoblibRuntime, OnnxRuntime
from training.data import load_dataset, split
from training.errors import ExportError
from training.export import TrainingRun, export_pca_family, write_linear_onnx
from training.pca import PCA, IncrementalPCA, KernelPCA, SklearnPCA

ROOT = Path(__file__).resolve().parents[2]


def _run(dataset: str, standardize: bool) -> tuple[TrainingRun, np.ndarray]:
    ds = load_dataset(dataset)
    sp = split(ds.X, ds.y, seed=0)
    return TrainingRun(dataset=ds, splits=sp, seed=0), sp.X_val


@pytest.mark.parametrize(
    ("dataset", "est"),
    [
        ("digits", PCA(12, device="cpu")),
        ("digits", SklearnPCA(12)),
        ("breast-cancer", PCA(0.9, standardize=True, device="cpu")),
        ("breast-cancer", IncrementalPCA(8, standardize=True)),
    ],
)
def test_onnx_joblib_and_memory_agree(tmp_path: Path, dataset: str, est: PCA) -> None:
    run, X_val = _run(dataset, est.standardize)
    est.fit(run.splits.X_train)
    folder = export_pca_family(est, run, tmp_path, "m")
    manifest = Manifest.read(folder)
    assert manifest.formats == ["onnx", "joblib"] and manifest.version == 1
    onnx_rt = OnnxRuntime.load(manifest, folder)
    joblib_rt = JoblibRuntime.load(manifest, folder)
    ref = est.reconstruct(X_val)
    scale = float(np.abs(ref).max())
    for rt in (onnx_rt, joblib_rt):
        rec = rt.reconstruct(X_val)
        assert np.abs(rec.X_hat - ref).max() <= 1e-5 * scale
        np.testing.assert_allclose(rec.scores, est.score_samples(X_val), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(rt.encode(X_val), est.encode(X_val), rtol=1e-4, atol=1e-5 * scale)
    # threshold: the calibration quantile, and at most ~1% of calibration rows above it
    cal = est.score_samples(run.splits.X_cal)
    assert manifest.threshold.value == pytest.approx(float(np.quantile(cal, 0.99, method="higher")), rel=1e-6)
    assert (cal > manifest.threshold.value).mean() <= 0.01 + 1e-9


def test_manifest_sha256_matches_every_file(tmp_path: Path) -> None:
    run, _ = _run("digits", False)
    folder = export_pca_family(KernelPCA(8).fit(run.splits.X_train), run, tmp_path, "k")
    manifest = Manifest.read(folder)
    assert manifest.format == "joblib" and manifest.formats == ["joblib"]
    for entry in manifest.files:
        assert sha256_of(folder / entry.path) == entry.sha256
        assert (folder / entry.path).stat().st_size == entry.bytes
    assert set(os.listdir(folder)) == {"manifest.json", "estimator.joblib"}


def test_failed_verification_publishes_nothing(tmp_path: Path) -> None:
    run, _ = _run("digits", False)
    est = PCA(6, device="cpu").fit(run.splits.X_train)

    def corrupt_writer(e: PCA, folder: Path) -> list[tuple[str, str, str]]:
        e.components_ = e.components_ * 1.01  # graphs written from a different model
        out = write_linear_onnx(e, folder)
        e.components_ = e.components_ / 1.01
        return out

    from training.export import export

    with pytest.raises(ExportError, match="differs from the trained model"):
        export(est, run, tmp_path, "bad", [corrupt_writer], primary_format="onnx")
    assert versions_of(tmp_path, "bad") == []
    assert not any((tmp_path / ".staging").iterdir())


_CRASH = """
import os, sys
from pathlib import Path
import training.publish as publish
from training.cli import main
real = publish.Staging.publish
def crash(self, manifest):
    os._exit(9)   # the process dies after writing every file, before the rename
publish.Staging.publish = crash
main(["fit", "--model", "pca", "--dataset", "digits", "--name", "digits-pca",
      "--models-dir", sys.argv[1], "--n-components", "4"])
"""


def test_crash_mid_export_leaves_the_registry_as_it_was(tmp_path: Path) -> None:
    from training.cli import fit_argv, main

    assert main(fit_argv("pca", "digits", "digits-pca", tmp_path, "--n-components", "4")) == 0
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if ".staging" not in p.parts)
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path)], cwd=ROOT, capture_output=True)
    assert proc.returncode == 9
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if ".staging" not in p.parts)
    assert after == before
    assert versions_of(tmp_path, "digits-pca") == [1]
    # the half-written folder is hidden in .staging, where no reader looks
    assert len(list((tmp_path / ".staging").iterdir())) == 1


def _export_one(models_dir: str) -> str:
    from training.cli import fit_argv, main

    main(fit_argv("pca", "digits", "race", models_dir, "--n-components", "4"))
    return ""


def test_concurrent_exports_get_distinct_versions(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_export_one, args=(str(tmp_path),)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert versions_of(tmp_path, "race") == [1, 2, 3, 4]
    for v in (1, 2, 3, 4):
        manifest = json.loads((tmp_path / "race" / str(v) / "manifest.json").read_text())
        assert manifest["version"] == v
        m = Manifest.read(tmp_path / "race" / str(v))
        for entry in m.files:  # every folder is whole: its files match its own manifest
            assert sha256_of(tmp_path / "race" / str(v) / entry.path) == entry.sha256
