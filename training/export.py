"""Export a fitted model into the registry: write artifacts, describe them, verify, publish.

Verification loads every written format through the service's own runtimes and compares their
reconstructions and scores with the in-memory model; any mismatch aborts the export and nothing
is published.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from latentserve_core.manifest import (
    DataSummary,
    EpochRecord,
    FileEntry,
    InputSpec,
    Manifest,
    Metrics,
    Preprocessing,
)
from latentserve_core.runtime import RUNTIMES
from latentserve_core.runtime.base import Detail, row_scores
from latentserve_core.runtime.rotation import RotationTerm
from training.base import F32, ReconstructionEstimator, allowed_difference
from training.calibration import calibrate
from training.config import ScoreConfig
from training.data import Dataset, Splits
from training.errors import ExportError
from training.publish import Staging

# (role, file name, format) of each artifact a writer produced in the staging folder
Written = list[tuple[str, str, str]]
Writer = Callable[[ReconstructionEstimator, Path], Written]


@dataclass
class TrainingRun:
    """What a model was trained on and how; becomes the manifest's data and metric fields."""

    dataset: Dataset
    splits: Splits
    seed: int
    classes: list[int] | None = None
    quantile: float = ScoreConfig.quantile
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    history: list[EpochRecord] = field(default_factory=list)
    _scores: dict[str, F32] = field(default_factory=dict, init=False, repr=False, compare=False)

    def scores(self, est: ReconstructionEstimator, part: Literal["train", "val", "cal"]) -> F32:
        """Per-row scores of one split under the estimator being exported: the manifest and the
        pictures both need them, so each is computed once per `export` (which clears them)."""
        if part not in self._scores:
            X = {"train": self.splits.X_train, "val": self.splits.X_val, "cal": self.splits.X_cal}[part]
            self._scores[part] = est.score_samples(X)
        return self._scores[part]


def framework_versions(*packages: str) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "onnx", "onnxruntime", "scikit-learn", *packages):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_joblib(est: ReconstructionEstimator, folder: Path) -> Written:
    """Pickle the fitted scikit-learn estimator (transform / inverse_transform)."""
    import joblib

    to_sklearn = getattr(est, "to_sklearn", None)
    if to_sklearn is None:
        raise ExportError(f"{type(est).__name__} has no scikit-learn form to pickle")
    joblib.dump(to_sklearn(), folder / "estimator.joblib")
    return [("estimator", "estimator.joblib", "joblib")]


def write_linear_onnx(est: ReconstructionEstimator, folder: Path) -> Written:
    """Encoder, decoder and fused scorer graphs of a linear codec (PCA family)."""
    from training.onnx_linear import build_linear_graphs, save
    from training.pca import LinearCodec

    if not isinstance(est, LinearCodec):
        raise ExportError(f"{type(est).__name__} is not a linear codec; it has no linear ONNX form")
    reference = getattr(est, "reference_codes_", None)
    graphs = build_linear_graphs(
        est.center_,
        est.scale_,
        est.components_,
        est.input_shape_,
        est.score_spec_,
        reference,
        getattr(est, "detail_", None),
        _rotation_model(est),
    )
    out: Written = []
    for role, model in graphs.items():
        save(model, folder / f"{role}.onnx")
        out.append((role, f"{role}.onnx", "onnx"))
    return out


def _rotation_model(est: ReconstructionEstimator) -> bytes | None:
    """The ONNX model of the estimator's rotation term, when its score has one."""
    if est.score_spec_.rotation is None:
        return None
    term: RotationTerm = est.rotation_  # type: ignore[attr-defined]
    return term.model


def write_rotation(est: ReconstructionEstimator, folder: Path) -> Written:
    """A rotation term's network, as the ONNX model its numpy scorer runs (flat rows -> the term)."""
    model, spec = _rotation_model(est), est.score_spec_.rotation
    if model is None or spec is None:
        return []
    (folder / spec.file).write_bytes(model)
    return [("rotation", spec.file, "onnx")]


def write_reference(est: ReconstructionEstimator, folder: Path) -> Written:
    """The reference codes of a neighbors score, as float32 (R, latent_dim) .npy."""
    nb = est.score_spec_.neighbors
    if nb is None:
        return []
    np.save(folder / nb.file, np.ascontiguousarray(est.reference_codes_, dtype=np.float32))  # type: ignore[attr-defined]
    return [("reference", nb.file, "npy")]


def write_detail(est: ReconstructionEstimator, folder: Path) -> Written:
    """A detail term's directions, float32 (m, d), and with neighbors their reference codes (R, m)."""
    spec = est.score_spec_.detail
    if spec is None:
        return []
    detail: Detail = est.detail_  # type: ignore[attr-defined]
    np.save(folder / spec.file, detail.components)
    out: Written = [("detail", spec.file, "npy")]
    if spec.reference_file is not None and detail.reference is not None:
        np.save(folder / spec.reference_file, detail.reference)
        out.append(("reference", spec.reference_file, "npy"))
    return out


def _tabulate(values: Any) -> list[float] | None:
    if values is None:
        return None
    return [float(v) for v in np.asarray(values).ravel()]


def _clean_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        if v is None or isinstance(v, (str, int, float, bool)):
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(i, int) for i in v):
            out[k] = list(v)
        else:
            out[k] = str(v)
    return out


def build_manifest(
    est: ReconstructionEstimator,
    run: TrainingRun,
    name: str,
    kind: str,
    files: list[FileEntry],
    primary_format: str,
    **fields: Any,
) -> Manifest:
    """Describe the staged version (version 1 is a placeholder; publishing assigns the real one)."""
    sp = run.splits
    cal_scores = run.scores(est, "cal")
    ds = run.dataset
    standardized = est.score_spec_.scale is not None
    k = est.latent_dim_
    lo = float(min(sp.X_train.min(), sp.X_val.min(), sp.X_cal.min()))
    hi = float(max(sp.X_train.max(), sp.X_val.max(), sp.X_cal.max()))
    return Manifest.model_validate(
        {
            "name": name,
            "version": 1,
            "kind": kind,
            "format": primary_format,
            "files": files,
            "input": InputSpec(
                shape=list(est.input_shape_),
                value_range=(lo, hi),
                layout=ds.layout,
                channels=ds.channels,
                feature_names=_feature_names(ds),
            ),
            "preprocessing": Preprocessing(
                kind="standardize" if standardized else "none",
                description=(
                    "per-feature standardisation (training mean and std) folded into the graphs; "
                    "send raw values"
                    if standardized
                    else "none: send values in the training range"
                ),
            ),
            "latent_dim": k,
            "data": DataSummary(
                dataset=ds.name,
                rows_train=len(sp.X_train),
                rows_validation=len(sp.X_val),
                rows_calibration=len(sp.X_cal),
                classes=run.classes,
                seed=run.seed,
                label_column=ds.label_column,
            ),
            "metrics": _metrics(est, run),
            "score": est.score_spec_,
            "threshold": calibrate(cal_scores, run.quantile),
            "hyperparameters": _clean_params({**est.hyperparameters(), **run.hyperparameters}),
            "frameworks": framework_versions("torch"),
            "created_at": datetime.now(timezone.utc),
            **fields,
        }
    )


def _metrics(est: ReconstructionEstimator, run: TrainingRun) -> Metrics:
    """The mean scores of the training and validation rows, the training history, and for the
    PCA family the variance the kept components explain."""
    metrics: dict[str, Any] = {
        "train_error": float(run.scores(est, "train").mean()),
        "validation_error": float(run.scores(est, "val").mean()),
        "history": run.history,
    }
    ratios = getattr(est, "explained_variance_ratio_", None)
    k = est.latent_dim_
    if ratios is not None:
        metrics["explained_variance"] = _tabulate(est.explained_variance_[:k])  # type: ignore[attr-defined]
        metrics["explained_variance_ratio"] = _tabulate(ratios[:k])
        metrics["explained_variance_ratio_total"] = float(np.sum(ratios[:k]))
    return Metrics.model_validate(metrics)


def _feature_names(ds: Dataset) -> list[str] | None:
    """The data's column names when there is one per value of a row (CSV / parquet headers)."""
    names = ds.feature_names
    return list(names) if names and len(names) == ds.X[0].size else None


def verify(
    manifest: Manifest,
    folder: Path,
    est: ReconstructionEstimator,
    X: F32,
    *,
    rtol: float = 1e-5,
    atol: float = 0.0,
) -> dict[str, float]:
    """Load each format through the service runtimes and compare with the in-memory model.

    Passes when max |runtime - model| <= atol + rtol * max |model| for reconstructions, and for
    scores when it is <= atol + rtol * (max |model score| + the largest score a zero reconstruction
    would get): float32 rounds X and X_hat at ~6e-8 of their size, so the error of a score scales
    with the inputs' own size in score units, not with the score (which is ~0 when the model
    reconstructs almost perfectly). Returns the max abs differences per format.
    """
    ref_hat = est.reconstruct(X)
    ref_scores = est.score_samples(X)
    plain = est.score_spec_.model_copy(update={"neighbors": None, "detail": None, "rotation": None})
    input_scale = float(np.max(row_scores(X, np.zeros_like(X), plain))) if len(X) else 0.0
    diffs: dict[str, float] = {}
    for fmt in manifest.formats:
        runtime = RUNTIMES[fmt].load(manifest, folder)
        rec = runtime.reconstruct(X)
        for what, got, ref in (("reconstruction", rec.X_hat, ref_hat), ("scores", rec.scores, ref_scores)):
            diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
            bound = allowed_difference(ref, atol=atol, rtol=rtol)
            if what == "scores":
                bound += rtol * input_scale
            if not diff <= bound:
                raise ExportError(
                    f"export of {manifest.name!r}: the {fmt} {what} differs from the trained model by "
                    f"{diff:.3g} (allowed {bound:.3g}); nothing was published"
                )
            diffs[f"{fmt}_{what}_max_abs_diff"] = max(diff, diffs.get(f"{fmt}_{what}_max_abs_diff", 0.0))
    return diffs


def export(
    est: ReconstructionEstimator,
    run: TrainingRun,
    models_dir: Path,
    name: str,
    writers: list[Writer],
    *,
    primary_format: str,
    rtol: float = 1e-5,
    atol: float = 0.0,
    **manifest_fields: Any,
) -> Path:
    """Write, describe, verify and publish; return the new version folder."""
    run._scores.clear()  # scores of whatever this run exported before
    with Staging(models_dir, name) as stage:
        written: Written = []
        for writer in writers:
            written += writer(est, stage.path)
        files = [stage.file_entry(role, fname, fmt) for role, fname, fmt in written]
        manifest = build_manifest(est, run, name, est.kind, files, primary_format, **manifest_fields)
        X_check = run.splits.X_val[:256]
        verify(manifest, stage.path, est, X_check, rtol=rtol, atol=atol)
        return stage.publish(manifest)


def export_pca_family(est: ReconstructionEstimator, run: TrainingRun, models_dir: Path, name: str) -> Path:
    """Linear PCA models: ONNX graphs and the scikit-learn joblib; kernel PCA: joblib only."""
    if est.kind == "kernel-pca":
        writers: list[Writer] = [write_joblib, write_reference, write_detail, write_rotation]
        return export(est, run, models_dir, name, writers, primary_format="joblib")
    writers = [write_linear_onnx, write_joblib, write_reference, write_detail, write_rotation]
    return export(est, run, models_dir, name, writers, primary_format="onnx")
