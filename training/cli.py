"""`python -m training fit | list | show | bootstrap | evaluate | presets`: train and read the registry.

`fit` maps its flags onto the config objects of `training.config` (each flag's `dest` names the field
it sets) and calls `training.fit`; `--help` prints the config objects' defaults. Bad arguments exit 2
with one clear line on stderr and leave the registry untouched; any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latentserve_core.errors import LatentServeError
from latentserve_core.layout import model_names, read_manifest, versions_of
from latentserve_core.manifest import MAX_REFERENCE_ROWS
from training.api import bootstrap, fit
from training.config import KINDS, MODELS_DIR, DataConfig, FitConfig, PCAConfig, ScoreConfig
from training.errors import TrainingError, UsageError
from training.nn.config import NetConfig, TrainConfig
from training.presets import PRESETS, default_config, preset
from training.publish import PublishError, RegistryNotWritable

log = logging.getLogger("latentserve.training")

SECTIONS: dict[str, type[Any]] = {
    "": FitConfig,
    "data": DataConfig,
    "pca": PCAConfig,
    "net": NetConfig,
    "train": TrainConfig,
    "score": ScoreConfig,
}
BATCH_SIZE = ("pca.batch_size", "train.batch_size")  # --batch-size sets both: incremental-pca and networks


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


def _integers(text: str, example: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        message = f"expected comma-separated integers like {example}, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _classes(text: str) -> tuple[int, ...]:
    return _integers(text, "3 or 0,8")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(","))
    if not names or not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names like a,b,c, got {text!r}")
    return names


def _name(text: str) -> str:
    if not text.strip() or "," in text:
        raise argparse.ArgumentTypeError(f"expected one column name, got {text!r}")
    return text.strip()


def _widths(text: str) -> tuple[int, ...]:
    values = _integers(text, "256,64")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 256,64, got {text!r}")
    return values


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n")


def field_default(dest: str) -> Any:
    """The default of the config field a flag sets: "score.pool" -> ScoreConfig's pool default."""
    section, _, name = dest.rpartition(".")
    (f,) = [f for f in dataclasses.fields(SECTIONS[section]) if f.name == name]
    return f.default


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value is None else str(value)


def _add(
    p: argparse.ArgumentParser, flag: str, dest: str, text: str, default: str | None = None, **kw: Any
) -> None:
    """A fit flag that sets the config field `dest`; its help ends with that field's default."""
    shown = default if default is not None else _shown(field_default(dest))
    if "action" not in kw and "choices" not in kw:  # the flag's name, not the dotted dest
        kw.setdefault("metavar", flag.lstrip("-").upper().replace("-", "_"))
    p.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=f"{text} (default: {shown})", **kw)


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """The `fit` flags; only those given reach the namespace (each dest is a config field)."""

    def add(flag: str, dest: str, text: str, default: str | None = None, **kw: Any) -> None:
        _add(p, flag, dest, text, default, **kw)

    add("--model", "kind", f"model kind: {', '.join(KINDS)}", "the preset's, else the data's default")
    datasets = (
        "digits, breast-cancer, gaussian-2d, mnist, fashion-mnist, or a path to a .npy / .npz / .csv / "
        ".parquet file or a folder of images (with --spark: a Parquet path or glob)"
    )
    p.add_argument(
        "--dataset", dest="data.dataset", metavar="DATA", required=True, help=f"{datasets} (required)"
    )
    p.add_argument("--name", required=True, help="registry name of the model (required)")
    p.add_argument(
        "--spark",
        metavar="MASTER",
        default=None,
        help="fit on Apache Spark (local[4], spark://host:7077, yarn, ...): --dataset is then a Parquet "
        "path or glob of numeric columns, read by Spark, never brought to this process (kind pca) "
        "(default: off, in memory)",
    )
    registry = f"the registry (default: {MODELS_DIR})"
    p.add_argument("--models-dir", type=Path, default=MODELS_DIR, help=registry)
    idx = "$LATENTSERVE_DATA_DIR or ~/.cache"
    add("--data-dir", "data.data_dir", "folder with the IDX .gz files", idx, type=Path)
    add("--classes", "data.classes", "keep only these labels, e.g. 3 or 0,8", "all", type=_classes)
    table = ".csv / .parquet:"
    add("--columns", "data.columns", f"{table} the feature columns by name, e.g. a,b,c", "all", type=_names)
    add(
        "--drop-columns", "data.drop_columns", f"{table} columns left out, e.g. id,notes", "none", type=_names
    )
    label = f"{table} the column of integer labels (--classes, evaluate); never a feature"
    add("--label-column", "data.label_column", label, "none", type=_name)
    add("--seed", "seed", "seeds the split, the initialisation and the shuffling", type=int)
    add("--device", "device", "where to train", choices=["auto", "cpu", "cuda"])
    add("--quantile", "score.quantile", "threshold quantile of calibration errors", type=_fraction)
    k = f"--latent-dim, else {PCAConfig.DEFAULT_SHARE} (kernel-pca: {PCAConfig.DEFAULT_KERNEL_K})"
    add("--n-components", "pca.n_components", "PCA: k, or a variance share like 0.95", k, type=_n_components)
    least = "with a variance share, keep at least K components (pca, incremental-pca)"
    add("--min-components", "pca.min_components", least, type=int, metavar="K")
    latent = f"PCA: as --n-components; networks: min({NetConfig.latent_dim}, d // 2) for rows of d values"
    add("--latent-dim", "latent_dim", "size of the code (PCA: same as an integer k)", latent, type=int)
    std = "yes for feature data, no for images"
    add("--standardize", "standardize", "standardise features", std, action=argparse.BooleanOptionalAction)
    floor = "standardising (linear PCA kinds): floor each feature's std at this quantile of the stds"
    add("--scale-floor", "pca.scale_floor", floor, type=float)
    add("--solver", "pca.solver", "sklearn-pca solver", choices=["full", "randomized"])
    batch = f"incremental-pca {field_default(BATCH_SIZE[0])}, networks {field_default(BATCH_SIZE[1])}"
    add("--batch-size", "batch_size", "rows per step (incremental-pca, networks)", batch, type=int)
    add("--kernel", "pca.kernel", "kernel-pca kernel", choices=["rbf", "poly", "sigmoid", "cosine", "linear"])
    add("--gamma", "pca.gamma", "kernel-pca kernel coefficient", "1 / n_features", type=float)
    add("--max-rows", "pca.max_rows", "kernel-pca: at most this many training rows", type=int)
    offline = "never download mnist / fashion-mnist; fail if the files are missing"
    add("--no-download", "data.download", offline, "download", action="store_false")
    add(
        "--mmap", "data.mmap", "memory-map a .npy file (streams through incremental-pca)", action="store_true"
    )
    # networks (training.nn): dense, linear, conv, lstm, denoising, vae
    add("--hidden", "net.hidden", "network hidden widths, e.g. 100 or 256,64 (lstm: units)", type=_widths)
    add("--channels", "net.channels", "conv channels per level, e.g. 16,32,64", type=_widths)
    add("--activation", "net.activation", "hidden activation", choices=["selu", "relu", "leaky-relu", "tanh"])
    add("--loss", "net.loss", "reconstruction loss", "bce on [0, 1] data, else mse", choices=["mse", "bce"])
    add("--base", "net.base", "denoising: the network it wraps", choices=["dense", "linear", "conv", "lstm"])
    noise = f"denoising {NetConfig.DENOISING_NOISE}, else 0"
    add("--noise", "net.noise", "input corruption", noise, type=float)
    add("--noise-kind", "net.noise_kind", "input corruption kind", choices=["gaussian", "dropout"])
    add("--sparsity", "net.sparsity", "weight of the L1 code penalty mean |z|", type=float)
    add("--beta", "net.beta", "vae: weight of the KL term", type=float)
    add("--epochs", "train.epochs", "passes over the training rows", type=int)
    add("--lr", "train.lr", "learning rate", type=float)
    add("--optimizer", "train.optimizer", "optimizer", choices=["adam", "sgd"])
    add("--patience", "train.patience", "early-stopping patience in epochs", type=int)
    add("--bf16", "train.bf16", "bfloat16 autocast", action="store_true")
    add("--compile", "train.compile", "torch.compile (CUDA graphs on GPU)", action="store_true")
    add("--quiet", "train.quiet", "no progress bar", action="store_true")
    add("--score-reduction", "score.reduction", "reduction of the squared errors", choices=["mean", "topk"])
    add("--score-topk", "score.topk", "with --score-reduction topk: k", type=int)
    pool = "images: average the error over P x P windows (odd P) before squaring"
    add("--score-pool", "score.pool", pool, "no pooling", type=int)
    relative = "divide the score by the variance of the row's input values (its contrast)"
    add("--score-relative", "score.relative", relative, action="store_true")
    neighbors = "add the code's mean squared distance to its K nearest training codes to the score (0: off)"
    add("--score-neighbors", "score.neighbors", neighbors, type=int, metavar="K")
    rows = f"with --score-neighbors: keep the codes of at most R training rows (<= {MAX_REFERENCE_ROWS})"
    add("--score-reference-rows", "score.reference_rows", rows, type=int, metavar="R")
    balance = "with --score-neighbors: weight that term so both parts have one mean on the validation rows"
    add("--score-balance", "score.balance", balance, action="store_true")
    detail = "add the detail term: the error after further principal directions up to this variance share"
    add("--score-detail", "score.detail", detail, "off", type=float, metavar="SHARE")
    detail_weight = "with --score-detail: its weight (each part divided by its 99%% validation quantile)"
    add("--score-detail-weight", "score.detail_weight", detail_weight, type=float, metavar="W")
    rotation = "images: add the rotation term (a small CNN telling an image's quarter turns apart), weight W"
    add("--score-rotation", "score.rotation", rotation, "off", type=float, metavar="W")
    epochs = "with --score-rotation: epochs of its network (each: every training image's four turns)"
    add("--score-rotation-epochs", "score.rotation_epochs", epochs, type=int, metavar="N")
    size = "with --score-rotation: images are averaged by the largest whole factor keeping this side"
    add("--score-rotation-size", "score.rotation_size", size, type=int, metavar="PIXELS")
    add("--preset", "preset", "named settings (see `presets`); explicit flags override them", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training", description="Train models into the latentserve registry.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_fit_arguments(sub.add_parser("fit", help="train a model and publish it as a new version"))
    p_list = sub.add_parser("list", help="list the registry's models and versions")
    p_list.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    p_show = sub.add_parser("show", help="print a version's manifest (default: the newest)")
    p_show.add_argument("ref", help="NAME or NAME:VERSION")
    p_show.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    p_boot = sub.add_parser("bootstrap", help="train the default models when the registry is empty")
    p_boot.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    p_boot.add_argument("--force", action="store_true", help="train the defaults even if models exist")
    from training.evaluate import add_evaluate_arguments

    add_evaluate_arguments(sub.add_parser("evaluate", help="detection quality of a version on labelled data"))
    sub.add_parser("presets", help="list the named training presets")
    return parser


def configs(args: argparse.Namespace) -> tuple[FitConfig, DataConfig]:
    """The FitConfig and DataConfig a `fit` command line asks for: the preset's settings (or the
    defaults), with every flag given replacing the field its dest names."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "name", "models_dir", "spark")}
    if "batch_size" in given:
        size = given.pop("batch_size")
        given.update(dict.fromkeys(BATCH_SIZE, size))
    name = given.pop("preset", None)
    parts = {
        s: {k.split(".", 1)[1]: v for k, v in given.items() if k.startswith(f"{s}.")} for s in SECTIONS if s
    }
    data = DataConfig(**parts.pop("data"))
    if name is None and "kind" not in given and args.spark is not None:  # Spark rows are a table
        base = default_config("features")
    elif name is None and "kind" not in given:  # the default of the data's layout
        from training.api import default_for

        base = default_for(data, given.get("seed", FitConfig.seed))
    elif name is None:
        base = FitConfig(given["kind"])
    else:
        base = preset(name)
    top = {k: v for k, v in given.items() if "." not in k}
    sections = {s: dataclasses.replace(getattr(base, s), **values) for s, values in parts.items()}
    return dataclasses.replace(base, **top, **sections), data


def _value(config: FitConfig, dest: str) -> Any:
    section, _, name = dest.rpartition(".")
    return getattr(getattr(config, section) if section else config, name)


def flags_of(config: FitConfig) -> list[str]:
    """The `fit` flags that turn the defaults of config.kind into `config` (how `presets` shows one)."""
    p = _Parser()
    add_fit_arguments(p)
    default = FitConfig(config.kind)
    settable = {
        f"{s}.{f.name}".lstrip(".")
        for s, cls in SECTIONS.items()
        if s != "data"
        for f in dataclasses.fields(cls)
    }
    out = ["--model", config.kind]
    for action in p._actions:
        dests = BATCH_SIZE if action.dest == "batch_size" else (action.dest,)
        changed = [d for d in dests if d in settable and _value(config, d) != _value(default, d)]
        if not changed or action.dest in ("kind", "preset"):
            continue
        value = _value(config, changed[0])
        if action.nargs == 0:  # a switch: --quiet; --standardize / --no-standardize
            out.append(action.option_strings[0 if value is True else -1])
        else:
            out += [action.option_strings[0], _shown(value)]
    return out


def describe() -> str:
    """One block per preset: name, kind and description, then the flags it amounts to."""
    lines = []
    for name, p in PRESETS.items():
        lines.append(f"{name}\t{p.config.kind}\t{p.description}")
        lines.append(f"\tflags: {' '.join(flags_of(p.config))}")
    return "\n".join(lines)


def run_fit(args: argparse.Namespace) -> Path:
    """`fit`: the configs from the flags, then `training.fit`."""
    config, data = configs(args)
    if args.spark is not None:
        from training.spark_fit import read_parquet

        chosen = [
            f
            for f, v in (
                ("--classes", data.classes),
                ("--columns", data.columns),
                ("--drop-columns", data.drop_columns),
                ("--label-column", data.label_column),
            )
            if v
        ]
        if chosen:
            raise UsageError(
                f"{', '.join(chosen)}: --spark fits every numeric column of every row of the Parquet "
                "files; select and filter them in Spark first (or fit the file in memory without --spark)"
            )

        return fit(config, read_parquet(args.spark, data.dataset), name=args.name, models_dir=args.models_dir)
    return fit(config, data, name=args.name, models_dir=args.models_dir)


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
    if not bootstrap(models_dir, force=force, published=print):
        print(f"registry {models_dir} already holds models; nothing to train", file=sys.stderr)


def fit_argv(kind: str, dataset: str, name: str, models_dir: Path | str, *extra: str) -> list[str]:
    """The `fit` command line for one model: `fit --model KIND --dataset DATA --name NAME ...`."""
    required = ["--model", kind, "--dataset", dataset, "--name", name, "--models-dir", str(models_dir)]
    return ["fit", *required, *extra]


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
            print(describe())
    except TrainingError as exc:  # our own usage, data and export errors: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LatentServeError as exc:  # the registry's (a bad reference, an unreadable manifest)
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except (RegistryNotWritable, PublishError) as exc:  # the arguments were fine; the registry was not
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the registry is unchanged", file=sys.stderr)
        return 130
    return 0
