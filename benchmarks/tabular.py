"""Tabular anomaly detection: our served models against PyOD's detectors, side by side, in one run.

The protocol of `../shared/data/adbench/README.md`, for every ADBench-style `.npz` (`X` rows x
features, `y` 1 = anomaly) in a folder:
- at most 20,000 rows (a stratified subsample, seed 0);
- a seeded 60/40 split (`numpy.random.default_rng(0).permutation`);
- columns constant on the 60% part dropped;
- every method fits on the normal rows (y == 0) of the 60% part only and scores the 40% part.

Ours go through the product: the normal training rows are written to a `.npy`, `training.fit`
trains and publishes them into a temporary registry (its own 70/15/15 train / validation /
calibration split, export, parity verification), and the published version is scored by the
service's runtime; `default` is what `fit` trains when given neither a model nor a preset (for
these rows the preset `features`). PyOD's detectors (`pip install -e '.[train,bench]'`) run with
their defaults.
Prints AUROC per set, the mean, the mean rank, the false-positive rate of our threshold on the
normal test rows (calibrated to 1%), fit seconds, scoring rows/s and artifact bytes; `--json`
writes everything.

    .venv/bin/python benchmarks/tabular.py --data-dir ../shared/data/adbench
    .venv/bin/python benchmarks/tabular.py --data-dir DIR --methods tabular,pyod-knn --json out.json
    .venv/bin/python benchmarks/tabular.py --data-dir ../shared/data/adbench \
        --data-dir ../shared/data/adbench-embed --cache peers.json \
        --throughput ../shared/data/adbench/11_donors.npz      # docs/results-tables.md

`--data-dir` repeats (or takes a comma list): one table per folder. `--cache FILE` keeps PyOD's
results by folder/set/method, so that they are computed once (ours are always recomputed).

Not a timed test: timings are one measurement each on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pickle
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latentserve_core.layout import versions_of  # noqa: E402
from latentserve_core.manifest import Manifest  # noqa: E402
from latentserve_core.runtime import RUNTIMES  # noqa: E402
from service.errors import LatentServeError  # noqa: E402
from training.api import fit  # noqa: E402
from training.config import FitConfig  # noqa: E402
from training.errors import TrainingError  # noqa: E402
from training.nn.config import TrainConfig  # noqa: E402
from training.presets import preset  # noqa: E402

MAX_ROWS = 20_000
TEST_SHARE = 0.4
SERVED_ROLES = {"encoder", "decoder", "scorer", "estimator", "reference"}

# our methods: name -> what `training.fit` trains (None: the default for the data's layout)
OURS: dict[str, FitConfig | None] = {
    "default": None,
    "tabular": preset("tabular"),
    "pca": FitConfig("pca"),
    "dense": FitConfig("dense", train=TrainConfig(quiet=True)),
}
PYOD = ("IForest", "KNN", "PCA", "ECOD", "AutoEncoder")
# what one run compares when --methods is not given: ours and the PyOD defaults of issue 21
DEFAULT_METHODS = ("default", "tabular", "pca", "pyod-iforest", "pyod-knn", "pyod-ecod", "pyod-autoencoder")
# with n calibration rows the 0.99 quantile's false-positive rate has a standard error of about
# sqrt(0.01 / n), and below 100 rows the threshold is simply the largest calibration score
MANY_CALIBRATION_ROWS = 100


@dataclass
class Result:
    auroc: float | None  # %, None when the method failed on this set
    fit_s: float
    rows_per_s: float
    artifact_bytes: int
    fpr: float | None = None  # ours: share of normal test rows above the calibrated threshold
    n_calibration: int = 0  # ours: calibration rows behind that threshold
    error: str | None = None


def load_protocol(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normal training rows, test rows, test labels) of one .npz, as the shared README defines them."""
    with np.load(path, allow_pickle=False) as data:
        X = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"]).astype(np.int64).ravel()
    if len(X) > MAX_ROWS:
        rng = np.random.default_rng(0)
        keep = []
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            keep.append(rng.choice(rows, round(len(rows) * MAX_ROWS / len(X)), replace=False))
        idx = np.sort(np.concatenate(keep))
        X, y = X[idx], y[idx]
    order = np.random.default_rng(0).permutation(len(X))
    n_train = int((1 - TEST_SHARE) * len(X))
    train, test = order[:n_train], order[n_train:]
    varying = X[train].std(axis=0) > 0
    X = X[:, varying]
    return X[train][y[train] == 0], X[test], y[test]


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return 100.0 * float(roc_auc_score(y, scores))


def run_ours(config: FitConfig | None, X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> Result:
    """fit -> publish -> score through the service's runtime."""
    with tempfile.TemporaryDirectory(prefix="tabular-") as tmp:
        data = Path(tmp) / "train.npy"
        np.save(data, X_train.astype(np.float32))
        registry = Path(tmp) / "models"
        t0 = time.perf_counter()
        fit(config, data, name="m", models_dir=registry)
        fit_s = time.perf_counter() - t0
        version = versions_of(registry, "m")[-1]
        folder = registry / "m" / str(version)
        manifest = Manifest.read(folder)
        runtime = RUNTIMES[manifest.format].load(manifest, folder)
        rows = runtime.check_inputs(X_test.astype(np.float32))
        runtime.compute("scores", rows[:64])  # warm: the figure is a serving figure, not a first call
        t0 = time.perf_counter()
        (scores,) = runtime.compute("scores", rows)
        score_s = time.perf_counter() - t0
        size = sum(f.bytes for f in manifest.files if f.role in SERVED_ROLES and f.format == manifest.format)
        size += sum(f.bytes for f in manifest.files if f.role == "reference")
        normal = y_test == 0
        fpr = float(np.mean(scores[normal] > manifest.threshold.value)) if normal.any() else math.nan
        rate = len(rows) / max(score_s, 1e-9)
        return Result(auroc(y_test, scores), fit_s, rate, size, fpr, manifest.threshold.n_calibration)


def throughput(config: FitConfig | None, path: Path, rounds: int = 3) -> tuple[int, float]:
    """(rows, best rows/s) of our runtime on one thread scoring every row of the .npz at `path`
    (all of donors' 619,326), after `fit` on the protocol's training rows."""
    X_train, _, _ = load_protocol(path)
    with np.load(path, allow_pickle=False) as data:
        X = np.asarray(data["X"], dtype=np.float32)
    if X.shape[1] != X_train.shape[1]:
        raise ValueError(f"{path.name}: the protocol dropped constant columns; pick a set without any")
    with tempfile.TemporaryDirectory(prefix="tabular-") as tmp:
        np.save(Path(tmp) / "train.npy", X_train.astype(np.float32))
        fit(config, Path(tmp) / "train.npy", name="m", models_dir=Path(tmp) / "models")
        folder = Path(tmp) / "models" / "m" / "1"
        manifest = Manifest.read(folder)
        runtime = RUNTIMES[manifest.format].load(manifest, folder, threads=1)
        rows = runtime.check_inputs(X)
        runtime.compute("scores", rows[:1024])
        best = math.inf
        for _ in range(rounds):
            t0 = time.perf_counter()
            runtime.compute("scores", rows)
            best = min(best, time.perf_counter() - t0)
    return len(rows), len(rows) / best


def pyod_detector(name: str) -> Callable[[], Any]:
    """PyOD's detector `name` with its defaults (seeded where it takes a seed)."""
    if name == "IForest":
        from pyod.models.iforest import IForest

        return lambda: IForest(random_state=0)
    if name == "KNN":
        from pyod.models.knn import KNN

        return lambda: KNN()
    if name == "PCA":
        from pyod.models.pca import PCA

        return lambda: PCA(random_state=0)
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return lambda: ECOD()
    from pyod.models.auto_encoder import AutoEncoder

    return lambda: AutoEncoder(random_state=0, verbose=0)


def run_pyod(name: str, X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> Result:
    make = pyod_detector(name)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = make().fit(X_train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = det.decision_function(X_test)
        score_s = time.perf_counter() - t0
    try:
        size = len(pickle.dumps(det))
    except Exception:  # a detector holding a torch module may not pickle; its size is then unknown
        size = -1
    return Result(auroc(y_test, np.asarray(scores)), fit_s, len(X_test) / max(score_s, 1e-9), size)


def mean_ranks(table: dict[str, dict[str, Result]], sets: list[str]) -> dict[str, float]:
    """Mean rank per method (1 = best AUROC on a set; ties share the mean rank; a failure ranks last)."""
    from scipy.stats import rankdata

    methods = list(table)
    totals = dict.fromkeys(methods, 0.0)
    for s in sets:
        values = [table[m][s].auroc for m in methods]
        keyed = [-(v if v is not None else -1.0) for v in values]
        for m, r in zip(methods, rankdata(keyed), strict=True):
            totals[m] += float(r)
    return {m: totals[m] / len(sets) for m in methods}


def short_name(stem: str) -> str:
    """A column title of at most 9 characters: the set's name without its number; of an embedding
    set (`ResNet18-MVTec-AD_bottle`), what follows the backbone."""
    name = stem.split("_", 1)[-1]
    if "_" in name and "-" in name:
        name = name.rsplit("-", 1)[-1]  # CIFAR10_0, AD_bottle
        if not name.rsplit("_", 1)[-1].isdigit():
            name = name.rsplit("_", 1)[-1]  # the class name alone: bottle
    return name[:9]


def print_tables(table: dict[str, dict[str, Result]], sets: list[str]) -> None:
    ranks = mean_ranks(table, sets)
    short = [short_name(s) for s in sets]
    print("| method | " + " | ".join(short) + " | mean | sets | mean rank |")
    print("|" + "---|" * (len(sets) + 4))
    for m, row in table.items():
        ok = [row[s].auroc for s in sets if row[s].auroc is not None]
        cells = " | ".join("fail" if row[s].auroc is None else f"{row[s].auroc:.1f}" for s in sets)
        mean = sum(ok) / len(ok) if ok else math.nan  # type: ignore[arg-type]
        print(f"| {m} | {cells} | **{mean:.1f}** | {len(ok)}/{len(sets)} | {ranks[m]:.2f} |")
    print()
    print("| method | fit s (sum) | scoring rows/s (median) | artifact bytes (median / max) | FPR |")
    print("|---|---|---|---|---|")
    for m, row in table.items():
        res = [row[s] for s in sets]
        fits = sum(r.fit_s for r in res)
        rate = float(np.median([r.rows_per_s for r in res if r.auroc is not None] or [math.nan]))
        sizes = [r.artifact_bytes for r in res if r.artifact_bytes >= 0]
        size = f"{int(np.median(sizes)):,} / {max(sizes):,}" if sizes else "n/a"
        fprs = [r.fpr for r in res if r.fpr is not None and not math.isnan(r.fpr)]
        big = [r.fpr for r in res if r.fpr is not None and r.n_calibration >= MANY_CALIBRATION_ROWS]
        fpr = f"mean {np.mean(fprs):.4f}; {np.mean(big):.4f} on the {len(big)} sets" if fprs and big else ""
        fpr += f" with >= {MANY_CALIBRATION_ROWS} calibration rows" if fpr else ""
        print(f"| {m} | {fits:.1f} | {rate:,.0f} | {size} | {fpr} |")
    ours = [m for m in table if m in OURS]
    if ours:
        print()
        print("False-positive rate on the normal test rows at the 0.99 threshold (calibration rows):")
        print("| method | " + " | ".join(short) + " |")
        print("|" + "---|" * (len(sets) + 1))
        for m in ours:
            cells = " | ".join(
                "" if table[m][s].fpr is None else f"{table[m][s].fpr:.3f} ({table[m][s].n_calibration})"
                for s in sets
            )
            print(f"| {m} | {cells} |")


def load_cache(path: Path | None) -> dict[str, dict[str, Any]]:
    """Peer results of earlier runs, keyed by `folder/set/method` (empty when there is no file)."""
    if path is None or not path.is_file():
        return {}
    loaded: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def run_folder(
    folder: Path, methods: list[str], cache: dict[str, dict[str, Any]], cache_path: Path | None
) -> tuple[dict[str, dict[str, Result]], list[str]]:
    """Every method on every .npz of `folder`; PyOD's results come from / go to the cache."""
    files = sorted(folder.glob("*.npz"))
    sets = [f.stem for f in files]
    table: dict[str, dict[str, Result]] = {m: {} for m in methods}
    for f in files:
        loaded: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        for m in methods:
            key = f"{folder.name}/{f.stem}/{m}"
            if m not in OURS and key in cache:
                table[m][f.stem] = Result(**cache[key])
                continue
            if loaded is None:
                loaded = load_protocol(f)
            X_train, X_test, y_test = loaded
            try:
                if m in OURS:
                    res = run_ours(OURS[m], X_train, X_test, y_test)
                else:
                    pyod_name = next(n for n in PYOD if f"pyod-{n.lower()}" == m)
                    res = run_pyod(pyod_name, X_train, X_test, y_test)
            except (LatentServeError, TrainingError, ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
                message = exc.message if isinstance(exc, LatentServeError) else str(exc)
                res = Result(None, 0.0, 0.0, -1, error=message.splitlines()[0][:300])
            table[m][f.stem] = res
            if m not in OURS and cache_path is not None:
                cache[key] = asdict(res)
                cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            shown = "FAILED: " + (res.error or "") if res.auroc is None else f"AUROC {res.auroc:.1f}"
            print(f"{f.stem} {m}: {shown} (fit {res.fit_s:.1f} s)", file=sys.stderr, flush=True)
    return table, sets


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--data-dir",
        action="append",
        required=True,
        help="folder of ADBench-style .npz files; repeat it (or give a comma list) for one table per folder",
    )
    names = [*OURS, *(f"pyod-{n.lower()}" for n in PYOD)]
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated subset of {names}")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this file")
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="JSON file of PyOD's results by folder/set/method: read when present, written as they come",
    )
    p.add_argument(
        "--throughput",
        type=Path,
        default=None,
        help="also time our methods scoring every row of this .npz on one thread (e.g. 11_donors.npz)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in names]
    if unknown:
        p.error(f"unknown methods {unknown}; expected some of {names}")
    try:
        import pyod  # noqa: F401
    except ImportError:
        skipped = [m for m in methods if m not in OURS]
        if skipped:
            print(f"PyOD is not installed (pip install -e '.[bench]'): skipping {skipped}", file=sys.stderr)
        methods = [m for m in methods if m in OURS]
    folders = [Path(d) for arg in args.data_dir for d in arg.split(",") if d]
    for folder in folders:
        if not any(folder.glob("*.npz")):
            p.error(f"no .npz files in {folder}")
    cache = load_cache(args.cache)
    out: dict[str, Any] = {}
    for folder in folders:
        table, sets = run_folder(folder, methods, cache, args.cache)
        print(f"## {folder.name} ({len(sets)} sets)\n")
        print_tables(table, sets)
        print()
        out[folder.name] = {
            "sets": sets,
            "results": {m: {s: asdict(r) for s, r in row.items()} for m, row in table.items()},
        }
    if args.throughput is not None:
        print(f"## scoring every row of {args.throughput.name} on one thread\n")
        print("| method | rows | rows/s (best of 3) |\n|---|---|---|")
        for m in [m for m in methods if m in OURS]:
            n, rate = throughput(OURS[m], args.throughput)
            print(f"| {m} | {n:,} | {rate:,.0f} |")
            out.setdefault("throughput", {})[m] = {"rows": n, "rows_per_s": rate}
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
