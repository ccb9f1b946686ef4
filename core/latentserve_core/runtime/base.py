"""The one interface every artifact format implements; scores and p-values are written once here."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from latentserve_core.errors import IntegrityError, InvalidInput
from latentserve_core.manifest import FileEntry, Manifest, ScoreSpec, sha256_of
from latentserve_core.runtime.ranges import RangeCheck
from latentserve_core.runtime.rotation import load_rotation

FloatArray = npt.NDArray[np.float32]
Op = Literal["encode", "decode", "reconstruct", "scores"]


@dataclass(frozen=True)
class Detail:
    """The arrays of a score's detail term (docs/score.md, step 6): the further principal
    directions (m, d) and, with neighbors, the reference rows' codes along them (R, m)."""

    components: FloatArray
    reference: FloatArray | None


@dataclass(frozen=True)
class Reconstruction:
    """X_hat has the rows' shape (n, *input.shape); scores has shape (n,)."""

    X_hat: FloatArray
    scores: FloatArray


_NOT_FINITE = "contains NaN or infinity, or a value beyond float32's range (about 3.4e38)"
TIMED_MIN_ROWS = 32  # smaller calls are mostly fixed overhead: they would overstate the cost per row
RELATIVE_EPS = 1e-6  # added to the row variance that spec.relative divides by
DISTANCE_BLOCK_BYTES = 1 << 23  # (rows x reference) distances per block; 64 MiB blocks ran ~20x slower


def row_scores(
    X: FloatArray,
    X_hat: FloatArray,
    spec: ScoreSpec,
    Z: FloatArray | None = None,
    reference: FloatArray | None = None,
    detail: Detail | None = None,
    rotation: FloatArray | None = None,
) -> FloatArray:
    """Per-row anomaly score (n,), as specified in docs/score.md (the numpy implementation); a score
    with a rotation term takes the term's values (n,), computed by its network."""
    err: FloatArray = X.reshape(len(X), -1) - X_hat.reshape(len(X_hat), -1)
    if spec.scale is not None:
        err = np.divide(err, np.asarray(spec.scale, dtype=np.float32), dtype=np.float32)
    diff = _pooled(err, spec)
    sq: FloatArray = np.square(diff, dtype=np.float32)
    if spec.reduction == "topk" and spec.topk is not None and spec.topk < sq.shape[1]:
        k = spec.topk
        sq = np.partition(sq, sq.shape[1] - k, axis=1)[:, -k:]
    out: FloatArray = sq.mean(axis=1, dtype=np.float32)
    if spec.neighbors is not None:
        if Z is None or reference is None:
            raise ValueError("a score with neighbors needs the codes Z and the reference codes")
        near = neighbor_distances(Z, reference, spec.neighbors.k) / np.float32(diff.shape[1])
        if spec.neighbors.weight is not None:
            near = np.multiply(near, np.float32(spec.neighbors.weight), dtype=np.float32)
        out = np.add(out, near, dtype=np.float32)
    if spec.relative:
        x = X.reshape(len(X), -1).astype(np.float32, copy=False)
        if spec.scale is not None:
            x = np.divide(x, np.asarray(spec.scale, dtype=np.float32), dtype=np.float32)
        centred = x - x.mean(axis=1, keepdims=True, dtype=np.float32)
        contrast = np.square(centred, dtype=np.float32).mean(axis=1, dtype=np.float32)
        out = np.divide(out, contrast + np.float32(RELATIVE_EPS), dtype=np.float32)
    if spec.detail is not None:
        if detail is None:
            raise ValueError("a score with detail needs its directions (and, with neighbors, their codes)")
        part = _detail_term(err, spec, Z, reference, detail)
        first = np.multiply(out, np.float32(spec.detail.primary_weight), dtype=np.float32)
        out = np.add(
            first, np.multiply(part, np.float32(spec.detail.weight), dtype=np.float32), dtype=np.float32
        )
    if spec.rotation is not None:
        if rotation is None:
            raise ValueError("a score with a rotation term needs the term's values")
        first = np.multiply(out, np.float32(spec.rotation.primary_weight), dtype=np.float32)
        turned = np.multiply(rotation, np.float32(spec.rotation.weight), dtype=np.float32)
        out = np.add(first, turned, dtype=np.float32)
    return out


def _pooled(err: FloatArray, spec: ScoreSpec) -> FloatArray:
    """Step 2: the error averaged over pool x pool windows (unchanged without a pool)."""
    if spec.pool is not None and spec.pool > 1 and spec.image_shape is not None:
        return box_mean(err, spec.pool, spec.image_shape)
    return err


def _detail_term(
    err: FloatArray, spec: ScoreSpec, Z: FloatArray | None, reference: FloatArray | None, detail: Detail
) -> FloatArray:
    """Step 6 before its weight: the error (n, d) left after the further directions, pooled, squared
    and averaged, plus the neighbors term over the codes extended by those directions."""
    C = np.asarray(detail.components, dtype=np.float32)
    Zx = err @ C.T
    rest = _pooled(np.subtract(err, Zx @ C, dtype=np.float32), spec)
    out: FloatArray = np.square(rest, dtype=np.float32).mean(axis=1, dtype=np.float32)
    if spec.neighbors is not None:
        if Z is None or reference is None or detail.reference is None:
            raise ValueError("a detail term with neighbors needs the codes and both reference codes")
        codes = np.concatenate([np.asarray(Z, dtype=np.float32).reshape(len(Z), -1), Zx], axis=1)
        refs = np.concatenate([reference, detail.reference], axis=1)
        near = neighbor_distances(codes, refs, spec.neighbors.k) / np.float32(err.shape[1])
        out = np.add(out, near, dtype=np.float32)
    return out


def distance_block_rows(reference_rows: int) -> int:
    """Rows per block of a neighbors score, so that (rows x reference) float32 distances stay
    under DISTANCE_BLOCK_BYTES."""
    return max(1, DISTANCE_BLOCK_BYTES // (4 * reference_rows))


def neighbor_distances(Z: FloatArray, reference: FloatArray, k: int) -> FloatArray:
    """Mean squared Euclidean distance of each code (n, m) to its k nearest rows of reference (R, m),
    as ||z||^2 - 2 z.r + ||r||^2 with the k smallest clipped at 0 (the form the ONNX graph
    computes); (n,) float32. Rows go in blocks so that the distances stay under
    DISTANCE_BLOCK_BYTES."""
    Z32 = np.asarray(Z, dtype=np.float32).reshape(len(Z), -1)
    R_m2 = np.float32(-2.0) * np.asarray(reference, dtype=np.float32).T
    r_sq = np.square(reference, dtype=np.float32).sum(axis=1, dtype=np.float32)
    block = distance_block_rows(len(r_sq))
    out = np.empty(len(Z32), dtype=np.float32)
    for i in range(0, len(Z32), block):
        z = Z32[i : i + block]
        z_sq = np.square(z, dtype=np.float32).sum(axis=1, keepdims=True, dtype=np.float32)
        dist = (z @ R_m2 + z_sq) + r_sq
        if k < len(r_sq):
            dist = np.partition(dist, k - 1, axis=1)[:, :k]
        out[i : i + block] = np.maximum(dist, np.float32(0.0)).mean(axis=1, dtype=np.float32)
    return out


def box_mean(flat: FloatArray, size: int, image_shape: list[int]) -> FloatArray:
    """Mean over size x size windows (odd size, zero padding, stride 1) of rows (n, H*W*C) laid out
    as (H, W, C) images; returns the same shape. Matches ONNX AveragePool with count_include_pad=1."""
    H, W, C = image_shape
    r = size // 2
    img = flat.reshape(len(flat), H, W, C).astype(np.float64)
    padded = np.pad(img, ((0, 0), (r + 1, r), (r + 1, r), (0, 0)))
    csum = padded.cumsum(axis=1).cumsum(axis=2)
    window = csum[:, size:, size:] - csum[:, :-size, size:] - csum[:, size:, :-size] + csum[:, :-size, :-size]
    out: FloatArray = (window / (size * size)).reshape(len(flat), -1).astype(np.float32)
    return out


def load_reference(manifest: Manifest, folder: Path) -> FloatArray | None:
    """The reference codes a neighbors score measures distances to (sha256-checked), or None."""
    nb = manifest.score.neighbors
    if nb is None:
        return None
    return _load_npy(manifest, folder, "reference", nb.file, (nb.reference_rows, manifest.latent_dim))


def load_detail(manifest: Manifest, folder: Path) -> Detail | None:
    """The arrays of a score's detail term (sha256-checked), or None."""
    spec = manifest.score.detail
    if spec is None:
        return None
    C = _load_npy(manifest, folder, "detail", spec.file, (spec.components, manifest.input.size))
    R = None
    if spec.reference_file is not None and manifest.score.neighbors is not None:
        rows = manifest.score.neighbors.reference_rows
        R = _load_npy(manifest, folder, "reference", spec.reference_file, (rows, spec.components))
    return Detail(components=C, reference=R)


def _load_npy(manifest: Manifest, folder: Path, role: str, file: str, shape: tuple[int, int]) -> FloatArray:
    entry = next(f for f in manifest.files if f.role == role and f.path == file)
    path = verify_file(folder, entry, manifest)
    try:
        A = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IntegrityError(
            f"file {entry.path!r} is not a .npy array",
            field="files",
            model=manifest.name,
            version=manifest.version,
        ) from exc
    if A.dtype != np.float32 or A.shape != shape:
        raise IntegrityError(
            f"file {entry.path!r} holds {A.dtype} {list(A.shape)}, expected float32 {list(shape)}",
            field="files",
            model=manifest.name,
            version=manifest.version,
        )
    return np.ascontiguousarray(A)


def conformal_p_values(scores: FloatArray, calibration_sorted: FloatArray) -> FloatArray:
    """p = (1 + #{calibration scores >= s}) / (n + 1): small p means unusual."""
    n = len(calibration_sorted)
    at_least = n - np.searchsorted(calibration_sorted, scores, side="left")
    return ((1.0 + at_least) / (n + 1.0)).astype(np.float32)


def alpha_threshold(calibration_sorted: FloatArray, alpha: float, label: str = "the model") -> float:
    """The score cut-off t with (score > t) == (conformal p-value <= alpha) for these calibration
    scores; an InvalidInput naming `alpha` when it is not in (0, 1) or below the smallest p-value
    they can give, 1 / (n + 1), where no row could ever be flagged."""
    n = len(calibration_sorted)
    if not 0.0 < alpha < 1.0:
        raise InvalidInput(f"alpha: expected a false-positive rate in (0, 1), got {alpha!r}", field="alpha")
    # the p-values a score can get, (1 + k) / (n + 1) for k calibration scores >= it, as p_values rounds them
    levels = ((1.0 + np.arange(n + 1)) / (n + 1.0)).astype(np.float32)
    k = int(np.count_nonzero(levels <= alpha)) - 1  # flagged: at most k calibration scores >= the score
    if k < 0:
        raise InvalidInput(
            f"alpha: {alpha!r} is below the smallest p-value {label} can give, 1/(n + 1) = {levels[0]:.4g} "
            f"with its n = {n} calibration scores, so no row could be flagged; use alpha >= {levels[0]:.4g}",
            field="alpha",
            details={"smallest": float(levels[0]), "n_calibration": n},
        )
    return float(calibration_sorted[n - k - 1])


def verify_file(folder: Path, entry: FileEntry, manifest: Manifest) -> Path:
    """Return the file's path after checking its sha256 against the manifest."""
    path = folder / entry.path
    if not path.is_file():
        raise IntegrityError(
            f"file {entry.path!r} is missing", field="files", model=manifest.name, version=manifest.version
        )
    try:
        actual = sha256_of(path)
    except OSError as exc:  # unreadable (permissions, I/O): this version fails, the others load
        reason = exc.strerror or type(exc).__name__  # str(exc) would name the server path
        raise IntegrityError(
            f"file {entry.path!r} is unreadable: {reason}",
            field="files",
            model=manifest.name,
            version=manifest.version,
        ) from exc
    if actual != entry.sha256:
        raise IntegrityError(
            f"file {entry.path!r} has sha256 {actual[:12]}…, the manifest says {entry.sha256[:12]}…; "
            "refusing to load it",
            field="files",
            model=manifest.name,
            version=manifest.version,
        )
    return path


class ModelRuntime(ABC):
    """A loaded model version. Subclasses implement `_encode`, `_decode` and may fuse `_reconstruct`.

    Public methods take float32 arrays whose rows are flat (n, size) or shaped (n, *input.shape)
    and validate them; private ones compute on validated arrays.
    """

    format: str = ""

    def __init__(self, manifest: Manifest, folder: Path, *, numpy_scores: bool = True) -> None:
        """numpy_scores: whether this runtime scores through `row_scores` (False: a fused ONNX
        scorer computes every part, and a rotation term's own session is never opened)."""
        self.manifest = manifest
        self.row_shape: tuple[int, ...] = tuple(manifest.input.shape)
        self.row_size = manifest.input.size
        self._calibration = np.asarray(manifest.threshold.calibration_scores, dtype=np.float32)
        self._label = f"model {manifest.name!r} version {manifest.version}"  # for error messages
        self._seconds_per_row: dict[str, float] = {}  # by op, see predicted_seconds
        self._reference = load_reference(manifest, folder)
        self._detail = load_detail(manifest, folder)
        self._rotation = load_rotation(manifest, folder, open_session=numpy_scores)
        span = manifest.input.value_range
        self._range = RangeCheck(span, self._label) if span is not None else None
        # a neighbors score holds (rows x reference) distances: calls are cut into blocks of rows
        self._block_rows = distance_block_rows(len(self._reference)) if self._reference is not None else None

    @classmethod
    @abstractmethod
    def load(cls, manifest: Manifest, folder: Path, *, threads: int = 1) -> ModelRuntime:
        """Check every file's sha256, then load the artifacts."""

    @abstractmethod
    def _encode(self, X: FloatArray) -> FloatArray: ...

    @abstractmethod
    def _decode(self, Z: FloatArray) -> FloatArray: ...

    def _reconstruct(self, X: FloatArray) -> Reconstruction:
        Z = self._encode(X)
        X_hat = self._decode(Z).reshape(X.shape)
        turned = self._rotation(X) if self._rotation is not None else None
        scores = row_scores(X, X_hat, self.manifest.score, Z, self._reference, self._detail, turned)
        return Reconstruction(X_hat=X_hat, scores=scores)

    def _scores(self, X: FloatArray) -> FloatArray:
        """Per-row scores alone; formats with a fused scorer skip handing back X_hat."""
        return self._reconstruct(X).scores

    def compute(self, op: Op, X: FloatArray) -> tuple[FloatArray, ...]:
        """Run one model op on validated rows (`check_inputs` / `check_codes`). Every output has one
        row per input row, so calls on several requests' rows can be stacked into one and split
        again (`service.batching`): encode -> (Z,), decode -> (X_hat,), reconstruct -> (X_hat,
        scores), scores -> (scores,). Finite inputs can still overflow float32 inside the model
        (1e20 squared): an output row that is not finite is an InvalidInput naming the row (the
        batcher then reruns each request alone, so only the request that holds it fails)."""
        out = self._compute(op, X)
        field = "codes" if op == "decode" else "inputs"
        for name, A in zip(_OUTPUT_NAMES[op], out, strict=True):
            _check_finite(
                A, field, f"gives a non-finite {name} in {self._label}: too large for float32 arithmetic"
            )
        return out

    def _compute(self, op: Op, X: FloatArray) -> tuple[FloatArray, ...]:
        """`_run` on the whole call, in blocks of rows for a neighbors score; the call is timed once."""
        start = time.perf_counter()
        out: tuple[FloatArray, ...]
        b = self._block_rows
        if op in ("reconstruct", "scores") and b is not None and len(X) > b:
            parts = [self._run(op, X[i : i + b]) for i in range(0, len(X), b)]
            out = tuple(np.concatenate(column) for column in zip(*parts, strict=True))
        else:
            out = self._run(op, X)
        if len(X) >= TIMED_MIN_ROWS:
            rate = (time.perf_counter() - start) / len(X)
            old = self._seconds_per_row.get(op)
            self._seconds_per_row[op] = rate if old is None else old + 0.2 * (rate - old)
        return out

    def _run(self, op: Op, X: FloatArray) -> tuple[FloatArray, ...]:
        if op == "encode":
            return (self._encode(X),)
        if op == "decode":
            return (self._decode(X).reshape((len(X), *self.row_shape)),)
        if op == "reconstruct":
            rec = self._reconstruct(X)
            return rec.X_hat, rec.scores
        return (self._scores(X),)

    def predicted_seconds(self, op: Op, n: int) -> float | None:
        """How long `compute(op, n rows)` should take, from this version's own calls of at least
        TIMED_MIN_ROWS rows (a moving average of seconds per row); None before the first one."""
        rate = self._seconds_per_row.get(op)
        return None if rate is None else rate * n

    def p_values(self, scores: FloatArray) -> FloatArray:
        """Conformal p-values of scores against this version's calibration scores."""
        return conformal_p_values(scores, self._calibration)

    def prior_codes(self, n: int, seed: int | None = None) -> FloatArray:
        """n draws from the latent prior; only models whose latent is standard-normal have one."""
        m = self.manifest
        if m.latent_distribution != "standard-normal":
            raise InvalidInput(
                f"a {m.kind} has no generative latent (latent_distribution={m.latent_distribution!r}); "
                "/sample needs a standard-normal one, e.g. a VAE",
                field="model",
                model=m.name,
                version=m.version,
            )
        rng = np.random.default_rng(seed)
        return rng.standard_normal((n, m.latent_dim)).astype(np.float32)

    # ---- validation -------------------------------------------------------------------------
    def check_inputs(self, X: npt.NDArray[np.generic], field: str = "inputs") -> FloatArray:
        """Return X as float32 (n, *input.shape), or raise InvalidInput naming what was expected
        (InputOutOfRange for a request far outside the training range)."""
        name = self._label
        if X.ndim < 1 or X.shape[0] == 0:
            raise InvalidInput(f"{field}: expected at least one row for {name}", field=field)
        got = tuple(X.shape[1:])
        if got != self.row_shape and got != (self.row_size,):
            raise InvalidInput(
                f"{field}: {name} expects rows of shape {list(self.row_shape)} "
                f"(or {self.row_size} flat values), got rows of shape {list(got)}",
                field=field,
                details={"expected": list(self.row_shape), "got": list(got)},
            )
        with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf, refused below
            X32 = np.ascontiguousarray(X, dtype=np.float32).reshape((X.shape[0], *self.row_shape))
        _check_finite(X32, field, _NOT_FINITE)
        if self._range is not None:
            self._range.check(X32, field)
        return X32

    def check_codes(self, Z: npt.NDArray[np.generic], field: str = "codes") -> FloatArray:
        name = self._label
        k = self.manifest.latent_dim
        if Z.ndim != 2 or Z.shape[0] == 0 or Z.shape[1] != k:
            got = list(Z.shape[1:]) if Z.ndim >= 1 else []
            raise InvalidInput(
                f"{field}: {name} expects rows of {k} latent values, got rows of shape {got}",
                field=field,
                details={"expected": [k], "got": got},
            )
        with np.errstate(over="ignore", invalid="ignore"):
            Z32 = np.ascontiguousarray(Z, dtype=np.float32)
        _check_finite(Z32, field, _NOT_FINITE)
        return Z32

    # ---- public API -------------------------------------------------------------------------
    def encode(self, X: npt.NDArray[np.generic]) -> FloatArray:
        """Map inputs (n, *shape) to codes Z (n, latent_dim)."""
        return self._encode(self.check_inputs(X))

    def decode(self, Z: npt.NDArray[np.generic]) -> FloatArray:
        """Map codes (n, latent_dim) to outputs (n, *shape)."""
        Z32 = self.check_codes(Z)
        return self._decode(Z32).reshape((len(Z32), *self.row_shape))

    def reconstruct(self, X: npt.NDArray[np.generic]) -> Reconstruction:
        """Encode then decode; scores are the per-row reconstruction errors."""
        return self._reconstruct(self.check_inputs(X))

    def judge(
        self, scores: FloatArray, threshold: float | None = None, alpha: float | None = None
    ) -> tuple[float, npt.NDArray[np.bool_], FloatArray]:
        """The threshold used, which rows are anomalies, and the p-values. The threshold rule: score >
        threshold (the calibrated one unless given). With `alpha` (0 < alpha < 1; not with a
        threshold) the false-positive-rate rule: p-value <= alpha; the threshold is then the score
        cut-off that rule amounts to on these calibration scores (`alpha_threshold`)."""
        p_values = self.p_values(scores)
        if alpha is None:
            t = float(self.manifest.threshold.value if threshold is None else threshold)
            return t, scores > t, p_values
        t = alpha_threshold(self._calibration, alpha, self._label)
        return t, p_values <= alpha, p_values

    @staticmethod
    def feature_errors(X: FloatArray, X_hat: FloatArray) -> FloatArray:
        """Squared error per feature, shape of X (for images, the per-pixel error map)."""
        out: FloatArray = np.square(X - X_hat, dtype=np.float32)
        return out

    def sample(self, n: int, seed: int | None = None) -> FloatArray:
        """Decode n draws from the latent prior (models with latent_distribution=standard-normal)."""
        return self.compute("decode", self.prior_codes(n, seed))[0]


_OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "encode": ("code",),
    "decode": ("output",),
    "reconstruct": ("reconstruction", "score"),
    "scores": ("score",),
}


def _check_finite(A: FloatArray, field: str, what: str = "contains NaN or infinity") -> None:
    if np.isfinite(A).all():  # the common case: one pass, no per-row work
        return
    bad = ~np.isfinite(A.reshape(len(A), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:10].tolist()
        raise InvalidInput(
            f"{field}: row {rows[0]} {what} (bad rows: {rows})",
            field=field,
            details={"rows": rows},
        )
