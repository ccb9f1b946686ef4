"""The registry's contract: what `manifest.json` in every `MODELS_DIR/<name>/<version>/` holds.

The service owns this schema; the training package imports it to write manifests. Every field is
documented in `models/README.md`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MANIFEST_FILE = "manifest.json"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

ModelKind = Literal[
    "pca",
    "sklearn-pca",
    "incremental-pca",
    "kernel-pca",
    "dense",
    "linear",
    "conv",
    "lstm",
    "denoising",
    "vae",
]
ArtifactFormat = Literal["onnx", "joblib"]
# encoder: X -> Z; decoder: Z -> X_hat; scorer: X -> (X_hat, scores); estimator: a pickled
# scikit-learn object with transform / inverse_transform; reference: the codes of training rows that
# a score with `neighbors` measures distances to (an (R, latent_dim) float32 .npy); detail: the
# further principal directions of a score's detail term (an (m, d) float32 .npy); rotation: the
# network of a score's rotation term (an ONNX model, flat rows (n, d) -> the term (n,)).
FileRole = Literal[
    "encoder",
    "decoder",
    "scorer",
    "estimator",
    "reference",
    "detail",
    "rotation",
    "picture",
    "card",
    "report",
]
# the files an ONNX runtime loads (the service's own, or an offline scorer such as Spark's)
SCORER_ROLES: tuple[FileRole, ...] = ("encoder", "decoder", "scorer", "reference", "detail", "rotation")
MAX_REFERENCE_ROWS = 16384  # the most reference codes a score may keep: its cost never grows past it


def is_valid_name(name: str) -> bool:
    """Return True when `name` may name a model (no path separators, no traversal)."""
    return bool(_NAME_RE.fullmatch(name)) and name not in {".", ".."}


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    """One file of a version, relative to the version folder, with its checksum."""

    role: FileRole
    path: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="file name inside the version folder")
    format: ArtifactFormat | Literal["npy", "png", "md", "json"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class InputSpec(_Strict):
    """What one input row looks like. Rows may arrive flat (`size` values) or shaped."""

    shape: list[int] = Field(min_length=1, description="shape of one row, e.g. [8, 8] or [30]")
    dtype: Literal["float32"] = "float32"
    value_range: tuple[float, float] | None = Field(
        default=None, description="range the training data spanned, e.g. [0, 1] for images"
    )
    layout: Literal["features", "image", "sequence"] = "features"
    channels: int = Field(default=1, ge=1, description="image channels (1 grey, 3 RGB); last axis if > 1")
    feature_names: list[str] | None = Field(
        default=None,
        description="features: the training data's column names (CSV or parquet header), one per value",
    )

    @model_validator(mode="after")
    def _one_name_per_value(self) -> InputSpec:
        if self.feature_names is not None and len(self.feature_names) != self.size:
            raise ValueError(f"feature_names has {len(self.feature_names)} names for {self.size} values")
        return self

    @property
    def size(self) -> int:
        """Number of values in one flattened row."""
        n = 1
        for d in self.shape:
            n *= d
        return n


class Preprocessing(_Strict):
    """The preprocessing folded into the model graphs (clients send raw values)."""

    kind: Literal["none", "scale", "standardize"]
    description: str = ""


class DataSummary(_Strict):
    """What the model was trained on."""

    dataset: str
    rows_train: int = Field(ge=0)
    rows_validation: int = Field(ge=0)
    rows_calibration: int = Field(ge=0)
    classes: list[int] | None = None
    seed: int
    label_column: str | None = Field(
        default=None, description="the table column the labels came from (--label-column)"
    )


class EpochRecord(_Strict):
    epoch: int
    train_loss: float
    validation_loss: float | None = None


class Metrics(_Strict):
    """Training metrics; errors are the anomaly score (see ScoreSpec) averaged over rows."""

    train_error: float
    validation_error: float
    explained_variance: list[float] | None = None
    explained_variance_ratio: list[float] | None = None
    explained_variance_ratio_total: float | None = None
    history: list[EpochRecord] = Field(default_factory=list)


class NeighborsSpec(_Strict):
    """The code's distance to its nearest training codes, added to the reconstruction error.

    term = mean over the `k` nearest reference codes z_r of ||z - z_r||^2, divided by the row's
    size d (so it is in the units of a mean squared error). For a PCA in standardised units the
    two parts add up as the PCA theorem splits a squared distance: the part inside the kept subspace
    (this term) and the residual (the reconstruction error).
    """

    k: int = Field(ge=1, description="how many nearest reference codes are averaged")
    reference_rows: int = Field(
        ge=1, le=MAX_REFERENCE_ROWS, description="how many reference codes are kept (a seeded subset)"
    )
    file: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$", description="the version's file (role reference) holding them"
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        description="multiplies the term before it is added (None: 1); `fit` sets it so that both parts "
        "have the same mean on the validation rows",
    )

    @model_validator(mode="after")
    def _k_fits(self) -> NeighborsSpec:
        if self.k > self.reference_rows:
            raise ValueError(f"neighbors.k={self.k} exceeds reference_rows={self.reference_rows}")
        return self


class DetailSpec(_Strict):
    """A second, plain score added to the first (docs/score.md, step 6): the error left after `m`
    further principal directions (the model keeps more of the variance for this term), pooled as
    the first, squared and averaged, plus the neighbors term over the codes extended by those
    directions; never divided by the row's contrast. score = primary_weight * first + weight * this.
    """

    components: int = Field(ge=1, description="m, the further principal directions this term removes")
    file: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$",
        description="the version's file (role detail): float32 (m, d) directions",
    )
    reference_file: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="with score.neighbors: the file (role reference) holding the reference rows' codes "
        "along the m directions, float32 (reference_rows, m)",
    )
    primary_weight: float = Field(gt=0, description="multiplies the first score (steps 1-5)")
    weight: float = Field(gt=0, description="multiplies this term")


class RotationSpec(_Strict):
    """A learned score part added last (docs/score.md, step 7): a small network trained on the
    training images to tell their four quarter turns apart; the term is log(1 + the sum over the four
    turns of -log p(the right turn)), high for an image whose orientation the class does not explain.
    score = primary_weight * (steps 1-6) + weight * this term.
    """

    file: str = Field(
        pattern=r"^[A-Za-z0-9._-]+$",
        description="the version's file (role rotation): an ONNX model, flat rows (n, d) -> the term (n,)",
    )
    pool: int = Field(ge=1, description="the image is averaged over pool x pool blocks before it is turned")
    primary_weight: float = Field(gt=0, description="multiplies the score of steps 1-6")
    weight: float = Field(gt=0, description="multiplies this term")


class ScoreSpec(_Strict):
    """How a row's anomaly score is computed from input X and reconstruction X_hat (raw units),
    plus, with `neighbors`, its code's distance to the nearest training codes."""

    metric: Literal["mse"] = "mse"
    reduction: Literal["mean", "topk"] = "mean"
    topk: int | None = Field(default=None, ge=1, description="with reduction=topk: mean of the k largest")
    scale: list[float] | None = Field(
        default=None, description="per-feature scale the error is divided by (the standardisation's std)"
    )
    pool: int | None = Field(
        default=None,
        ge=1,
        description="images: average the signed error over pool x pool windows (odd; per channel, stride 1, "
        "zero padding) before squaring, so that a stroke shifted by a pixel costs less than a missing one",
    )
    image_shape: list[int] | None = Field(
        default=None, description="with pool: the rows' image shape [H, W, C] (C = 1 for grey)"
    )
    relative: bool = Field(
        default=False,
        description="divide the reduced error by the variance of the row's input values (scaled alike), "
        "i.e. its contrast, + 1e-6",
    )
    neighbors: NeighborsSpec | None = Field(
        default=None, description="add the code's mean squared distance to its k nearest training codes"
    )
    detail: DetailSpec | None = Field(
        default=None, description="add a second, plain score: the error after further principal directions"
    )
    rotation: RotationSpec | None = Field(
        default=None,
        description="add a learned part: how badly a network tells the image's quarter turns apart",
    )

    @model_validator(mode="after")
    def _pool_needs_shape(self) -> ScoreSpec:
        if self.pool is not None:
            if self.pool % 2 == 0:
                raise ValueError(f"pool must be odd (a centred window), got {self.pool}")
            if self.image_shape is None or len(self.image_shape) != 3 or min(self.image_shape) < 1:
                raise ValueError("pool needs image_shape [H, W, C]")
        return self

    @model_validator(mode="after")
    def _detail_codes_match(self) -> ScoreSpec:
        if self.detail is not None and (self.detail.reference_file is None) != (self.neighbors is None):
            raise ValueError("detail.reference_file is given exactly when score.neighbors is")
        return self


class Threshold(_Strict):
    """The anomaly threshold and what it was calibrated on."""

    value: float
    quantile: float = Field(gt=0.0, lt=1.0)
    method: str = "empirical quantile of scores on the held-out calibration split"
    n_calibration: int = Field(ge=1)
    calibration_scores: list[float] = Field(
        min_length=1,
        description="sorted calibration scores (all, or an evenly spaced quantile table of them)",
    )

    @field_validator("calibration_scores")
    @classmethod
    def _sorted(cls, v: list[float]) -> list[float]:
        if any(b < a for a, b in pairwise(v)):
            raise ValueError("calibration_scores must be sorted ascending")
        return v


class Manifest(_Strict):
    """Everything the service needs to load, check and describe one model version."""

    schema_version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    kind: ModelKind
    format: ArtifactFormat = Field(description="the format the service serves from")
    files: list[FileEntry] = Field(min_length=1)
    input: InputSpec
    preprocessing: Preprocessing
    latent_dim: int = Field(ge=1)
    latent_distribution: Literal["none", "standard-normal"] = Field(
        default="none", description="standard-normal: decoder maps N(0, I) samples to data (a VAE)"
    )
    data: DataSummary
    metrics: Metrics
    score: ScoreSpec = Field(default_factory=ScoreSpec)
    threshold: Threshold
    hyperparameters: dict[str, str | int | float | bool | list[int] | None] = Field(default_factory=dict)
    frameworks: dict[str, str] = Field(default_factory=dict)
    created_at: datetime

    @model_validator(mode="after")
    def _reference_listed(self) -> Manifest:
        nb = self.score.neighbors
        if nb is not None and not any(f.role == "reference" and f.path == nb.file for f in self.files):
            raise ValueError(f"score.neighbors.file {nb.file!r} is not listed in files with role reference")
        detail = self.score.detail
        if detail is not None:
            listed = {(f.role, f.path) for f in self.files}
            wanted = [("detail", detail.file)]
            if detail.reference_file is not None:
                wanted.append(("reference", detail.reference_file))
            for role, path in wanted:
                if (role, path) not in listed:
                    raise ValueError(f"score.detail's file {path!r} is not listed in files with role {role}")
        rotation = self.score.rotation
        if rotation is not None and not any(
            f.role == "rotation" and f.path == rotation.file and f.format == "onnx" for f in self.files
        ):
            raise ValueError(f"score.rotation.file {rotation.file!r} is not listed as an ONNX rotation file")
        return self

    def file(self, role: FileRole, format: ArtifactFormat | None = None) -> FileEntry | None:
        """Return the file with this role (and format), or None."""
        for entry in self.files:
            if entry.role == role and (format is None or entry.format == format):
                return entry
        return None

    @property
    def formats(self) -> list[ArtifactFormat]:
        """The artifact formats this version can be served from: ONNX with an encoder (a rotation
        term's network is an ONNX file too, but serves nothing alone), joblib with an estimator."""
        out: list[ArtifactFormat] = []
        for entry in self.files:
            if entry.format == "onnx" and entry.role == "encoder" and "onnx" not in out:
                out.append("onnx")
            if entry.format == "joblib" and "joblib" not in out:
                out.append("joblib")
        return out

    @property
    def serving_order(self) -> list[ArtifactFormat]:
        """`formats` in the order every reader tries them: ONNX first (loading it runs no code from
        the file), then the manifest's own."""
        return sorted(self.formats, key=lambda f: (f != "onnx", f != self.format))

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.model_validate_json((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
