"""The training range check: a request far outside the values a model was trained on is refused.

The manifest records the training rows' range [lo, hi] (`InputSpec.value_range`). A value is far
outside when it lies more than MARGIN training ranges (w = hi - lo) beyond it: below lo - MARGIN * w
or above hi + MARGIN * w. A row is far outside when more than FAR_SHARE of its d values, and at
least min(FAR_VALUES, d) of them, are. A request is refused (`InputOutOfRange`, 422, with both
ranges and the fix) when more than half of its rows are far outside: that is the 0-255 image
sent to a model of [0, 1] images (over 5% of any MNIST digit's pixels are above 11), or a table
in other units. What stays scoreable: a minority of broken rows in a request, a row with a few
values far out (an anomaly in a standardised table), and any value merely outside [lo, hi].

Cost: when the request's min and max are within the margin (the common case), those two
reductions; otherwise one more vectorised pass to count per row. No per-row Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from latentserve_core.errors import InputOutOfRange

MARGIN = 10.0  # training ranges beyond either end of [lo, hi] before a value counts as far outside
FAR_SHARE = 0.02  # a row is far outside when more than this share of its values are...
FAR_VALUES = 8  # ...and at least this many (all of them in rows of fewer values)
ROWS_SHARE = 0.5  # a request is refused when more than this share of its rows are far outside


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
        """Raise InputOutOfRange when most rows of X (n, ...) (finite float32) lie far outside."""
        low, high = X.min(), X.max()
        floor, ceiling = self.low, self.high
        if low >= floor and high <= ceiling:  # the common case
            return
        flat = X.reshape(len(X), -1)
        d = flat.shape[1]
        far = np.count_nonzero(np.less(flat, floor) | np.greater(flat, ceiling), axis=1)
        rows = int(np.count_nonzero((far >= min(FAR_VALUES, d)) & (far > FAR_SHARE * d)))
        if rows > ROWS_SHARE * len(X):
            raise InputOutOfRange(
                field, self.label, (float(low), float(high)), self.expected, rows, len(X), MARGIN
            )
