"""The estimator contract every training model follows (scikit-learn style).

`__init__` stores hyper-parameters only; `fit(X)` returns self; learned state ends in `_`; every
post-fit method checks the model is fitted and that rows have the shape seen at fit.
`score_samples` returns the per-row anomaly score (reconstruction error: higher is more unusual),
computed exactly as the service computes it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from latentserve_core.manifest import MAX_REFERENCE_ROWS, DetailSpec, NeighborsSpec, ScoreSpec
from latentserve_core.runtime.base import Detail, neighbor_distances, row_scores
from latentserve_core.runtime.rotation import RotationTerm
from training.config import ScoreConfig
from training.errors import UsageError

F32 = npt.NDArray[np.float32]
SCORE_BATCH = 4096  # rows scored at a time
REFERENCE_FILE = "neighbors.npy"  # the reference codes of a neighbors score, in the version folder
DETAIL_FILE = "detail.npy"  # a detail term's further directions (m, d)
DETAIL_REFERENCE_FILE = "detail-neighbors.npy"  # the reference rows' codes along them (R, m)
ROTATION_FILE = "rotation.onnx"  # a rotation term's network
DETAIL_QUANTILE = 0.99  # _fit_detail divides each part of the score by this quantile on validation rows
# _balance_neighbors: share of the two parts' total added to each before their ratio; when the kept
# components explain every feature, the residual is float32 rounding (up to ~1e-7 of the total for
# features far from zero) and the neighbors term must stay well above it
BALANCE_EPS = 1e-3


MIN_STD = 1e-12  # a feature with a smaller training std is constant: it keeps scale 1


def feature_scale(std: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The standardisation's divisor per feature: the training std, or 1 for constant features."""
    return np.where(std > MIN_STD, std, 1.0)


def floored_scale(std: npt.NDArray[np.float64], floor: float) -> npt.NDArray[np.float64]:
    """feature_scale, with each varying feature's std raised to at least the `floor` quantile of
    the varying features' stds (0: no floor). Standardising then evens out features of very
    different units without blowing up the many near-constant ones of an embedding vector."""
    scale = feature_scale(std)
    varying = std > MIN_STD
    if floor <= 0.0 or not varying.any():
        return scale
    return np.where(varying, np.maximum(std, np.quantile(std[varying], floor)), 1.0)


def allowed_difference(reference: Any, *, atol: float, rtol: float) -> float:
    """The largest max |got - reference| a parity check accepts: atol + rtol * max |reference|.

    The relative part is float32-scale slack: values of magnitude m carry rounding of ~6e-8 * m, so
    large codes or raw standardised features differ by more than a fixed atol after reordered sums.
    """
    ref = np.asarray(reference)
    return atol + rtol * (float(np.max(np.abs(ref))) if ref.size else 0.0)


def check_detail(share: float, weight: float) -> None:
    """A detail term's settings, or a UsageError naming the flag."""
    if not 0.0 < share < 1.0:
        raise UsageError(f"--score-detail must be a variance share in (0, 1), got {share}")
    if not weight > 0.0:
        raise UsageError(f"--score-detail-weight must be > 0, got {weight}")


def reference_index(n: int, max_rows: int, seed: int) -> npt.NDArray[np.int64]:
    """Which of n training rows a neighbors score keeps the codes of: all, or a seeded subset."""
    if n > max_rows:
        return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    return np.arange(n)


def score_spec(
    row_shape: tuple[int, ...], layout: str, score: ScoreConfig, scale: list[float] | None = None
) -> ScoreSpec:
    """The per-row score a model is calibrated and served with (docs/score.md), from `score`; a
    setting that cannot apply to these rows is a UsageError naming its flag (every kind shares this)."""
    d = int(np.prod(row_shape))
    reduction, topk, pool = score.reduction, score.topk, score.pool
    if reduction not in ("mean", "topk"):
        raise UsageError(f"--score-reduction: expected mean or topk, got {reduction!r}")
    if reduction == "topk" and not (topk is not None and 1 <= topk <= d):
        raise UsageError(f"--score-reduction topk needs --score-topk K with 1 <= K <= {d}")
    image_shape = None
    if pool is not None:
        if layout != "image" or not 2 <= len(row_shape) <= 3:
            raise UsageError(f"--score-pool needs image rows (H, W[, C]); these are {layout} rows")
        if pool < 1 or pool % 2 == 0:
            raise UsageError(f"--score-pool must be an odd window size like 3, got {pool}")
        image_shape = [*row_shape, 1] if len(row_shape) == 2 else list(row_shape)
    return ScoreSpec(
        reduction=reduction,  # type: ignore[arg-type]
        topk=topk if reduction == "topk" else None,
        scale=scale,
        pool=pool,
        image_shape=image_shape,
        relative=score.relative,
    )


def check_neighbors(score: ScoreConfig, n_rows: int, validation: bool) -> None:
    """Refuse a neighbors setting of `score` that a fit on n_rows training rows (and validation
    rows, when `validation`) cannot apply; the message names the flag."""
    k, max_rows = score.neighbors, score.reference_rows
    if k < 0:
        raise UsageError(f"--score-neighbors must be >= 0 (0: off), got {k}")
    if score.balance and not k:
        raise UsageError("--score-balance weighs the neighbors term: give --score-neighbors K too")
    if not k:
        return
    if not 1 <= max_rows <= MAX_REFERENCE_ROWS:
        raise UsageError(f"--score-reference-rows must be in [1, {MAX_REFERENCE_ROWS}], got {max_rows}")
    rows = min(n_rows, max_rows)
    if not 1 <= k <= rows:
        raise UsageError(f"--score-neighbors must be in [1, {rows}] (the reference rows), got {k}")
    if score.balance and not validation:
        raise UsageError("--score-balance weighs the neighbors term on validation rows: give fit(X, X_val)")


def check_weight(flag: str, weight: float) -> None:
    """A score part's weight: a finite number > 0, or a UsageError naming the flag."""
    if not (np.isfinite(weight) and weight > 0):
        raise UsageError(f"{flag} must be a weight > 0, got {weight}")


def check_score_terms(score: ScoreConfig, n_rows: int, validation: bool) -> None:
    """Refuse a neighbors, detail or rotation setting of `score` that a fit on n_rows training rows
    (and validation rows, when `validation`) cannot apply; the message names the flag."""
    check_neighbors(score, n_rows, validation)
    if score.rotation is not None:
        check_weight("--score-rotation", score.rotation)
        if not validation:
            raise UsageError(
                "--score-rotation divides each part by its quantile on validation rows: give fit(X, X_val)"
            )
    if score.detail is None:
        return
    check_detail(score.detail, score.detail_weight)
    if not validation:
        raise UsageError(
            "--score-detail divides each part by its quantile on validation rows: give fit(X, X_val)"
        )


class NotFittedError(RuntimeError):
    pass


class ReconstructionEstimator(ABC):
    """Base for every model: PCA family and autoencoders."""

    kind: str = ""
    score_params: ClassVar[tuple[str, ...]] = ()  # the __init__ arguments that shape the score only

    input_shape_: tuple[int, ...]
    n_features_in_: int
    latent_dim_: int
    score_spec_: ScoreSpec

    # ---- contract ---------------------------------------------------------------------------
    @abstractmethod
    def fit(self, X: F32, X_val: F32 | None = None) -> ReconstructionEstimator:
        """Learn from rows X (n, *shape); return self."""

    @abstractmethod
    def _encode(self, X2: F32) -> F32:
        """Flat rows (n, d) -> codes (n, k)."""

    @abstractmethod
    def _decode(self, Z: F32) -> F32:
        """Codes (n, k) -> flat rows (n, d)."""

    # ---- parameters (scikit-learn's get_params / set_params: `sklearn.base.clone` works) -------
    @classmethod
    def _param_names(cls) -> list[str]:
        """The arguments of __init__, which stores each as an attribute of the same name."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [
            p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The arguments given to __init__, by name (no nested estimators: `deep` changes nothing)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> ReconstructionEstimator:
        """Replace arguments given to __init__ (checked by the next `fit`); return self."""
        names = self._param_names()
        for key, value in params.items():
            if key not in names:
                raise ValueError(
                    f"invalid parameter {key!r} for {type(self).__name__}; expected one of {names}"
                )
            setattr(self, key, value)
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """The hyper-parameters the manifest records: get_params but the score settings, which the
        manifest's `score` section records as the fitted `score_spec_`."""
        return {k: v for k, v in self.get_params().items() if k not in self.score_params}

    # ---- public API -------------------------------------------------------------------------
    def encode(self, X: F32) -> F32:
        """Map rows (n, *shape) to codes Z (n, latent_dim)."""
        return self._encode(self._flat(X))

    def decode(self, Z: F32) -> F32:
        """Map codes (n, latent_dim) to rows (n, *shape)."""
        self._check_fitted()
        Z = np.asarray(Z, dtype=np.float32)
        if Z.ndim != 2 or Z.shape[1] != self.latent_dim_:
            raise ValueError(f"codes must have shape (n, {self.latent_dim_}), got {Z.shape}")
        return self._decode(Z).reshape((len(Z), *self.input_shape_))

    def reconstruct(self, X: F32) -> F32:
        """Encode then decode rows (n, *shape); returns X_hat (n, *shape)."""
        X2 = self._flat(X)
        return self._decode(self._encode(X2)).reshape((len(X2), *self.input_shape_))

    def score_samples(self, X: F32) -> F32:
        """Per-row anomaly score (n,): the reconstruction error (plus, with a neighbors score, the
        codes' distance to the reference codes) as the service computes it."""
        X2 = self._flat(X)
        reference = getattr(self, "reference_codes_", None)
        detail = getattr(self, "detail_", None)
        rotation: RotationTerm | None = None
        if self.score_spec_.rotation is not None:
            rotation = self.rotation_  # type: ignore[attr-defined]  # set by PCAFamily._fit_rotation
        parts = []
        for i in range(0, len(X2), SCORE_BATCH):  # bounded memory for large or memory-mapped X
            rows = np.asarray(X2[i : i + SCORE_BATCH], dtype=np.float32)
            Z = self._encode(rows)
            turned = rotation(rows) if rotation is not None else None
            parts.append(row_scores(rows, self._decode(Z), self.score_spec_, Z, reference, detail, turned))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def _fit_detail(
        self, X: F32, X_val: F32, share: float, weight: float, *, seed: int = 0
    ) -> ReconstructionEstimator:
        """Add the detail term (docs/score.md, step 6): the principal directions of the training
        rows' error (X, scaled as the score scales it) that, with the model's own, reach `share` of
        their variance (at least one) as `detail_` (m, d), and with a neighbors score the codes of
        the same reference rows along them. Both parts of the score are then divided by their
        DETAIL_QUANTILE on the validation rows X_val, the detail term times `weight`. Call it last,
        after _fit_neighbors (same X and seed) and _balance_neighbors. Returns self."""
        check_detail(share, weight)
        X2, spec = self._flat(X), self.score_spec_.model_copy(update={"detail": None})
        scale = np.asarray(spec.scale if spec.scale is not None else np.ones(X2.shape[1]), dtype=np.float64)
        moment = np.zeros((X2.shape[1], X2.shape[1]))
        sums, squares = np.zeros(X2.shape[1]), np.zeros(X2.shape[1])
        for i in range(0, len(X2), SCORE_BATCH):
            rows = np.asarray(X2[i : i + SCORE_BATCH], dtype=np.float32)
            err = (rows - self._decode(self._encode(rows))).astype(np.float64) / scale
            moment += err.T @ err
            scaled = rows.astype(np.float64) / scale
            sums += scaled.sum(axis=0)
            squares += np.square(scaled).sum(axis=0)
        w, V = np.linalg.eigh(moment / len(X2))
        w, V = np.maximum(w[::-1], 0.0), V[:, ::-1]
        total = float(np.sum(squares / len(X2) - np.square(sums / len(X2))))  # the rows' variance
        explained = total - float(w.sum())
        m = int(np.searchsorted(explained + np.cumsum(w), share * total - 1e-12 * total)) + 1
        m = min(max(m, 1), len(w))
        components = np.ascontiguousarray(V[:, :m].T, dtype=np.float32)
        reference, reference_file = None, None
        if spec.neighbors is not None:
            idx = reference_index(len(X2), spec.neighbors.reference_rows, seed)  # fit_neighbors' rows
            rows = np.asarray(X2[idx], dtype=np.float32)
            err32 = ((rows - self._decode(self._encode(rows))) / scale).astype(np.float32)
            reference, reference_file = np.ascontiguousarray(err32 @ components.T), DETAIL_REFERENCE_FILE
        self.detail_ = Detail(components=components, reference=reference)
        unit = DetailSpec(
            components=m, file=DETAIL_FILE, reference_file=reference_file, primary_weight=1.0, weight=1.0
        )
        self.score_spec_ = spec
        first = self.score_samples(X_val).astype(np.float64)
        self.score_spec_ = spec.model_copy(update={"detail": unit})
        term = self.score_samples(X_val).astype(np.float64) - first
        tiny = float(np.finfo(np.float32).tiny)
        q_first = float(np.quantile(first, DETAIL_QUANTILE)) + tiny
        q_term = float(np.quantile(term, DETAIL_QUANTILE)) + tiny
        weighted = unit.model_copy(update={"primary_weight": 1.0 / q_first, "weight": weight / q_term})
        self.score_spec_ = spec.model_copy(update={"detail": weighted})
        return self

    def _fit_neighbors(self, X: F32, k: int, *, max_rows: int, seed: int) -> None:
        """Add the neighbors term to the score: keep the codes of at most `max_rows` rows of X (the
        training rows; a seeded subset when there are more) as `reference_codes_` (R, latent_dim),
        and average the squared distances to the k nearest of them (1 <= k <= R, checked before)."""
        X2 = self._flat(X)
        rows = min(len(X2), max_rows)
        idx = reference_index(len(X2), max_rows, seed)
        codes = [
            self._encode(np.asarray(X2[idx[i : i + SCORE_BATCH]], dtype=np.float32))
            for i in range(0, len(idx), SCORE_BATCH)
        ]
        self.reference_codes_ = np.ascontiguousarray(np.concatenate(codes), dtype=np.float32)
        neighbors = NeighborsSpec(k=k, reference_rows=rows, file=REFERENCE_FILE)
        self.score_spec_ = self.score_spec_.model_copy(update={"neighbors": neighbors})

    def _balance_neighbors(self, X: F32) -> None:
        """Weight the neighbors term (added by `_fit_neighbors`) so that, on rows X (held-out
        training rows), its mean equals the reconstruction error's: neither part of the score drowns
        the other, whatever the data's units, dimension or spectrum."""
        nb = self.score_spec_.neighbors
        if nb is None:
            raise UsageError("--score-balance needs a neighbors term (--score-neighbors K)")
        X2 = self._flat(X)
        plain = self.score_spec_.model_copy(update={"neighbors": None})
        reference: F32 = self.reference_codes_  # type: ignore[attr-defined]
        residual, near = 0.0, 0.0
        for i in range(0, len(X2), SCORE_BATCH):
            rows = np.asarray(X2[i : i + SCORE_BATCH], dtype=np.float32)
            Z = self._encode(rows)
            residual += float(row_scores(rows, self._decode(Z), plain).sum(dtype=np.float64))
            near += float(neighbor_distances(Z, reference, nb.k).sum(dtype=np.float64)) / X2.shape[1]
        # the floor keeps the weight finite and positive when a part is (nearly) zero everywhere
        eps = BALANCE_EPS * (residual + near) + np.finfo(np.float32).tiny
        weighted = nb.model_copy(update={"weight": (residual + eps) / (near + eps)})
        self.score_spec_ = self.score_spec_.model_copy(update={"neighbors": weighted})

    # ---- helpers ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "input_shape_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    def _remember_shape(self, X: F32) -> F32:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim < 2 or len(X) == 0:
            raise ValueError(f"X must have shape (n, ...) with n >= 1, got {X.shape}")
        self.input_shape_ = tuple(int(d) for d in X.shape[1:])
        self.n_features_in_ = int(np.prod(self.input_shape_))
        return X.reshape(len(X), -1)

    def _flat(self, X: F32) -> F32:
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if tuple(X.shape[1:]) != self.input_shape_ and tuple(X.shape[1:]) != (self.n_features_in_,):
            raise ValueError(
                f"X has rows of shape {list(X.shape[1:])}; this model was fitted on {list(self.input_shape_)}"
            )
        return X.reshape(len(X), -1)
