"""The pandas UDF that scores one Arrow batch on an executor through the scoring core."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd  # at run time: pandas_udf reads score_batch's annotations

from latentserve_client.spark._bundle import Bundle, runtime
from latentserve_core.errors import InvalidInput

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql.types import StructType

Output = Literal["score", "p_value", "is_anomaly", "code"]
OUTPUTS: tuple[Output, ...] = ("score", "p_value", "is_anomaly", "code")


def result_schema(outs: list[Output], on_invalid: str) -> StructType:
    from pyspark.sql.types import ArrayType, BooleanType, FloatType, StringType, StructField, StructType

    types = {
        "score": FloatType(),
        "p_value": FloatType(),
        "is_anomaly": BooleanType(),
        "code": ArrayType(FloatType()),
    }
    fields = [StructField(o, types[o]) for o in outs]
    if on_invalid == "null":
        fields.append(StructField("error", StringType()))
    return StructType(fields)


def scoring_udf(
    bundle: Broadcast[Bundle],
    features: list[str] | str,
    outs: list[Output],
    on_invalid: str,
    id_column: str | None,
    alpha: float | None = None,
) -> Callable[..., Any]:
    """A pandas UDF from the feature columns (then the id, as a string) to a struct of the outputs."""
    from pyspark.sql.pandas.functions import pandas_udf

    def score_batch(*columns: pd.Series) -> pd.DataFrame:
        return score_rows(list(columns), bundle.value, features, outs, on_invalid, id_column, alpha)

    # non-deterministic, so that the optimizer never runs it once per output field it extracts
    return pandas_udf(score_batch, result_schema(outs, on_invalid)).asNondeterministic()  # type: ignore[call-overload,no-any-return]


def score_rows(
    columns: list[pd.Series],
    bundle: Bundle,
    features: list[str] | str,
    outs: list[Output],
    on_invalid: str,
    id_column: str | None,
    alpha: float | None = None,
) -> pd.DataFrame:
    """Score one batch: what /anomaly-score computes, row for row (`ModelRuntime.compute` and `judge`)."""
    rt = runtime(bundle)
    ids = columns.pop() if id_column is not None else None
    n, size = len(columns[0]), rt.row_size
    X, reasons = _features(columns, features, size)
    bad = np.flatnonzero([r is not None for r in reasons])
    if len(bad) and on_invalid == "fail":
        i = int(bad[0])
        where = f"{id_column}={ids.iloc[i]!r}" if ids is not None else _position(i)
        raise InvalidInput(
            f"{bundle.label}: row {where}: {reasons[i]} ({len(bad)} such rows in this batch); "
            "clean the rows first, or score with on_invalid='null' to get null outputs and the reason "
            "in an error column",
            field="columns",
        )
    good = np.setdiff1d(np.arange(n), bad, assume_unique=True)
    out: dict[str, Any] = {}
    if len(good):
        Xg = rt.check_inputs(X[good])
        (scores,) = rt.compute("scores", Xg)
        _, is_anomaly, p_values = rt.judge(scores, alpha=alpha)
        found: dict[str, Any] = {"score": scores, "p_value": p_values, "is_anomaly": is_anomaly}
        if "code" in outs:
            found["code"] = rt.compute("encode", Xg)[0]
    for o in outs:
        if o == "code":
            column = np.full(n, None, dtype=object)
            for j, i in enumerate(good):
                column[i] = found["code"][j]
            out[o] = column
        elif o == "is_anomaly":
            flags = pd.array([None] * n, dtype="boolean")
            if len(good):
                flags[good] = found[o]
            out[o] = flags
        else:
            values = np.full(n, np.nan, dtype=np.float32)  # NaN goes to Arrow as null
            if len(good):
                values[good] = found[o]
            out[o] = values
    if on_invalid == "null":
        out["error"] = pd.array(reasons, dtype="string")
    return pd.DataFrame(out)


def _features(columns: list[pd.Series], features: list[str] | str, size: int) -> tuple[Any, list[str | None]]:
    """X (n, size) float32 and, per row, why it cannot be scored (None when it can)."""
    n = len(columns[0])
    reasons: list[str | None] = [None] * n
    if isinstance(features, str):
        X = np.full((n, size), np.nan, dtype=np.float64)
        for i, v in enumerate(columns[0]):
            if v is None:
                reasons[i] = f"column '{features}' is null"
            elif len(v) != size:
                reasons[i] = f"column '{features}' holds {len(v)} values, expected {size}"
            else:
                X[i] = np.asarray(v, dtype=np.float64)  # a null element becomes NaN
        names = [features] * size
    else:
        X = np.stack([c.to_numpy(dtype=np.float64, na_value=np.nan) for c in columns], axis=1)
        names = features
    with np.errstate(over="ignore", invalid="ignore"):
        X32 = X.astype(np.float32)
    finite = np.isfinite(X32)
    for row in np.flatnonzero(~finite.all(axis=1)).tolist():
        if reasons[row] is None:
            j = int(np.argmin(finite[row]))
            what = (
                "null or NaN" if np.isnan(X[row, j]) else "infinite or beyond float32's range (about 3.4e38)"
            )
            reasons[row] = f"column '{names[j]}' is {what}" + (
                f" (value {j})" if isinstance(features, str) else ""
            )
    return X32, reasons


def _position(i: int) -> str:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    part = f" of partition {ctx.partitionId()}" if ctx is not None else ""
    return f"{i} of a batch{part} (pass id_column= to name rows by an id)"
