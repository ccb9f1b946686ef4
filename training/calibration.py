"""The anomaly threshold: a quantile of reconstruction errors on held-out calibration rows."""

from __future__ import annotations

import numpy as np

from latentserve_core.manifest import Threshold
from training.base import F32
from training.config import ScoreConfig
from training.errors import UsageError

MAX_STORED_SCORES = 5000


def calibrate(scores: F32, quantile: float = ScoreConfig.quantile) -> Threshold:
    """Threshold at `quantile` of `scores`; keeps the sorted scores (or a 5001-point quantile table
    of them when there are more) so that the service can turn any score into a p-value."""
    if not 0.0 < quantile < 1.0:
        raise UsageError(f"quantile must be in (0, 1), got {quantile}")
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if len(s) == 0 or not np.isfinite(s).all():
        raise ValueError("calibration scores must be finite and non-empty")
    # the "higher" quantile: at most (1 - q) of the calibration rows lie strictly above it
    value = float(np.quantile(s, quantile, method="higher"))
    stored = s if len(s) <= MAX_STORED_SCORES else np.quantile(s, np.linspace(0, 1, MAX_STORED_SCORES + 1))
    return Threshold(
        value=value,
        quantile=quantile,
        n_calibration=len(s),
        calibration_scores=[float(v) for v in np.maximum.accumulate(stored.astype(np.float32))],
    )
