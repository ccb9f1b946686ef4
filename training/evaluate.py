"""`python -m training evaluate`: detection quality of a published version, scored by the service's runtime.

The rows scored are ones the model never trained on:
- data sets with a test split (mnist, fashion-mnist): the whole test split;
- the others (digits, breast-cancer, ...): the manifest's seeded split is re-created and every row
  outside its train and calibration parts is scored, i.e. the validation rows of the trained
  classes plus every row of the other classes. Calibration rows are left out because they set the
  threshold: the false-positive rate on them is 1 - quantile by construction.

Rows whose label is not among the normal classes (default: the manifest's `data.classes`) are the
anomalies (the positive class). The report holds AUROC and average precision (scikit-learn), the
precision / recall / F1 of the model's own threshold, and the false-positive rate on normal rows
at that threshold next to the rate the calibration promised (1 - quantile). A JSON report and a ROC
curve PNG go into `<version>/evaluations/`, a folder the manifest does not list: the version's
artifacts and their sha256 stay as published.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from latentserve_core.layout import model_names, parse_ref, read_manifest, versions_of
from latentserve_core.manifest import Manifest
from latentserve_core.runtime import RUNTIMES, ModelRuntime
from training.config import MODELS_DIR
from training.data import F32, Dataset, load_dataset, split
from training.errors import EvaluationError

REPORTS_DIR = "evaluations"
BATCH = 2048
Bools = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Rows:
    """Rows to score: X (n, *shape), their labels y (n,), and which of them are anomalies."""

    X: F32
    y: I64
    is_anomaly: Bools
    description: str


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", required=True, help="NAME or NAME:VERSION (default: the newest version)")
    p.add_argument("--dataset", required=True, help="digits, breast-cancer, mnist, fashion-mnist, or a path")
    p.add_argument(
        "--normal-classes",
        type=_class_list,
        default=None,
        help="labels that count as normal, e.g. 3 or 0,8 (default: the classes the model trained on)",
    )
    p.add_argument(
        "--label-column",
        default=None,
        help=".csv / .parquet: the column of integer labels (default: the one the model trained with)",
    )
    p.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the IDX .gz files")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a joblib-only model (unpickling runs code from the file: trusted models only)",
    )
    p.add_argument("--no-download", dest="download", action="store_false", help="never download data")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _class_list(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3 or 0,8, got {text!r}"
        ) from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one class, got {text!r}")
    return out


# ---- loading -----------------------------------------------------------------------------------
def resolve_version(models_dir: Path, ref: str) -> tuple[Manifest, Path]:
    """The manifest and folder of NAME[:VERSION] (default: the newest version)."""
    name, version = parse_ref(ref)
    versions = versions_of(models_dir, name)
    if not versions:
        raise EvaluationError(
            f"no model {name!r} in {models_dir}; available: {model_names(models_dir) or 'none'}"
        )
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise EvaluationError(f"model {name!r} has no version {version}; available versions: {versions}")
    return read_manifest(models_dir, name, version), models_dir / name / str(version)


def load_runtime(manifest: Manifest, folder: Path, *, allow_pickle: bool = False) -> ModelRuntime:
    """The runtime the service would serve: ONNX when the version has it, joblib only when allowed."""
    fmt = manifest.serving_order[0]
    if fmt == "joblib" and not allow_pickle:
        raise EvaluationError(
            f"model {manifest.name!r} version {manifest.version} is a joblib (pickle) artifact only; "
            "pass --allow-pickle to load it (unpickling runs code from the file)"
        )
    return RUNTIMES[fmt].load(manifest, folder)


def _training_rows(manifest: Manifest, ds: Dataset) -> npt.NDArray[np.intp]:
    """Indices into ds.X of the rows the model trained or was calibrated on (the seeded split)."""
    assert ds.y is not None
    classes = manifest.data.classes
    kept = np.flatnonzero(np.isin(ds.y, classes)) if classes else np.arange(len(ds.y))
    # split the row indices exactly as `fit` split the rows (same seed, same fractions)
    sp = split(cast(F32, kept), None, seed=manifest.data.seed)
    n_train, n_val, n_cal = len(sp.X_train), len(sp.X_val), len(sp.X_cal)
    d = manifest.data
    if (n_train, n_val, n_cal) != (d.rows_train, d.rows_validation, d.rows_calibration):
        raise EvaluationError(
            f"cannot re-create the training split of {manifest.name!r} version {manifest.version}: the "
            f"manifest says {d.rows_train}/{d.rows_validation}/{d.rows_calibration} train/validation/"
            f"calibration rows, seed {d.seed} gives {n_train}/{n_val}/{n_cal}"
        )
    return np.concatenate([sp.X_train, sp.X_cal]).astype(np.intp)


def evaluation_rows(manifest: Manifest, ds: Dataset, normal_classes: list[int]) -> Rows:
    """The rows to score (see the module docstring) and which of them are anomalies."""
    if ds.X_test is not None and ds.y_test is not None:
        X, y = ds.X_test, ds.y_test
        what = f"the {ds.name} test split ({len(X)} rows)"
    elif ds.y is None:
        table = Path(ds.source).suffix.lower() in (".csv", ".parquet")
        hint = "; name its column of labels with --label-column NAME" if table else ""
        raise EvaluationError(f"{ds.name}: evaluate needs a labelled data set; this one has no labels{hint}")
    elif ds.name == manifest.data.dataset:
        keep = np.ones(len(ds.y), dtype=bool)
        keep[_training_rows(manifest, ds)] = False
        X, y = ds.X[keep], ds.y[keep]
        what = (
            f"{len(X)} {ds.name} rows outside the model's train and calibration splits "
            f"(seed {manifest.data.seed}): validation rows of its classes and every row of the others"
        )
    else:
        X, y = ds.X, ds.y
        what = f"every {ds.name} row ({len(X)}; the model was trained on {manifest.data.dataset})"
    known = sorted(set(y.tolist()))
    unknown = [c for c in normal_classes if c not in known]
    if unknown:
        raise EvaluationError(f"{ds.name}: normal classes {unknown} do not occur; labels are {known}")
    is_anomaly = ~np.isin(y, normal_classes)
    if is_anomaly.all() or not is_anomaly.any():
        raise EvaluationError(
            f"{ds.name}: with normal classes {normal_classes} the rows hold "
            f"{int(is_anomaly.sum())} anomalies and {int((~is_anomaly).sum())} normal rows; both are "
            "needed (pass --normal-classes to say which labels are normal)"
        )
    return Rows(X=X, y=y, is_anomaly=is_anomaly, description=what)


# ---- scoring -----------------------------------------------------------------------------------
def score_rows(runtime: ModelRuntime, X: F32, batch: int = BATCH) -> F32:
    """Anomaly scores (n,) through the runtime, in batches."""
    parts = [runtime.reconstruct(X[i : i + batch]).scores for i in range(0, len(X), batch)]
    return np.concatenate(parts).astype(np.float32)


def detection_report(scores: F32, is_anomaly: Bools, threshold: float, quantile: float) -> dict[str, Any]:
    """AUROC, average precision, precision / recall / F1 and FPR at `threshold` (anomaly = positive)."""
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    predicted = scores > threshold  # as the service decides: scores above the threshold
    precision, recall, f1, _ = precision_recall_fscore_support(
        is_anomaly, predicted, average="binary", zero_division=0
    )
    normal = ~is_anomaly
    expected = 1.0 - quantile
    n_normal = int(normal.sum())
    return {
        "auroc": float(roc_auc_score(is_anomaly, scores)),
        "average_precision": float(average_precision_score(is_anomaly, scores)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "fpr_at_threshold": float(predicted[normal].mean()),
        "expected_fpr": float(expected),
        # binomial standard error of the FPR on this many normal rows if the promise holds
        "fpr_standard_error": math.sqrt(expected * (1.0 - expected) / max(n_normal, 1)),
        "threshold": float(threshold),
        "n_rows": len(scores),
        "n_normal": n_normal,
        "n_anomalies": int(is_anomaly.sum()),
    }


def roc_png(scores: F32, is_anomaly: Bools, report: dict[str, Any], path: Path, title: str) -> None:
    """Write the ROC curve with the threshold's operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(is_anomaly, scores)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot(fpr, tpr, lw=1.5, label=f"AUROC {report['auroc']:.4f}")
    ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=1)
    ax.scatter(
        [report["fpr_at_threshold"]],
        [report["recall"]],
        c="red",
        zorder=3,
        label=f"threshold {report['threshold']:.4g} (q={1 - report['expected_fpr']:g})",
    )
    ax.set(xlabel="false-positive rate (normal rows)", ylabel="true-positive rate (anomalies)", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_report(
    folder: Path, dataset: str, report: dict[str, Any], scores: F32, is_anomaly: Bools
) -> tuple[Path, Path]:
    """Write `<folder>/evaluations/<dataset>-<UTC time>.json` and `.png` (not listed in the manifest)."""
    out = folder / REPORTS_DIR
    out.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("._") or "data"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    base = out / f"{stem}-{stamp}"
    json_path, png_path = base.with_suffix(".json"), base.with_suffix(".png")
    title = f"{report['model']}:{report['version']} on {report['dataset']}"
    _atomic_write(png_path, lambda p: roc_png(scores, is_anomaly, report, p, title))
    _atomic_write(json_path, lambda p: p.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8"))
    return json_path, png_path


def evaluate(
    models_dir: Path,
    ref: str,
    dataset: str,
    *,
    normal_classes: list[int] | None = None,
    data_dir: Path | None = None,
    allow_pickle: bool = False,
    download: bool = True,
    save: bool = True,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Score the held-out rows with the served artifact and return (and save) the report.

    A .csv / .parquet table's features are picked by the manifest's feature names (any column
    order), its labels from `label_column` (default: the column the model trained with)."""
    manifest, folder = resolve_version(models_dir, ref)
    runtime = load_runtime(manifest, folder, allow_pickle=allow_pickle)
    table = Path(dataset).suffix.lower() in (".csv", ".parquet")
    names = manifest.input.feature_names if table else None
    ds = load_dataset(
        dataset,
        data_dir=data_dir,
        seed=manifest.data.seed,
        download=download,
        columns=names,
        label_column=(label_column or manifest.data.label_column) if table else label_column,
    )
    normal = list(normal_classes) if normal_classes else manifest.data.classes
    if not normal:
        raise EvaluationError(
            f"model {manifest.name!r} version {manifest.version} was trained on every class; "
            "pass --normal-classes to say which labels are normal"
        )
    rows = evaluation_rows(manifest, ds, normal)
    scores = score_rows(runtime, rows.X)
    report: dict[str, Any] = {
        "model": manifest.name,
        "version": manifest.version,
        "kind": manifest.kind,
        "format": runtime.format,
        "dataset": ds.name,
        "normal_classes": normal,
        "rows": rows.description,
        **detection_report(scores, rows.is_anomaly, manifest.threshold.value, manifest.threshold.quantile),
        "created_at": datetime.now(timezone.utc).isoformat(),
    }
    if save:
        json_path, png_path = save_report(folder, ds.name, report, scores, rows.is_anomaly)
        report["files"] = [str(json_path), str(png_path)]
    return report


def run_evaluate(args: argparse.Namespace) -> None:
    """The `evaluate` subcommand: print the report (text or one JSON object)."""
    report = evaluate(
        args.models_dir,
        args.name,
        args.dataset,
        normal_classes=list(args.normal_classes) if args.normal_classes else None,
        data_dir=args.data_dir,
        allow_pickle=args.allow_pickle,
        download=args.download,
        label_column=args.label_column,
    )
    if args.json:
        print(json.dumps(report))
        return
    r = report
    print(f"{r['model']}:{r['version']} ({r['kind']}, {r['format']}) on {r['rows']}")
    print(f"normal classes {r['normal_classes']}: {r['n_normal']} normal rows, {r['n_anomalies']} anomalies")
    print(f"AUROC              {r['auroc']:.4f}")
    print(f"average precision  {r['average_precision']:.4f}")
    print(
        f"at threshold {r['threshold']:.4g}: precision {r['precision']:.4f}  recall {r['recall']:.4f}  "
        f"F1 {r['f1']:.4f}"
    )
    print(
        f"false-positive rate on normal rows {r['fpr_at_threshold']:.4f}; the calibration promised "
        f"{r['expected_fpr']:.4f} (± {r['fpr_standard_error']:.4f} binomial s.e.)"
    )
    for path in r.get("files", []):
        print(path)
