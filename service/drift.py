"""Live score drift: every `/anomaly-score` score, against the version's calibration scores.

Per served model version (labels `model`, `version`), exported at scrape time:

    latentserve_score                                histogram of the scores; its buckets (`le`) sit
                                                     at calibration quantiles (CALIBRATION_LEVELS and
                                                     the threshold's own quantile)
    latentserve_score_expected_ratio{le}             share of calibration scores <= le: what each
                                                     cumulative bucket gets under no drift
    latentserve_score_threshold                      the calibrated threshold
    latentserve_score_above_threshold_total          scores above the threshold
    latentserve_score_above_threshold_ratio          their share since start-up (NaN before a score)
    latentserve_score_above_threshold_expected_ratio the share the calibration promised: 1 - quantile
    latentserve_score_psi                            population stability index over those buckets
    latentserve_score_ks                             KS distance (largest CDF gap) at the bucket edges

The two statistics are recomputed from the bucket counts at each scrape. An observation only
keeps the request's scores array (an append under a lock, about a microsecond); the waiting scores
are counted in one numpy pass once PENDING_ROWS of them or PENDING_ARRAYS requests wait, and at
every snapshot (a scrape, a UI page), so the counts a reader sees are always exact and a one-row
request does not pay numpy's per-call cost. A version's state starts at zero when it is first
scored or scraped and lives as long as the process.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from latentserve_core.manifest import Manifest
from service.registry import Registry

FloatArray = npt.NDArray[np.float64]
CALIBRATION_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DISPLAY_BINS = 40  # the bins of the version page's histogram (service.ui)
PENDING_ROWS = 4096  # scores kept uncounted at most (memory: 4 bytes each), then counted at once
PENDING_ARRAYS = 256  # requests' score arrays kept uncounted at most
PSI_FLOOR = 1e-4  # a bucket's share is floored at this so an empty bucket does not make PSI infinite


def _floor(shares: FloatArray) -> FloatArray:
    return np.maximum(shares, PSI_FLOOR)


@dataclass(frozen=True)
class DriftSnapshot:
    """A consistent copy of one version's counts and the statistics computed from them."""

    edges: FloatArray  # bucket upper bounds, ascending (the +Inf bucket is implicit)
    expected: FloatArray  # calibration share <= each edge
    cumulative: npt.NDArray[np.int64]  # live scores <= each edge
    n: int
    total: float
    above: int
    threshold: float
    promised_above: float
    display_edges: FloatArray
    calibration_display: FloatArray  # calibration share per display bin
    live_display: FloatArray  # live share per display bin (zeros before a score)

    @property
    def above_ratio(self) -> float:
        return self.above / self.n if self.n else math.nan

    @property
    def psi(self) -> float:
        """Population stability index: sum over buckets of (live - expected) * ln(live / expected)."""
        if not self.n:
            return math.nan
        live = np.diff(self.cumulative, prepend=0, append=self.n) / self.n
        expected = np.diff(self.expected, prepend=0.0, append=1.0)
        a, e = _floor(live), _floor(expected)
        return float(np.sum((a - e) * np.log(a / e)))

    @property
    def ks(self) -> float:
        """The largest gap between the live and calibration CDFs, at the bucket edges."""
        if not self.n:
            return math.nan
        return float(np.max(np.abs(self.cumulative / self.n - self.expected)))


@dataclass
class ScoreDrift:
    """One version's live score counts on the buckets of its calibration scores."""

    manifest: Manifest
    edges: FloatArray
    expected: FloatArray
    display_edges: FloatArray
    calibration_display: FloatArray
    counts: npt.NDArray[np.int64]  # per bucket, the last one above every edge
    display_counts: npt.NDArray[np.int64]
    n: int = 0
    total: float = 0.0
    above: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: list[npt.NDArray[Any]] = field(default_factory=list)  # scores not counted yet
    _pending_rows: int = 0

    @classmethod
    def of(cls, manifest: Manifest) -> ScoreDrift:
        t = manifest.threshold
        cal = np.asarray(t.calibration_scores, dtype=np.float64)
        levels = np.asarray(CALIBRATION_LEVELS, dtype=np.float64)
        edges = np.unique(np.append(np.quantile(cal, levels), t.value))
        expected = np.searchsorted(cal, edges, side="right") / len(cal)
        lo, hi = float(cal[0]), max(float(cal[-1]), t.value) * 1.25
        display_edges = np.linspace(lo, hi if hi > lo else lo + 1.0, DISPLAY_BINS + 1)
        cal_bins = np.bincount(_display_bin(display_edges, cal), minlength=DISPLAY_BINS)
        return cls(
            manifest,
            edges,
            expected,
            display_edges,
            cal_bins / len(cal),
            np.zeros(len(edges) + 1, dtype=np.int64),
            np.zeros(DISPLAY_BINS, dtype=np.int64),
        )

    def observe(self, scores: npt.NDArray[Any]) -> None:
        """Keep one request's scores; they are counted with the others waiting (`_count_pending`)."""
        s = np.asarray(scores).ravel()
        with self.lock:
            self._pending.append(s)
            self._pending_rows += len(s)
            if self._pending_rows >= PENDING_ROWS or len(self._pending) >= PENDING_ARRAYS:
                self._count_pending()

    def _count_pending(self) -> None:
        """Count every waiting score in one numpy pass (the lock is held)."""
        if not self._pending:
            return
        s = np.concatenate(self._pending).astype(np.float64, copy=False)
        self._pending, self._pending_rows = [], 0
        self.counts += np.bincount(np.searchsorted(self.edges, s, side="left"), minlength=len(self.counts))
        self.display_counts += np.bincount(_display_bin(self.display_edges, s), minlength=DISPLAY_BINS)
        self.n += len(s)
        self.total += float(s.sum())
        self.above += int(np.count_nonzero(s > self.manifest.threshold.value))

    def snapshot(self) -> DriftSnapshot:
        with self.lock:
            self._count_pending()
            counts, display, n, total, above = (
                self.counts.copy(),
                self.display_counts.copy(),
                self.n,
                self.total,
                self.above,
            )
        t = self.manifest.threshold
        return DriftSnapshot(
            edges=self.edges,
            expected=self.expected,
            cumulative=np.cumsum(counts)[:-1],
            n=n,
            total=total,
            above=above,
            threshold=t.value,
            promised_above=1.0 - t.quantile,
            display_edges=self.display_edges,
            calibration_display=self.calibration_display,
            live_display=display / n if n else np.zeros(DISPLAY_BINS),
        )


def _display_bin(edges: FloatArray, s: FloatArray) -> npt.NDArray[np.intp]:
    """The display bin of each score; scores outside the range go to the first or last bin."""
    return np.clip(np.searchsorted(edges, s, side="right") - 1, 0, DISPLAY_BINS - 1)


class Drift:
    """Every version's `ScoreDrift`, made on first use; a version whose manifest changed starts over."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, int], ScoreDrift] = {}
        self._lock = threading.Lock()

    def of(self, manifest: Manifest) -> ScoreDrift:
        key = (manifest.name, manifest.version)
        state = self._states.get(key)
        if state is None or state.manifest is not manifest:
            with self._lock:
                state = self._states.get(key)
                if state is None or state.manifest is not manifest:
                    state = self._states[key] = ScoreDrift.of(manifest)
        return state

    def observe(self, manifest: Manifest, scores: npt.NDArray[Any]) -> None:
        """Count the scores one `/anomaly-score` request produced."""
        self.of(manifest).observe(scores)


def _label(x: float) -> str:
    return repr(float(x))


class DriftCollector(Collector):
    """Read at scrape time: the drift of every ready version (see the module doc for the names)."""

    def __init__(self, registry: Registry, drift: Drift) -> None:
        self._registry = registry
        self._drift = drift

    def collect(self) -> Iterator[Any]:
        labels = ["model", "version"]
        hist = HistogramMetricFamily("latentserve_score", "Anomaly scores of /anomaly-score", labels=labels)
        expected = GaugeMetricFamily(
            "latentserve_score_expected_ratio",
            "Share of calibration scores <= le (each bucket's share under no drift)",
            labels=[*labels, "le"],
        )
        threshold = GaugeMetricFamily("latentserve_score_threshold", "Calibrated threshold", labels=labels)
        above = CounterMetricFamily(
            "latentserve_score_above_threshold", "Scores above the calibrated threshold", labels=labels
        )
        ratio = GaugeMetricFamily(
            "latentserve_score_above_threshold_ratio", "Share of scores above the threshold", labels=labels
        )
        promised = GaugeMetricFamily(
            "latentserve_score_above_threshold_expected_ratio",
            "Share above the threshold the calibration promised (1 - quantile)",
            labels=labels,
        )
        psi = GaugeMetricFamily(
            "latentserve_score_psi", "Population stability index of the scores vs calibration", labels=labels
        )
        ks = GaugeMetricFamily(
            "latentserve_score_ks", "KS distance of the scores vs calibration at the edges", labels=labels
        )
        for name, records in sorted(self._registry.records().items()):
            for version, record in sorted(records.items()):
                if record.runtime is None:
                    continue
                s = self._drift.of(record.runtime.manifest).snapshot()
                lv = [name, str(version)]
                buckets = [(_label(e), float(c)) for e, c in zip(s.edges, s.cumulative, strict=True)]
                hist.add_metric(lv, [*buckets, ("+Inf", float(s.n))], s.total)
                for e, share in zip(s.edges, s.expected, strict=True):
                    expected.add_metric([*lv, _label(e)], float(share))
                threshold.add_metric(lv, s.threshold)
                above.add_metric(lv, float(s.above))
                ratio.add_metric(lv, s.above_ratio)
                promised.add_metric(lv, s.promised_above)
                psi.add_metric(lv, s.psi)
                ks.add_metric(lv, s.ks)
        yield from (hist, expected, threshold, above, ratio, promised, psi, ks)
