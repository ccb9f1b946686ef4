"""`python -m training fit | list | show | bootstrap | evaluate | presets`: train and read the registry.

Bad arguments exit non-zero with one clear line on stderr and leave the registry untouched.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from service.errors import LatentServeError
from service.manifest import MAX_REFERENCE_ROWS, ScoreSpec, is_valid_name
from service.registry import model_names, read_manifest, versions_of
from training.base import DEFAULT_REFERENCE_ROWS, ReconstructionEstimator, score_spec
from training.config import PCA_KINDS, FitConfig, PCAConfig
from training.data import DataError, Dataset, check_matrix, filter_classes, load_dataset, split
from training.export import TrainingRun, export_pca_family
from training.publish import PublishError, RegistryNotWritable, check_writable

log = logging.getLogger("latentserve.training")

# kind -> function(FitConfig, args, Dataset, TrainingRun) -> published folder
Fitter = Callable[[FitConfig, argparse.Namespace, Dataset, TrainingRun], Path]
FITTERS: dict[str, Fitter] = {}

# The defaults `bootstrap` trains into an empty registry: (name, kind, dataset, extra flags)
DEFAULT_MODELS: list[tuple[str, str, str, list[str]]] = [
    ("digits-pca", "pca", "digits", ["--n-components", "0.95"]),
    ("digits-sklearn-pca", "sklearn-pca", "digits", ["--n-components", "16"]),
    ("digits-randomized-pca", "sklearn-pca", "digits", ["--n-components", "16", "--solver", "randomized"]),
    ("digits-incremental-pca", "incremental-pca", "digits", ["--n-components", "16"]),
    ("digits-kernel-pca", "kernel-pca", "digits", ["--n-components", "16"]),
    ("breast-cancer-pca", "pca", "breast-cancer", ["--n-components", "0.9"]),
    ("breast-cancer-sklearn-pca", "sklearn-pca", "breast-cancer", ["--n-components", "10"]),
    ("breast-cancer-incremental-pca", "incremental-pca", "breast-cancer", ["--n-components", "10"]),
    ("breast-cancer-kernel-pca", "kernel-pca", "breast-cancer", ["--n-components", "10"]),
]


class UsageError(ValueError):
    pass


def _n_components(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer k >= 1 or a fraction in (0, 1), got {text!r}"
        ) from None
    if value <= 0 or (value >= 1 and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected an integer k >= 1 or a fraction in (0, 1), got {text!r}")
    return int(value) if value >= 1 else value


def _classes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3 or 0,8, got {text!r}"
        ) from None


def _name(text: str) -> str:
    if not is_valid_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid model name: 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return text


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n")


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help=f"model kind: {', '.join(sorted(FITTERS) or PCA_KINDS)}")
    p.add_argument(
        "--dataset", required=True, help="digits, breast-cancer, gaussian-2d, mnist, fashion-mnist, or a path"
    )
    p.add_argument("--name", required=True, type=_name, help="registry name of the model")
    p.add_argument("--models-dir", type=Path, default=Path("models"))
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the IDX .gz files")
    p.add_argument("--classes", type=_classes, default=None, help="keep only these labels, e.g. 3 or 0,8")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--quantile", type=_fraction, default=0.99, help="threshold quantile of calibration errors"
    )
    p.add_argument(
        "--n-components", type=_n_components, default=None, help="PCA: k, or a variance share like 0.95"
    )
    p.add_argument(
        "--latent-dim", type=int, default=None, help="size of the code (PCA: same as an integer k)"
    )
    p.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="standardise features (default: yes for feature data, no for images)",
    )
    p.add_argument("--solver", choices=["full", "randomized"], default="full", help="sklearn-pca solver")
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (incremental-pca, networks)")
    p.add_argument("--kernel", choices=["rbf", "poly", "sigmoid", "cosine", "linear"], default="rbf")
    p.add_argument("--gamma", type=float, default=None, help="kernel-pca kernel coefficient")
    p.add_argument("--max-rows", type=int, default=3000, help="kernel-pca: at most this many training rows")
    p.add_argument(
        "--no-download",
        dest="download",
        action="store_false",
        help="never download mnist / fashion-mnist; fail if the files are missing",
    )
    p.add_argument(
        "--mmap", action="store_true", help="memory-map a .npy dataset (streams through incremental-pca)"
    )
    # networks (training.nn): dense, linear, conv, lstm, denoising, vae
    p.add_argument("--hidden", default=None, help="network hidden widths, e.g. 100 or 256,64 (lstm: units)")
    p.add_argument("--channels", default=None, help="conv channels per level, e.g. 16,32,64")
    p.add_argument("--activation", choices=["selu", "relu", "leaky-relu", "tanh"], default=None)
    p.add_argument("--loss", choices=["mse", "bce"], default=None, help="bce on [0, 1] data, else mse")
    p.add_argument("--base", choices=["dense", "linear", "conv", "lstm"], default=None, help="denoising")
    p.add_argument("--noise", type=float, default=None, help="input corruption (denoising default 0.2)")
    p.add_argument("--noise-kind", choices=["gaussian", "dropout"], default=None)
    p.add_argument("--sparsity", type=float, default=None, help="weight of the L1 code penalty mean |z|")
    p.add_argument("--beta", type=float, default=None, help="vae: weight of the KL term")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=None)
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile (CUDA graphs on GPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--score-reduction", choices=["mean", "topk"], default=None)
    p.add_argument("--score-topk", type=int, default=None, help="with --score-reduction topk: k")
    p.add_argument(
        "--score-pool",
        type=int,
        default=None,
        help="images: average the error over P x P windows (odd P) before squaring",
    )
    p.add_argument(
        "--score-relative",
        action="store_true",
        help="divide the score by the variance of the row's input values (its contrast)",
    )
    p.add_argument(
        "--score-neighbors",
        type=int,
        default=None,
        metavar="K",
        help="add the code's mean squared distance to its K nearest training codes to the score (0: off)",
    )
    p.add_argument(
        "--score-reference-rows",
        type=int,
        default=DEFAULT_REFERENCE_ROWS,
        metavar="R",
        help=f"with --score-neighbors: keep the codes of at most R training rows (<= {MAX_REFERENCE_ROWS})",
    )
    p.add_argument(
        "--preset", default=None, help="named settings (see `presets`); explicit flags override them"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training", description="Train models into the latentserve registry.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_fit_arguments(sub.add_parser("fit", help="train a model and publish it as a new version"))
    p_list = sub.add_parser("list", help="list the registry's models and versions")
    p_list.add_argument("--models-dir", type=Path, default=Path("models"))
    p_show = sub.add_parser("show", help="print a version's manifest (default: the newest)")
    p_show.add_argument("ref", help="NAME or NAME:VERSION")
    p_show.add_argument("--models-dir", type=Path, default=Path("models"))
    p_boot = sub.add_parser("bootstrap", help="train the default models when the registry is empty")
    p_boot.add_argument("--models-dir", type=Path, default=Path("models"))
    p_boot.add_argument("--force", action="store_true", help="train the defaults even if models exist")
    from training.evaluate import add_evaluate_arguments

    add_evaluate_arguments(sub.add_parser("evaluate", help="detection quality of a version on labelled data"))
    sub.add_parser("presets", help="list the named training presets")
    return parser


def fit_config(args: argparse.Namespace) -> FitConfig:
    for flag in ("epochs", "batch_size", "patience"):  # shared by every kind that reads them
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if getattr(args, "mmap", False) and args.model != "incremental-pca":
        raise UsageError(
            f"--mmap streams rows through --model incremental-pca only; --model {args.model} reads "
            "the whole file: drop --mmap"
        )
    return FitConfig(
        model=args.model,
        dataset=args.dataset,
        name=args.name,
        models_dir=args.models_dir,
        data_dir=args.data_dir,
        classes=args.classes,
        seed=args.seed,
        device=args.device,
        quantile=args.quantile,
        standardize=args.standardize,
    )


def _load_rows(cfg: FitConfig, args: argparse.Namespace) -> tuple[Dataset, TrainingRun]:
    ds = load_dataset(
        cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, download=args.download, mmap=args.mmap
    )
    classes = list(cfg.classes) if cfg.classes else None
    X, y = filter_classes(ds, classes)
    if isinstance(X, np.memmap):
        # a memory-mapped file is split by position: the tail is validation and calibration
        n = len(X)
        n_hold = max(2, round(n * (cfg.validation + cfg.calibration)))
        tail = check_matrix(np.asarray(X[n - n_hold :]), Path(cfg.dataset), row_offset=n - n_hold)
        half = n_hold // 2
        from training.data import Splits

        splits = Splits(X[: n - n_hold], tail[:half], tail[half:], None, None, None)  # type: ignore[arg-type]
    else:
        splits = split(X, y, seed=cfg.seed, validation=cfg.validation, calibration=cfg.calibration)
    preset = getattr(args, "preset", None)
    return ds, TrainingRun(
        dataset=ds,
        splits=splits,
        seed=cfg.seed,
        classes=classes,
        quantile=cfg.quantile,
        hyperparameters={"preset": preset} if preset else {},
    )


def _fit_pca(cfg: FitConfig, args: argparse.Namespace, ds: Dataset, run: TrainingRun) -> Path:
    from training.pca import PCA, IncrementalPCA, KernelPCA, SklearnPCA

    default = 16 if cfg.model == "kernel-pca" else 0.95
    k: float = args.n_components if args.n_components is not None else (args.latent_dim or default)
    d = int(np.prod(ds.row_shape))
    if float(k) >= 1 and k > d:
        raise UsageError(f"--n-components {k} is larger than the input size {d}")
    std = cfg.standardize if cfg.standardize is not None else ds.layout == "features"
    pcfg = PCAConfig(
        n_components=k,
        solver=args.solver,
        batch_size=args.batch_size or 1024,
        kernel=args.kernel,
        gamma=args.gamma,
        max_rows=args.max_rows,
    )
    est: ReconstructionEstimator
    if cfg.model == "pca":
        est = PCA(pcfg.n_components, standardize=std, device=cfg.device)
    elif cfg.model == "sklearn-pca":
        est = SklearnPCA(pcfg.n_components, solver=pcfg.solver, standardize=std, seed=cfg.seed)  # type: ignore[arg-type]
    elif cfg.model == "incremental-pca":
        est = IncrementalPCA(pcfg.n_components, batch_size=pcfg.batch_size, standardize=std)
    else:
        est = KernelPCA(
            int(pcfg.n_components),
            kernel=pcfg.kernel,
            gamma=pcfg.gamma,
            alpha=pcfg.alpha,
            standardize=std,
            max_rows=pcfg.max_rows,
            seed=cfg.seed,
        )
    score = _score_spec(args, ds)  # a bad --score-* flag fails before the fit, not after it
    est.fit(run.splits.X_train)
    est.score_spec_ = score.model_copy(update={"scale": est.score_spec_.scale})
    if args.score_neighbors:
        est.fit_neighbors(
            run.splits.X_train, args.score_neighbors, max_rows=args.score_reference_rows, seed=cfg.seed
        )
    return export_pca_family(est, run, cfg.models_dir, cfg.name)


def _score_spec(args: argparse.Namespace, ds: Dataset) -> ScoreSpec:
    """The score the --score-* flags ask for (the fitted estimator adds its standardisation scale)."""
    k, rows = getattr(args, "score_neighbors", None), getattr(args, "score_reference_rows", 1)
    if k is not None and k < 0:
        raise UsageError(f"--score-neighbors must be >= 0 (0: off), got {k}")
    if not 1 <= rows <= MAX_REFERENCE_ROWS:
        raise UsageError(f"--score-reference-rows must be in [1, {MAX_REFERENCE_ROWS}], got {rows}")
    return score_spec(
        ds.row_shape,
        ds.layout,
        reduction=args.score_reduction or "mean",
        topk=args.score_topk,
        pool=getattr(args, "score_pool", None),
        relative=bool(getattr(args, "score_relative", False)),
    )


for _kind in PCA_KINDS:
    FITTERS[_kind] = _fit_pca


def _register_networks() -> None:
    """Autoencoder kinds live in training.nn (needs torch); register them when importable."""
    try:
        from training.nn.fit import register
    except ImportError as exc:
        if "torch" not in str(exc) and "training.nn" not in str(exc):
            raise
        return
    register(FITTERS)


def run_fit(args: argparse.Namespace) -> Path:
    cfg = fit_config(args)
    if cfg.model not in FITTERS:
        raise UsageError(f"--model: unknown kind {cfg.model!r}; expected one of {sorted(FITTERS)}")
    if getattr(args, "score_neighbors", None) and cfg.model not in PCA_KINDS:
        raise UsageError(
            f"--score-neighbors: --model {cfg.model} keeps no reference codes; the PCA family "
            f"({', '.join(PCA_KINDS)}) does"
        )
    check_writable(cfg.models_dir)  # before the training, not after it
    ds, run = _load_rows(cfg, args)
    return FITTERS[cfg.model](cfg, args, ds, run)


def cmd_list(models_dir: Path) -> None:
    names = model_names(models_dir)
    if not names:
        print(f"(no models in {models_dir})")
    for name in names:
        for v in versions_of(models_dir, name):
            try:
                m = read_manifest(models_dir, name, v)
                print(
                    f"{name}:{v}\t{m.kind}\t{m.format}\tinput={m.input.shape}\tlatent={m.latent_dim}\t"
                    f"threshold={m.threshold.value:.4g}\tval_error={m.metrics.validation_error:.4g}"
                )
            except LatentServeError as exc:
                print(f"{name}:{v}\tUNREADABLE\t{exc.message}")


def cmd_show(models_dir: Path, ref: str) -> None:
    from training.evaluate import resolve_version

    manifest, _ = resolve_version(models_dir, ref)
    print(manifest.to_json())


def cmd_bootstrap(models_dir: Path, force: bool) -> None:
    if model_names(models_dir) and not force:
        print(f"registry {models_dir} already holds models; nothing to train", file=sys.stderr)
        return
    parser = build_parser()
    for name, kind, dataset, extra in default_models():
        print(run_fit(parser.parse_args(fit_argv(kind, dataset, name, models_dir, *extra))))


def fit_argv(kind: str, dataset: str, name: str, models_dir: Path | str, *extra: str) -> list[str]:
    """The `fit` command line for one model: `fit --model KIND --dataset DATA --name NAME ...`."""
    required = ["--model", kind, "--dataset", dataset, "--name", name, "--models-dir", str(models_dir)]
    return ["fit", *required, *extra]


def default_models() -> list[tuple[str, str, str, list[str]]]:
    """The PCA defaults, plus the network defaults when torch is installed."""
    try:
        from training.nn.fit import DEFAULT_NETWORKS
    except ImportError:
        return list(DEFAULT_MODELS)
    return [*DEFAULT_MODELS, *DEFAULT_NETWORKS]


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _register_networks()
    from training.presets import PresetError, apply_preset

    try:
        argv = apply_preset(list(sys.argv[1:] if argv is None else argv))
    except PresetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fit":
            folder = run_fit(args)
            if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 prints
                print(folder)
        elif args.command == "list":
            cmd_list(args.models_dir)
        elif args.command == "show":
            cmd_show(args.models_dir, args.ref)
        elif args.command == "bootstrap":
            cmd_bootstrap(args.models_dir, args.force)
        elif args.command == "evaluate":
            from training.evaluate import run_evaluate

            run_evaluate(args)
        elif args.command == "presets":
            from training.presets import describe

            print(describe())
    except (UsageError, DataError, ValueError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LatentServeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except (RegistryNotWritable, PublishError) as exc:  # the arguments were fine; the registry was not
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the registry is unchanged", file=sys.stderr)
        return 130
    return 0
