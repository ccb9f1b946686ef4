"""Score a Spark DataFrame where it lives, with the service's own scores (`docs/spark.md`).

    pip install 'latentserve-client[spark]'

    from latentserve_client.spark import score
    scored = score(df, "models/breast-cancer-pca/1")          # a version folder
    scored = score(df, "breast-cancer-pca", registry="models")   # NAME[:VERSION] in a registry folder
    scored = score(df, "breast-cancer-pca", service="http://host:8000", api_key=...)  # a running service

The model's ONNX graphs reach each executor once (a broadcast), each Python worker loads them once
(`_bundle.runtime`), and rows go through the scoring core (`latentserve_core`) in Arrow batches: the
same code, hence the same scores, thresholds and p-values, as `/anomaly-score`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from latentserve_client.spark._bundle import Bundle, from_folder, from_registry, from_service
from latentserve_client.spark._udf import OUTPUTS, Output, scoring_udf
from latentserve_core.errors import InvalidInput
from latentserve_core.runtime.base import alpha_threshold

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

OnInvalid = Literal["fail", "null"]

__all__ = ["OUTPUTS", "Bundle", "OnInvalid", "Output", "load_model", "score"]


def load_model(
    model: str | Path,
    *,
    registry: str | Path | None = None,
    service: str | None = None,
    api_key: str | None = None,
) -> Bundle:
    """A version folder; or NAME[:VERSION] in the `registry` folder; or NAME[:VERSION] on a running
    `service` (URL). Every file is checked against its manifest sha256."""
    if service is not None:
        return from_service(service, str(model), api_key=api_key)
    if registry is not None:
        return from_registry(Path(registry), str(model))
    return from_folder(Path(model))


def score(
    df: DataFrame,
    model: str | Path | Bundle,
    *,
    columns: str | Sequence[str] | None = None,
    outputs: Sequence[Output] = ("score", "p_value", "is_anomaly"),
    on_invalid: OnInvalid = "fail",
    id_column: str | None = None,
    registry: str | Path | None = None,
    service: str | None = None,
    api_key: str | None = None,
    alpha: float | None = None,
) -> DataFrame:
    """`df` with the `outputs` columns added: `score` (float), `p_value` (float), `is_anomaly`
    (boolean, score > the calibrated threshold), `code` (array<float>, the latent code).

    Features are taken by the manifest's feature names (any order in `df`), else from `columns`: a
    list of numeric columns (one per value, in the model's order), or one array column holding a
    whole row (an image's pixels). A column that is missing or not numeric is an InvalidInput here,
    before any job runs.

    A row with a null, NaN or infinite feature never gets a number. `on_invalid="fail"` (the
    default) fails the job with a message naming the column and the row (by `id_column` when
    given); `on_invalid="null"` gives it null outputs and the reason in an added `error` column.
    With `alpha` (a false-positive rate in (0, 1)) `is_anomaly` is p_value <= alpha, as
    `/anomaly-score`'s `alpha` (the rule is checked here, before any job runs).
    Works on streaming DataFrames as on batch ones."""
    bundle = (
        model
        if isinstance(model, Bundle)
        else load_model(model, registry=registry, service=service, api_key=api_key)
    )
    features = _feature_columns(df, bundle, columns)
    outs = _checked_outputs(df, outputs, on_invalid)
    if id_column is not None and id_column not in df.columns:
        raise InvalidInput(f"id_column: {id_column!r} is not a column of the DataFrame", field="id_column")
    if alpha is not None:  # the service's own check: in (0, 1) and reachable with these calibration scores
        calibration = np.asarray(bundle.manifest.threshold.calibration_scores, dtype=np.float32)
        alpha_threshold(calibration, float(alpha), bundle.label)
    broadcast = df.sparkSession.sparkContext.broadcast(bundle)
    udf = scoring_udf(broadcast, features, outs, on_invalid, id_column, alpha)
    from pyspark.sql import functions as F

    args = [F.col(c) for c in features] if isinstance(features, list) else [F.col(features)]
    if id_column is not None:
        args.append(F.col(id_column).cast("string"))
    result = "__latentserve"
    scored = df.withColumn(result, udf(*args))
    added = [*outs, "error"] if on_invalid == "null" else list(outs)
    return scored.select(*[F.col(c) for c in df.columns], *[F.col(f"{result}.{o}").alias(o) for o in added])


def _feature_columns(df: DataFrame, bundle: Bundle, columns: str | Sequence[str] | None) -> list[str] | str:
    """The columns the model reads, checked against the DataFrame's schema."""
    from pyspark.sql.types import ArrayType, NumericType

    spec = bundle.manifest.input
    types = {f.name: f.dataType for f in df.schema.fields}
    if columns is None:
        if spec.feature_names is None:
            raise InvalidInput(
                f"columns: {bundle.label} has no feature names in its manifest (a {spec.layout} model of "
                f"{spec.size} values a row); name its columns with columns=[...] ({spec.size} numeric "
                "columns, in order) or columns='col' (one array column)",
                field="columns",
            )
        columns = list(spec.feature_names)
    if isinstance(columns, str):
        t = types.get(columns)
        if t is None:
            raise InvalidInput(f"columns: the DataFrame has no column {columns!r}", field="columns")
        if not (isinstance(t, ArrayType) and isinstance(t.elementType, NumericType)):
            raise InvalidInput(
                f"columns: {columns!r} is {t.simpleString()}, expected an array of numbers "
                f"({spec.size} values a row)",
                field="columns",
            )
        return columns
    names = list(columns)
    if len(names) != spec.size:
        raise InvalidInput(
            f"columns: {bundle.label} reads {spec.size} values a row, got {len(names)} column names",
            field="columns",
        )
    missing = [c for c in names if c not in types]
    if missing:
        raise InvalidInput(
            f"columns: the DataFrame has no column {missing[0]!r}, which {bundle.label} reads "
            f"(missing: {missing[:10]}{' ...' if len(missing) > 10 else ''})",
            field="columns",
            details={"missing": missing},
        )
    wrong = [c for c in names if not isinstance(types[c], NumericType)]
    if wrong:
        raise InvalidInput(
            f"columns: {wrong[0]!r} is {types[wrong[0]].simpleString()}, expected a number", field="columns"
        )
    return names


def _checked_outputs(df: DataFrame, outputs: Sequence[Output], on_invalid: OnInvalid) -> list[Output]:
    outs = list(dict.fromkeys(outputs))
    unknown = [o for o in outs if o not in OUTPUTS]
    if unknown or not outs:
        raise InvalidInput(f"outputs: expected some of {list(OUTPUTS)}, got {list(outputs)}", field="outputs")
    if on_invalid not in ("fail", "null"):
        raise InvalidInput(f"on_invalid: expected 'fail' or 'null', got {on_invalid!r}", field="on_invalid")
    added = [*outs, "error"] if on_invalid == "null" else outs
    taken = [o for o in added if o in df.columns]
    if taken:
        raise InvalidInput(
            f"outputs: the DataFrame already has a column {taken[0]!r}; rename it first", field="outputs"
        )
    return outs
