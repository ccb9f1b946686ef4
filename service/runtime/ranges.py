"""The training range check: a request far outside the values a model was trained on is refused.

The manifest records the training rows' range [lo, hi] (`InputSpec.value_range`). A request is
refused (`InputOutOfRange`, 422) when, of its values, more than FAR_SHARE and at least FAR_VALUES
lie more than MARGIN training ranges (w = hi - lo) outside it, i.e. below lo - MARGIN * w or above
hi + MARGIN * w: its 2nd or 98th percentile is that far out. That is the 0-255 image sent to a
model of [0, 1] images (over 5% of a digit's pixels are above 11), while a request in which some
values are anomalous stays scoreable: a few rows with outlying values, or one row with a handful
of them, are under the share or the count. Values merely outside [lo, hi] (an anomaly, a
standardised table's outlier) are never refused. One pass (min and max) when the request is
inside, one more to count otherwise; no per-row Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from service.errors import InputOutOfRange

MARGIN = 10.0  # training ranges beyond either end of [lo, hi] before a value counts as far outside
FAR_SHARE = 0.02  # more than this share of the request's values far outside: refused
FAR_VALUES = 8  # ...and at least this many (a single row of a few features stays scoreable)


class RangeCheck:
    """The bounds of one version's range check; `check` raises for a request far outside."""

    def __init__(self, value_range: tuple[float, float], label: str) -> None:
        lo, hi = value_range
        width = hi - lo if hi > lo else max(abs(hi), 1.0)  # a constant training value: its own size
        self.expected = (lo, hi)
        self.low = np.float32(lo - MARGIN * width)
        self.high = np.float32(hi + MARGIN * width)
        self.label = label

    def check(self, X: npt.NDArray[np.float32], field: str) -> None:
        """Raise InputOutOfRange when X (finite float32) lies far outside the training range."""
        low, high = X.min(), X.max()
        floor, ceiling = self.low, self.high
        if low >= floor and high <= ceiling:  # the common case
            return
        far = int(np.count_nonzero(np.less(X, floor))) + int(np.count_nonzero(np.greater(X, ceiling)))
        if far >= FAR_VALUES and far > FAR_SHARE * X.size:
            raise InputOutOfRange(
                field, self.label, (float(low), float(high)), self.expected, far, int(X.size), MARGIN
            )
