"""The PCA family: our own eigen-decomposition PCA, and scikit-learn's full / randomized /
incremental / kernel PCA, all behind the same estimator contract.

Linear models expose `center_` (d,), `scale_` (d,) and `components_` (k, d) so that
    Z = ((X - center_) / scale_) @ components_.T        X_hat = (Z @ components_) * scale_ + center_
with any standardisation folded in; `training.onnx_linear` turns these into ONNX graphs.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

from latentserve_core.manifest import RotationSpec, ScoreSpec
from training.base import (
    DETAIL_QUANTILE,
    F32,
    ROTATION_FILE,
    ReconstructionEstimator,
    check_score_terms,
    check_weight,
    floored_scale,
    score_spec,
)
from training.config import PCAConfig, ScoreConfig
from training.device import resolve_device
from training.errors import DataError, UsageError
from training.nn.config import check_turn_settings

F64 = npt.NDArray[np.float64]
TERM_FLOOR = 1e-6  # the rotation term's 99% quantile is divided by at least this (the term is in nats)
_DEFAULT = PCAConfig()  # the estimators' defaults are the config's
_SCORE = ScoreConfig()


def resolve_n_components(n_components: float, ratios: F64, min_components: int = 1) -> int:
    """An int keeps that many; a float in (0, 1) keeps the fewest reaching that variance share, but
    at least `min_components` (and at most all of them)."""
    if isinstance(n_components, int) or (float(n_components).is_integer() and n_components >= 1):
        k = int(n_components)
        if not 1 <= k <= len(ratios):
            raise UsageError(f"n_components={k} must be between 1 and {len(ratios)}")
        return k
    if not 0.0 < n_components < 1.0:
        raise UsageError(f"n_components={n_components} must be an integer >= 1 or a fraction in (0, 1)")
    reached = int(np.searchsorted(np.cumsum(ratios), n_components - 1e-12)) + 1
    return min(max(reached, min_components), len(ratios))


def _deterministic_signs(components: F64) -> F64:
    """Flip each component so that its largest-magnitude entry is positive."""
    idx = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), idx])
    signs[signs == 0] = 1.0
    out: F64 = components * signs[:, None]
    return out


def _refuse_constant(constant: bool, columns: int, rows: int) -> None:
    """Every column constant: no direction of variance, so every row would score 0 and no
    threshold could ever flag one; refused rather than published."""
    if constant:
        raise DataError(
            f"every one of the {columns} columns is constant over the {rows} rows: nothing to learn, "
            "and a model of it could never flag a row; train on data that varies"
        )


def _gram_eigh(Xs: F64) -> tuple[F64, F64]:
    """The covariance's eigenpairs from the rows' Gram matrix (n x n, for n rows < d columns):
    Xc Xc^T u = lambda u gives the covariance's eigenvector Xc^T u / ||Xc^T u|| with the same
    eigenvalue / (n - 1); the covariance's other d - n eigenvalues are 0."""
    Xc = Xs - Xs.mean(axis=0)
    n = len(Xc)
    vals, U = np.linalg.eigh(Xc @ Xc.T / (n - 1))
    keep = vals > max(float(vals.max()), 0.0) * 1e-12 * n
    vals, U = vals[keep], U[:, keep]
    vecs = Xc.T @ U
    vecs /= np.linalg.norm(vecs, axis=0, keepdims=True)
    return vals, vecs


class PCAFamily(ReconstructionEstimator):
    """What the PCA family shares: its score settings, given to __init__ and applied by `fit`.

    `score` (ScoreConfig) shapes score_spec_; `layout` names the rows' layout for it (None: features
    for rows (n, F), image otherwise); with `score.neighbors` K, fit keeps the codes of at most
    `score.reference_rows` training rows (chosen with `seed`) as reference_codes_ (R, k), and with
    `score.balance` weighs that term on the validation rows X_val.
    """

    # the manifest's `score` records them; `device` (where a rotation term trains) only in the
    # subclasses whose own solver ignores it, PCA's own solver runs there too
    score_params: ClassVar[tuple[str, ...]] = ("score", "layout", "device")

    score: ScoreConfig
    layout: str | None
    seed: int
    device: str  # where a rotation term's network trains (auto | cpu | cuda); PCA's own solver too

    def _check_score(self, n_rows: int, X_val: F32 | None) -> None:
        """Refuse a score setting that cannot apply to n_rows training rows of shape input_shape_
        (and X_val), before any training."""
        self._score_spec(self.input_shape_)
        check_score_terms(self.score, n_rows, X_val is not None and len(X_val) > 0)
        if self.score.rotation is not None:
            check_turn_settings(self._turn_shape(), self.score.rotation_size, self.score.rotation_epochs)
            if importlib.util.find_spec("torch") is None:
                raise UsageError(
                    "--score-rotation trains a network: install torch (scripts/setup.sh train), or train "
                    "without the term: --preset one-class-images-pca"
                )

    def _score_spec(self, row_shape: tuple[int, ...], scale: F64 | None = None) -> ScoreSpec:
        layout = self.layout or ("features" if len(row_shape) == 1 else "image")
        return score_spec(row_shape, layout, self.score, None if scale is None else scale.tolist())

    def _fit_score(self, X: F32, X_val: F32 | None, scale: F64 | None) -> None:
        """The fitted model's score_spec_ (errors divided by `scale`, when standardised), with its
        neighbors term from the training rows X and the term's weight from X_val."""
        self.score_spec_ = self._score_spec(self.input_shape_, scale)
        score = self.score
        if score.neighbors:
            self._fit_neighbors(X, score.neighbors, max_rows=score.reference_rows, seed=self.seed)
        if score.balance and X_val is not None:  # X_val was checked by _check_score
            self._balance_neighbors(X_val)
        if score.detail is not None and X_val is not None:  # it weighs the parts above
            self._fit_detail(X, X_val, score.detail, score.detail_weight, seed=self.seed)
        if score.rotation is not None and X_val is not None:  # last: it weighs all the parts above
            self._fit_rotation(
                X,
                X_val,
                score.rotation,
                size=score.rotation_size,
                epochs=score.rotation_epochs,
                seed=self.seed,
                device=self.device,
            )

    def _turn_shape(self) -> tuple[int, int, int]:
        """The image shape a rotation term turns, or a UsageError for feature and sequence rows."""
        shape = self.image_shape()
        if shape is None:
            raise UsageError(f"--score-rotation needs image rows, got rows of shape {self.input_shape_}")
        return shape

    def image_shape(self) -> tuple[int, int, int] | None:
        """The rows' image shape (H, W, C), or None for feature and sequence rows."""
        shape = self.input_shape_
        layout = getattr(self, "layout", None) or ("features" if len(shape) == 1 else "image")
        if layout != "image":
            return None
        if len(shape) == 2:
            return (shape[0], shape[1], 1)
        return (shape[0], shape[1], shape[2]) if len(shape) == 3 else None

    def _fit_rotation(
        self, X: F32, X_val: F32, weight: float, *, size: int, epochs: int, seed: int, device: str
    ) -> PCAFamily:
        """Add the rotation term (docs/score.md, step 7): a network trained on the training images
        X to tell their four quarter turns apart (`training.nn.turns`), kept as `rotation_`. The
        score so far and the term are then divided by their DETAIL_QUANTILE on the validation rows
        X_val, the term times `weight`. Call it last. Returns self."""
        from training.nn.turns import fit_turn_term  # torch only where the term is asked for

        shape = self._turn_shape()
        check_weight("--score-rotation", weight)
        spec = self.score_spec_.model_copy(update={"rotation": None})
        self.score_spec_ = spec
        X_val2 = np.asarray(self._flat(X_val), dtype=np.float32)
        self.rotation_, pool = fit_turn_term(
            self._flat(X), shape, size=size, epochs=epochs, seed=seed, device=device, X_check=X_val2
        )
        first = self.score_samples(X_val2).astype(np.float64)
        term = self.rotation_(X_val2).astype(np.float64)
        tiny = float(np.finfo(np.float32).tiny)
        q_first = float(np.quantile(first, DETAIL_QUANTILE)) + tiny
        q_term = max(float(np.quantile(term, DETAIL_QUANTILE)), TERM_FLOOR)  # the weight stays <= 1e6 x W
        rotation = RotationSpec(
            file=ROTATION_FILE, pool=pool, primary_weight=1.0 / q_first, weight=weight / q_term
        )
        self.score_spec_ = spec.model_copy(update={"rotation": rotation})
        return self


class LinearCodec(PCAFamily):
    """Shared maths of the linear models (ours and scikit-learn's PCA / IncrementalPCA)."""

    center_: F64
    scale_: F64
    components_: F64
    explained_variance_: F64
    explained_variance_ratio_: F64
    mean_std_: F64  # the standardisation's mean (the plain mean when not standardising)

    standardize: bool
    scale_floor: float  # standardising: floor each std at this quantile of the stds (training.base)

    def _standardisation(self, X2: F32) -> tuple[F64, F64]:
        mean = X2.mean(axis=0, dtype=np.float64)
        if not self.standardize:
            return mean, np.ones(X2.shape[1])
        return mean, floored_scale(X2.std(axis=0, dtype=np.float64), self.scale_floor)

    def _finish(self, mean_std: F64, pca_mean: F64, scale: F64, components: F64) -> None:
        # fold the standardisation and PCA's centring into one centre
        self.scale_ = scale
        self.center_ = mean_std + scale * pca_mean
        self.components_ = components
        self.latent_dim_ = len(components)

    def _encode(self, X2: F32) -> F32:
        Z = ((X2.astype(np.float64) - self.center_) / self.scale_) @ self.components_.T
        return Z.astype(np.float32)

    def _decode(self, Z: F32) -> F32:
        X_hat = (Z.astype(np.float64) @ self.components_) * self.scale_ + self.center_
        return X_hat.astype(np.float32)

    def to_sklearn(self) -> Any:
        """A fitted scikit-learn PCA (in a Pipeline after a StandardScaler when standardised)."""
        from sklearn.decomposition import PCA as SkPCA
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        k, d = self.components_.shape
        pca = SkPCA(n_components=k)
        pca.components_ = self.components_.copy()
        # with a scaler in front, PCA sees standardised rows; alone, it sees raw rows
        pca.mean_ = (self.center_ - self.mean_std_) / self.scale_ if self.standardize else self.center_.copy()
        pca.n_components_ = k
        pca.n_features_in_ = d
        pca.explained_variance_ = self.explained_variance_[:k].copy()
        pca.explained_variance_ratio_ = self.explained_variance_ratio_[:k].copy()
        pca.singular_values_ = np.sqrt(np.maximum(pca.explained_variance_, 0.0))
        pca.noise_variance_ = 0.0
        pca.n_samples_ = 0
        if not self.standardize:
            return pca
        scaler = StandardScaler()
        scaler.mean_ = self.mean_std_.copy()
        scaler.scale_ = self.scale_.copy()
        scaler.var_ = self.scale_**2
        scaler.n_features_in_ = d
        scaler.n_samples_seen_ = 0
        return make_pipeline(scaler, pca)


class PCA(LinearCodec):
    """PCA as the theorem derives it: centre, covariance, symmetric eigen-decomposition.

    Eigenpairs are sorted by decreasing eigenvalue; `n_components` keeps k of them (int) or the
    fewest reaching that explained-variance share (float; at least `min_components`). Runs through
    torch on CUDA when `device` resolves to a GPU, numpy otherwise.
    """

    kind = "pca"
    score_params = ("score", "layout", "seed")  # seed: picks a neighbors term's reference rows only

    def __init__(
        self,
        n_components: float = PCAConfig.DEFAULT_SHARE,
        *,
        min_components: int = _DEFAULT.min_components,
        standardize: bool = False,
        scale_floor: float = _DEFAULT.scale_floor,
        device: str = "auto",
        score: ScoreConfig = _SCORE,
        layout: str | None = None,
        seed: int = 0,
    ) -> None:
        self.n_components = n_components
        self.min_components = min_components
        self.standardize = standardize
        self.scale_floor = scale_floor
        self.device = device
        self.score = score
        self.layout = layout
        self.seed = seed

    def fit(self, X: F32, X_val: F32 | None = None) -> PCA:
        """X: (n, *shape), X_val: validation rows (m, *shape) (read by score.balance only). Learns
        center_, scale_, components_ (k, d), explained variance, score_spec_ (and reference_codes_)."""
        X2 = self._remember_shape(X)
        self._check_score(len(X2), X_val)
        if len(X2) < 2:
            raise DataError("PCA needs at least 2 rows")
        _refuse_constant(bool(np.all(X2[:1] == X2)), X2.shape[1], len(X2))
        mean, scale = self._standardisation(X2)
        Xs = (X2 - mean) / scale
        eigvals, eigvecs = self._eigh(Xs)
        self._keep(eigvals, eigvecs, mean, Xs.mean(axis=0), scale)
        self._fit_score(X, X_val, scale if self.standardize else None)
        return self

    def fit_moments(self, n: int, mean: F64, m2: F64, X: F32, X_val: F32 | None = None) -> PCA:
        """Fit from the moments of n rows instead of the rows: their mean (d,) and the sum of the
        outer products of their centred values m2 (d, d), as a distributed pass computes them
        (`training.spark_fit`); then the same standardisation and eigen-decomposition as `fit`.
        X (m, *shape): a sample of those rows, for their shape and a neighbors term's reference
        codes; X_val: validation rows, as `fit`'s."""
        if n < 2:
            raise DataError("PCA needs at least 2 rows")
        _refuse_constant(not bool((np.diag(m2) > 0).any()), len(mean), n)
        self.input_shape_ = tuple(int(d) for d in np.shape(X)[1:])
        self.n_features_in_ = int(np.prod(self.input_shape_))
        self._check_score(len(X), X_val)
        std = np.sqrt(np.maximum(np.diag(m2), 0.0) / n)  # numpy's std (ddof=0), as _standardisation
        scale = floored_scale(std, self.scale_floor) if self.standardize else np.ones(len(mean))
        cov = m2 / (n - 1) / np.outer(scale, scale)
        eigvals, eigvecs = np.linalg.eigh(cov)
        self._keep(eigvals, eigvecs, mean, np.zeros(len(mean)), scale)
        self._fit_score(X, X_val, scale if self.standardize else None)
        return self

    def _keep(self, eigvals: F64, eigvecs: F64, mean: F64, pca_mean: F64, scale: F64) -> None:
        """Sort the eigenpairs, keep n_components of them, fold the centring and scale in."""
        order = np.argsort(eigvals)[::-1]
        eigvals = np.clip(eigvals[order], 0.0, None)
        eigvecs = eigvecs[:, order]
        total = eigvals.sum()
        ratios = eigvals / total if total > 0 else np.zeros_like(eigvals)
        k = resolve_n_components(self.n_components, ratios, self.min_components)
        self.explained_variance_ = eigvals
        self.explained_variance_ratio_ = ratios
        self.mean_std_ = mean
        self._finish(mean, pca_mean, scale, _deterministic_signs(eigvecs[:, :k].T))

    def _eigh(self, Xs: F64) -> tuple[F64, F64]:
        if len(Xs) < Xs.shape[1]:  # more columns than rows: the n x n Gram matrix, not d x d
            return _gram_eigh(Xs)
        device = resolve_device(self.device)
        if device == "cuda":
            import torch

            T = torch.as_tensor(Xs, dtype=torch.float64, device="cuda")
            T = T - T.mean(dim=0)
            cov = T.T @ T / (len(T) - 1)
            vals, vecs = torch.linalg.eigh(cov)
            return vals.cpu().numpy(), vecs.cpu().numpy()
        Xc = Xs - Xs.mean(axis=0)
        cov = Xc.T @ Xc / (len(Xc) - 1)
        vals, vecs = np.linalg.eigh(cov)
        return vals, vecs


class SklearnPCA(LinearCodec):
    """scikit-learn's PCA with the `full` or `randomized` SVD solver."""

    kind = "sklearn-pca"

    def __init__(
        self,
        n_components: float = PCAConfig.DEFAULT_SHARE,
        *,
        solver: Literal["full", "randomized"] = _DEFAULT.solver,
        standardize: bool = False,
        scale_floor: float = _DEFAULT.scale_floor,
        seed: int = 0,
        score: ScoreConfig = _SCORE,
        layout: str | None = None,
        device: str = "auto",
    ) -> None:
        self.n_components = n_components
        self.solver = solver
        self.standardize = standardize
        self.scale_floor = scale_floor
        self.seed = seed
        self.score = score
        self.layout = layout
        self.device = device

    def fit(self, X: F32, X_val: F32 | None = None) -> SklearnPCA:
        from sklearn.decomposition import PCA as SkPCA

        X2 = self._remember_shape(X)
        self._check_score(len(X2), X_val)
        mean, scale = self._standardisation(X2)
        Xs = (X2 - mean) / scale
        n_comp: Any = self.n_components
        if self.solver == "randomized":
            if not float(n_comp).is_integer():
                raise UsageError("the randomized solver needs an integer n_components, not a fraction")
            n_comp = int(n_comp)
        elif float(n_comp).is_integer():
            n_comp = int(n_comp)
        est = SkPCA(n_components=n_comp, svd_solver=self.solver, random_state=self.seed).fit(Xs)
        self.explained_variance_ = est.explained_variance_
        self.explained_variance_ratio_ = est.explained_variance_ratio_
        self.mean_std_ = mean
        self._finish(mean, est.mean_, scale, est.components_.astype(np.float64))
        self._fit_score(X, X_val, scale if self.standardize else None)
        return self


class IncrementalPCA(LinearCodec):
    """scikit-learn's IncrementalPCA, fed in mini-batches: a memory-mapped .npy larger than memory
    streams through it, `batch_size` rows at a time (two passes when standardising)."""

    kind = "incremental-pca"
    score_params = ("score", "layout", "seed", "device")  # seed: picks a neighbors term's reference rows only

    def __init__(
        self,
        n_components: float = PCAConfig.DEFAULT_SHARE,
        *,
        min_components: int = _DEFAULT.min_components,
        batch_size: int = _DEFAULT.batch_size,
        standardize: bool = False,
        scale_floor: float = _DEFAULT.scale_floor,
        score: ScoreConfig = _SCORE,
        layout: str | None = None,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.n_components = n_components
        self.min_components = min_components
        self.batch_size = batch_size
        self.standardize = standardize
        self.scale_floor = scale_floor
        self.score = score
        self.layout = layout
        self.seed = seed
        self.device = device

    def fit(self, X: F32, X_val: F32 | None = None) -> IncrementalPCA:
        from sklearn.decomposition import IncrementalPCA as SkIPCA

        n = len(X)
        self.input_shape_ = tuple(int(d) for d in X.shape[1:])
        self.n_features_in_ = d = int(np.prod(self.input_shape_))
        self._check_score(n, X_val)
        frac = float(self.n_components) < 1
        # IncrementalPCA carries only its components from batch to batch; tracking more than k
        # (then truncating) keeps the top-k subspace close to the exact one.
        k_fit = d if frac else min(d, max(2 * int(self.n_components), int(self.n_components) + 10))
        k_fit = min(k_fit, n)
        if not frac and int(self.n_components) > k_fit:
            raise UsageError(f"n_components={int(self.n_components)} needs at least that many rows; got {n}")
        batch = max(self.batch_size, k_fit)
        # chunk boundaries; a short tail joins the chunk before it (partial_fit needs >= k_fit rows)
        starts = list(range(0, n, batch))
        if len(starts) > 1 and n - starts[-1] < k_fit:
            starts.pop()

        def chunks() -> Any:
            for i, start in enumerate(starts):
                stop = starts[i + 1] if i + 1 < len(starts) else n
                C = np.asarray(X[start:stop], dtype=np.float64).reshape(-1, d)
                bad = ~np.isfinite(C).all(axis=1)
                if bad.any():  # a memory-mapped file is checked here, as it streams
                    raise DataError(f"row {start + int(np.argmax(bad))} contains NaN or infinity")
                yield C

        total = np.zeros(d)
        total_sq = np.zeros(d)
        for C in chunks():
            total += C.sum(axis=0)
            total_sq += (C**2).sum(axis=0)
        mean = total / n
        std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
        scale = floored_scale(std, self.scale_floor) if self.standardize else np.ones(d)
        est = SkIPCA(n_components=k_fit)
        for C in chunks():
            est.partial_fit((C - mean) / scale)
        ratios = est.explained_variance_ratio_
        k = resolve_n_components(self.n_components, ratios, self.min_components)
        self.explained_variance_ = est.explained_variance_
        self.explained_variance_ratio_ = ratios
        self.mean_std_ = mean
        self._finish(mean, est.mean_, scale, est.components_[:k].astype(np.float64))
        self._fit_score(X, X_val, scale if self.standardize else None)
        return self


class KernelPCA(PCAFamily):
    """scikit-learn's KernelPCA (rbf by default) with a learned inverse transform so decode works.

    The kernel matrix is n x n: at most `max_rows` training rows are used (a seeded subset).
    """

    kind = "kernel-pca"

    def __init__(
        self,
        n_components: int = PCAConfig.DEFAULT_KERNEL_K,
        *,
        kernel: str = _DEFAULT.kernel,
        gamma: float | None = _DEFAULT.gamma,
        alpha: float = _DEFAULT.alpha,
        standardize: bool = False,
        max_rows: int = _DEFAULT.max_rows,
        seed: int = 0,
        score: ScoreConfig = _SCORE,
        layout: str | None = None,
        device: str = "auto",
    ) -> None:
        self.n_components = n_components
        self.kernel = kernel
        self.gamma = gamma
        self.alpha = alpha
        self.standardize = standardize
        self.max_rows = max_rows
        self.seed = seed
        self.score = score
        self.layout = layout
        self.device = device

    def fit(self, X: F32, X_val: F32 | None = None) -> KernelPCA:
        from sklearn.decomposition import KernelPCA as SkKPCA
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if not float(self.n_components).is_integer() or self.n_components < 1:
            raise UsageError("kernel-pca needs an integer n_components >= 1")
        X2 = self._remember_shape(X)
        self._check_score(len(X2), X_val)
        if len(X2) > self.max_rows:
            X2 = X2[np.random.default_rng(self.seed).choice(len(X2), self.max_rows, replace=False)]
        kpca = SkKPCA(
            n_components=int(self.n_components),
            kernel=self.kernel,
            gamma=self.gamma,
            alpha=self.alpha,
            fit_inverse_transform=True,
            random_state=self.seed,
        )
        steps = [StandardScaler(), kpca] if self.standardize else [kpca]
        self.estimator_ = make_pipeline(*steps).fit(X2.astype(np.float64))
        self.latent_dim_ = int(self.n_components)
        # errors are measured in the units the fitted scaler standardises to
        self._fit_score(X, X_val, self.estimator_[0].scale_ if self.standardize else None)
        return self

    def _encode(self, X2: F32) -> F32:
        return np.asarray(self.estimator_.transform(X2.astype(np.float64)), dtype=np.float32)

    def _decode(self, Z: F32) -> F32:
        return np.asarray(self.estimator_.inverse_transform(Z.astype(np.float64)), dtype=np.float32)

    def to_sklearn(self) -> Any:
        return self.estimator_
