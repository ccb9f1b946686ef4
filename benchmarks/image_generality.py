"""Does an image score hold beyond MNIST? One-class AUROC on transformed MNIST, on `digits` and on
patches of other photographs, for the image presets' scores side by side, in one run.

`--scores presets` compares the image default (`one-class-images`, with its rotation term) with the
same score without the term (`one-class-images-pca`), each trained as `fit` trains it (70% of the
class's training images, weighed on the next 15%).

For each data set and class c: a PCA trains on 70% of the training images of class c (a seeded
subset, as `fit` keeps 70% for training), the whole test split is scored, normal = c; AUROC (%) per
class, the mean and the lowest class. The scores are the training package's own
(`ReconstructionEstimator.score_samples`, i.e. `latentserve_core.runtime.base.row_scores`, which every
published ONNX scorer is checked against), so no registry is written: this is a check of the score,
not of the export.

Data sets (all built here from what is installed; none is tuned on):
- `mnist`, `mnist-inverted` (1 - x), `mnist-noisy` (+ N(0, 0.1), clipped), `mnist-shifted`
  (every image rolled by up to 2 pixels each way), `mnist-rotated` (up to 20 degrees each way):
  the IDX files from `--data-dir`;
- `digits`: scikit-learn's 8x8 digits, 1,000 training / 797 test images;
- `textures`: 28x28 grey patches of ten photographs that ship inside scikit-image (brick, grass,
  gravel, camera, coins, moon, page, text, astronaut, chelsea); class = photograph, training patches
  from the left 70% of each photograph, test patches from the right 30% (`pip install scikit-image`).

    .venv/bin/python benchmarks/image_generality.py --data-dir ../shared/data/mnist
    .venv/bin/python benchmarks/image_generality.py --sets digits,textures
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.config import ScoreConfig  # noqa: E402
from training.data import load_dataset, split  # noqa: E402
from training.pca import PCA  # noqa: E402
from training.presets import preset  # noqa: E402

Images = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # X_train, y_train, X_test, y_test
TRAIN_SHARE = 0.7
K = 16  # the presets' number of components

# score name -> (pool, relative, neighbours): the old and the new one-class-pca score, plain error
SCORES: dict[str, tuple[int | None, bool, int]] = {
    "one-class-pca (pooled relative + 5 nearest codes)": (3, True, 5),
    "pooled relative error (one-class-pca before)": (3, True, 0),
    "plain mean squared error": (None, False, 0),
}
# presets, trained as `fit` trains them: on 70% of the class's images, weighed on the next 15%
PRESET_SCORES = ["one-class-images", "one-class-images-pca"]


def _mnist(data_dir: Path | None, change: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> Images:
    ds = load_dataset("mnist", data_dir=data_dir, download=False)
    assert ds.y is not None and ds.X_test is not None and ds.y_test is not None
    rng = np.random.default_rng(0)
    return change(ds.X, rng), ds.y, change(ds.X_test, rng), ds.y_test


def _shift(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty_like(X)
    for i, (dy, dx) in enumerate(rng.integers(-2, 3, (len(X), 2))):
        out[i] = np.roll(X[i], (int(dy), int(dx)), axis=(0, 1))
    return out


def _rotate(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import rotate

    angles = rng.uniform(-20, 20, len(X))
    return np.stack([rotate(x, a, reshape=False, order=1) for x, a in zip(X, angles, strict=True)])


def _digits() -> Images:
    from sklearn.datasets import load_digits

    d = load_digits()
    X, y = (d.images / 16.0).astype(np.float32), d.target
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[:1000]], y[order[:1000]], X[order[1000:]], y[order[1000:]]


def _textures() -> Images:
    import skimage.data
    from skimage.color import rgb2gray

    names = ["brick", "grass", "gravel", "camera", "coins", "moon", "page", "text", "astronaut", "chelsea"]
    rng = np.random.default_rng(0)
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for c, name in enumerate(names):
        img = getattr(skimage.data, name)()
        img = (rgb2gray(img) if img.ndim == 3 else img / 255.0).astype(np.float32)
        H, W = img.shape
        cut = int(W * TRAIN_SHARE)
        for x0, x1, n, into in ((0, cut, 1500, 0), (cut, W, 300, 2)):
            ys, xs = rng.integers(0, H - 28, n), rng.integers(x0, x1 - 28, n)
            parts[into].append(np.stack([img[a : a + 28, b : b + 28] for a, b in zip(ys, xs, strict=True)]))
            parts[into + 1].append(np.full(n, c))
    X, y, Xt, yt = (np.concatenate(p) for p in parts)
    return X, y, Xt, yt


def data_set(name: str, data_dir: Path | None) -> Images:
    changes: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
        "mnist": lambda X, rng: X,
        "mnist-inverted": lambda X, rng: 1.0 - X,
        "mnist-noisy": lambda X, rng: np.clip(X + rng.normal(0, 0.1, X.shape), 0, 1).astype(np.float32),
        "mnist-shifted": _shift,
        "mnist-rotated": _rotate,
    }
    if name in changes:
        return _mnist(data_dir, changes[name])
    return _digits() if name == "digits" else _textures()


def one_class(images: Images, c: int, score_name: str) -> float:
    from sklearn.metrics import roc_auc_score

    X, y, Xt, yt = images
    Xc = X[y == c]
    if score_name in PRESET_SCORES:
        config = preset(score_name)
        splits = split(Xc, None, seed=0)
        pca = config.pca
        est = PCA(pca.n_components, min_components=pca.min_components, device="cpu", score=config.score)
        est.set_params(layout="image").fit(splits.X_train, splits.X_val)
    else:
        pool, relative, neighbors = SCORES[score_name]
        Xc = Xc[np.random.default_rng(0).permutation(len(Xc))[: int(TRAIN_SHARE * len(Xc))]]
        score = ScoreConfig(pool=pool, relative=relative, neighbors=neighbors, reference_rows=4096)
        est = PCA(K, device="cpu", score=score, layout="image").fit(Xc)
    return 100.0 * float(roc_auc_score(yt != c, est.score_samples(Xt)))


def main(argv: list[str] | None = None) -> int:
    names = ["mnist", "mnist-inverted", "mnist-noisy", "mnist-shifted", "mnist-rotated", "digits", "textures"]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the MNIST IDX .gz files")
    p.add_argument("--sets", default=",".join(names), help=f"comma-separated subset of {names}")
    scores = [*SCORES, *PRESET_SCORES]
    p.add_argument("--scores", default="all", help=f"'all', 'presets' or comma-separated names of {scores}")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    chosen = {"all": scores, "presets": PRESET_SCORES}.get(args.scores) or args.scores.split(",")
    for score in chosen:
        if score not in scores:
            p.error(f"unknown score {score!r}; expected some of {scores}")
    results: dict[str, dict[str, list[float]]] = {}
    print("| data set | score | " + " | ".join(f"c{c}" for c in range(10)) + " | mean | min |")
    print("|" + "---|" * 14)
    for name in args.sets.split(","):
        if name not in names:
            p.error(f"unknown set {name!r}; expected some of {names}")
        t0 = time.perf_counter()
        images = data_set(name, args.data_dir)
        for score in chosen:
            aurocs = [one_class(images, c, score) for c in range(10)]
            results.setdefault(name, {})[score] = aurocs
            cells = " | ".join(f"{a:.1f}" for a in aurocs)
            print(
                f"| {name} | {score} | {cells} | **{np.mean(aurocs):.1f}** | {min(aurocs):.1f} |", flush=True
            )
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
