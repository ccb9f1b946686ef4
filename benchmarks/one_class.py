"""One-class anomaly detection on image data (the protocol of Ruff et al. 2018, Deep SVDD, Table 1).

For each class c: train only on the training images of class c, score the whole test split, normal
= c, anomaly = every other class; report AUROC (in %) per class and the mean. Every model goes
through the product: `training.fit` into a temporary registry (export and verification
included), then `training.evaluate`, which loads the published ONNX with the service's runtime.

    .venv/bin/python benchmarks/one_class.py --data-dir /work/shared/data/mnist --classes 0,1
    .venv/bin/python benchmarks/one_class.py --models pca-16,one-class-pca --json results.json
    .venv/bin/python benchmarks/one_class.py --models default --dataset path/to/images.npz

`--dataset` is mnist, fashion-mnist or any labelled image set `fit` reads (a .npz of x_train /
y_train / x_test / y_test); `--classes` defaults to every label of the training rows. `default` is
what `fit` trains on images with no model and no preset (`training.presets.default_config("image")`).

Prints a table (rows: models, columns: classes and mean) with the published anchors beside ours.
Not a timed test: a full run trains (models x classes) models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.errors import LatentServeError  # noqa: E402
from training.api import fit, fitters  # noqa: E402
from training.config import DataConfig, FitConfig, PCAConfig  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.errors import TrainingError  # noqa: E402
from training.evaluate import evaluate  # noqa: E402
from training.nn.config import NN_KINDS, NetConfig, TrainConfig  # noqa: E402
from training.presets import PRESETS, default_config, preset  # noqa: E402

# model -> what `training.fit` trains (a preset name trains that preset); the autoencoders train
# few epochs so that a CPU run stays in minutes (training.nn)
_NET = TrainConfig(epochs=15, batch_size=64, quiet=True)
_CONV = NetConfig(channels=(16, 32, 64), activation="relu")
MODELS: dict[str, FitConfig] = {
    "pca-8": FitConfig("pca", pca=PCAConfig(n_components=8)),
    "pca-16": FitConfig("pca", pca=PCAConfig(n_components=16)),
    "pca-32": FitConfig("pca", pca=PCAConfig(n_components=32)),
    "dense": FitConfig(
        "dense", latent_dim=32, net=NetConfig(hidden=(256, 64), activation="relu"), train=_NET
    ),
    "conv": FitConfig("conv", latent_dim=32, net=_CONV, train=_NET),
    "denoising": FitConfig(
        "denoising", latent_dim=32, net=dataclasses.replace(_CONV, base="conv", noise=0.2), train=_NET
    ),
    "linear": FitConfig("linear", latent_dim=32, train=_NET),
    "vae": FitConfig("vae", latent_dim=16, net=NetConfig(hidden=(256,), activation="relu"), train=_NET),
    "lstm": FitConfig("lstm", latent_dim=32, net=NetConfig(hidden=(64,)), train=_NET),
    **{name: preset(name) for name in PRESETS},
    "default": default_config("image"),
}
DEFAULT_MODELS = [
    "pca-8",
    "pca-16",
    "pca-32",
    "dense",
    "conv",
    "denoising",
    "linear",
    "vae",
    "lstm",
    *PRESETS,
    "default",
]

# AUROC (%) per MNIST class 0..9
ANCHORS: dict[str, list[float]] = {
    "Deep SVDD (Ruff et al. 2018)": [98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5],
    "sklearn PCA k=32, MSE (measured)": [99.2, 99.9, 92.4, 95.4, 94.3, 97.3, 98.5, 97.0, 84.9, 96.3],
}


def _ints(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def networks_available() -> bool:
    return all(kind in fitters() for kind in NN_KINDS)


def one_class_auroc(
    model: str, config: FitConfig, c: int, registry: Path, args: argparse.Namespace
) -> tuple[float, float, float]:
    """Train `model` on class c into `registry`, evaluate it through the runtime; (AUROC %, FPR,
    train seconds)."""
    name = f"{model}-c{c}".lower()
    data = DataConfig(args.dataset, data_dir=args.data_dir, classes=(c,))
    t0 = time.perf_counter()
    fit(config, data, name=name, models_dir=registry, device=args.device, seed=args.seed)
    seconds = time.perf_counter() - t0
    report = evaluate(registry, name, args.dataset, data_dir=args.data_dir, save=False)
    return 100.0 * report["auroc"], report["fpr_at_threshold"], seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or a labelled .npz image set")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--classes", type=_ints, default=None, help="default: every training label")
    p.add_argument("--models", default=None, help=f"comma-separated subset of {sorted(MODELS)}")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads is not None and networks_available():
        import torch

        torch.set_num_threads(args.threads)
    if args.classes is None:
        try:
            labels = load_dataset(args.dataset, data_dir=args.data_dir).y
        except (LatentServeError, TrainingError) as exc:
            p.error(exc.message if isinstance(exc, LatentServeError) else str(exc))
        if labels is None:
            p.error(f"{args.dataset}: no labels; the one-class protocol needs y_train / y_test")
        args.classes = sorted(set(labels.tolist()))
    models = args.models.split(",") if args.models else list(DEFAULT_MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        p.error(f"unknown models {unknown}; expected some of {sorted(MODELS)}")
    if not networks_available():
        skipped = [m for m in models if MODELS[m].kind in NN_KINDS]
        if skipped:
            print(f"training.nn is not importable: skipping {skipped}", file=sys.stderr)
        models = [m for m in models if m not in skipped]

    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="one-class-") as tmp:
        for model in models:
            t0 = time.perf_counter()
            aurocs, fprs, train = [], [], []
            for c in args.classes:
                try:
                    auroc, fpr, seconds = one_class_auroc(model, MODELS[model], c, Path(tmp), args)
                except (LatentServeError, TrainingError, ValueError, RuntimeError) as exc:  # one failure
                    message = exc.message if isinstance(exc, LatentServeError) else str(exc)
                    print(f"{model} class {c}: FAILED: {message}", file=sys.stderr)
                    auroc, fpr, seconds = math.nan, math.nan, math.nan
                else:
                    print(f"{model} class {c}: AUROC {auroc:.1f} FPR at threshold {fpr:.4f}", file=sys.stderr)
                aurocs.append(auroc)
                fprs.append(fpr)
                train.append(seconds)
            results[model] = {
                "auroc": aurocs,
                "fpr": fprs,
                "train_seconds": train,
                "seconds": time.perf_counter() - t0,
                "config": dataclasses.asdict(MODELS[model]),
            }
    print_table(results, args.classes, args.dataset)
    if args.json is not None:
        args.json.write_text(
            json.dumps({"dataset": args.dataset, "classes": args.classes, "results": results}, indent=2)
            + "\n",
            encoding="utf-8",
        )
    return 0


def print_table(results: dict[str, dict[str, object]], classes: list[int], dataset: str) -> None:
    """Markdown table: one row per model (and the anchors on MNIST): AUROC % per class, the mean and
    the min, the calibrated threshold's mean false-positive rate on normal test images, the mean
    train seconds per class and the model's whole time (train and evaluate, every class)."""
    cells = " | ".join(str(c) for c in classes)
    head = f"| model | {cells} | mean | min | FPR@thr | train s/class | time |"
    print(head)
    print("|" + "---|" * (len(classes) + 6))
    for model, r in results.items():
        a: list[float] = r["auroc"]  # type: ignore[assignment]
        f: list[float] = r["fpr"]  # type: ignore[assignment]
        ok = [v for v in a if not math.isnan(v)]
        ok_f = [v for v in f if not math.isnan(v)]
        ok_t = [v for v in r["train_seconds"] if not math.isnan(v)]  # type: ignore[attr-defined]
        if not ok:
            print(f"| {model} | " + " | ".join("failed" for _ in a) + " | | | | | |")
            continue
        cells = " | ".join("failed" if math.isnan(v) else f"{v:.1f}" for v in a)
        note = "" if len(ok) == len(a) else f" ({len(ok)}/{len(a)})"
        print(
            f"| {model} | {cells} | **{sum(ok) / len(ok):.1f}**{note} | {min(ok):.1f} | "
            f"{sum(ok_f) / len(ok_f):.4f} | {sum(ok_t) / len(ok_t):.1f} | {r['seconds']:.0f} s |"
        )
    if dataset == "mnist":
        for name, values in ANCHORS.items():
            sel = [values[c] for c in classes]
            cells = " | ".join(f"{v:.1f}" for v in sel)
            print(f"| {name} | {cells} | {sum(sel) / len(sel):.1f} | {min(sel):.1f} | | | |")


if __name__ == "__main__":
    raise SystemExit(main())
