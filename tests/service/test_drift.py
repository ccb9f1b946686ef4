"""Live score drift: buckets at the calibration quantiles, rate above threshold, PSI and KS."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from latentserve_core.manifest import Manifest
from service.drift import CALIBRATION_LEVELS, PENDING_ROWS, Drift, ScoreDrift
from tests.service.conftest import NPY_HEADERS, npy


@pytest.fixture(scope="module")
def manifest(models_dir: Path) -> Manifest:
    return Manifest.read(models_dir / "digits-pca" / "1")


def test_buckets_sit_at_the_calibration_quantiles_and_the_threshold(manifest: Manifest) -> None:
    state = ScoreDrift.of(manifest)
    cal = np.asarray(manifest.threshold.calibration_scores)
    assert manifest.threshold.value in state.edges
    assert len(state.edges) <= len(CALIBRATION_LEVELS) + 1
    assert np.all(np.diff(state.edges) > 0)
    for edge, share in zip(state.edges, state.expected, strict=True):
        assert share == np.mean(cal <= edge)


def test_the_calibration_scores_themselves_show_no_drift(manifest: Manifest) -> None:
    state = ScoreDrift.of(manifest)
    cal = np.asarray(manifest.threshold.calibration_scores, dtype=np.float32)
    state.observe(cal)
    s = state.snapshot()
    assert s.n == len(cal)
    assert s.ks == pytest.approx(0.0, abs=1e-6)
    assert s.psi == pytest.approx(0.0, abs=1e-6)
    assert s.above_ratio == pytest.approx(np.mean(cal > manifest.threshold.value))
    assert s.promised_above == pytest.approx(1 - manifest.threshold.quantile)


def test_shifted_scores_drift(manifest: Manifest) -> None:
    state = ScoreDrift.of(manifest)
    cal = np.asarray(manifest.threshold.calibration_scores, dtype=np.float32)
    state.observe(cal * 3)
    s = state.snapshot()
    assert s.psi > 0.25  # the usual "significant shift" line
    assert s.ks > 0.3
    assert s.above_ratio > 5 * s.promised_above


def test_no_scores_yet_is_nan_not_zero(manifest: Manifest) -> None:
    s = ScoreDrift.of(manifest).snapshot()
    assert s.n == 0 and math.isnan(s.psi) and math.isnan(s.ks) and math.isnan(s.above_ratio)


def test_one_state_per_version_until_its_manifest_changes(manifest: Manifest) -> None:
    drift = Drift()
    drift.observe(manifest, np.ones(3, dtype=np.float32))
    assert drift.of(manifest).snapshot().n == 3
    republished = manifest.model_copy()
    assert drift.of(republished).snapshot().n == 0


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.labels.get("model") == "digits-pca":
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _one(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    (value,) = [v for (n, labels), v in samples.items() if n == name and dict(labels)["version"] == "1"]
    return value


def test_anomaly_score_feeds_the_metrics_other_verbs_do_not(
    make_client: Callable[..., AbstractContextManager[TestClient]], digits: np.ndarray, manifest: Manifest
) -> None:
    with make_client() as client:
        before = _samples(client)
        assert _one(before, "latentserve_score_count") == 0
        assert math.isnan(_one(before, "latentserve_score_psi"))
        flat = digits.reshape(len(digits), -1)
        r = client.post("/anomaly-score", json={"model": "digits-pca", "inputs": flat[:5].tolist()})
        assert r.status_code == 200
        scores = r.json()["scores"]
        r = client.post("/anomaly-score?model=digits-pca", content=npy(flat[5:]), headers=NPY_HEADERS)
        assert r.status_code == 200
        scores += r.json()["scores"]
        client.post("/encode", json={"model": "digits-pca", "inputs": flat.tolist()})
        after = _samples(client)
    assert _one(after, "latentserve_score_count") == len(flat)
    assert _one(after, "latentserve_score_sum") == pytest.approx(sum(scores), rel=1e-5)
    t = manifest.threshold
    above = sum(s > t.value for s in scores)
    assert _one(after, "latentserve_score_above_threshold_total") == above
    assert _one(after, "latentserve_score_above_threshold_ratio") == pytest.approx(above / len(flat))
    assert _one(after, "latentserve_score_above_threshold_expected_ratio") == pytest.approx(1 - t.quantile)
    assert _one(after, "latentserve_score_threshold") == pytest.approx(t.value)
    assert _one(after, "latentserve_score_psi") >= 0 and 0 <= _one(after, "latentserve_score_ks") <= 1
    buckets = {
        float(dict(labels)["le"]): v
        for (n, labels), v in after.items()
        if n == "latentserve_score_bucket" and dict(labels)["version"] == "1"
    }
    expected = {
        float(dict(labels)["le"]): v
        for (n, labels), v in after.items()
        if n == "latentserve_score_expected_ratio" and dict(labels)["version"] == "1"
    }
    assert buckets[math.inf] == len(flat)
    assert t.value in buckets and set(expected) == set(buckets) - {math.inf}
    for le, count in buckets.items():
        assert count == sum(s <= le for s in scores), le


def test_scores_kept_or_counted_at_once_read_alike(manifest: Manifest) -> None:
    """Scores wait uncounted (up to PENDING_ROWS / PENDING_ARRAYS); a snapshot counts them first, so
    a reader sees the same counts as if each request had been counted when it came."""
    cal = np.asarray(manifest.threshold.calibration_scores, dtype=np.float32)
    rng = np.random.default_rng(0)
    scores = np.concatenate([cal, cal * 2, [0.0, -1.0, 1e9], *[[e] for e in ScoreDrift.of(manifest).edges]])
    scores = np.tile(rng.permutation(scores).astype(np.float32), 1 + PENDING_ROWS // len(scores))
    one_by_one, at_once = ScoreDrift.of(manifest), ScoreDrift.of(manifest)
    for i in range(0, len(scores), 3):  # more than PENDING_ARRAYS requests: counted on the way, too
        one_by_one.observe(scores[i : i + 3])
        if i == 30:
            assert one_by_one.n == 0 and one_by_one.snapshot().n == 33  # kept, then counted to read
    assert one_by_one.n > 0  # PENDING_ARRAYS reached: counted without a reader
    at_once.observe(scores)  # over PENDING_ROWS: counted at once
    assert at_once.n == len(scores) > PENDING_ROWS
    a, b = one_by_one.snapshot(), at_once.snapshot()
    np.testing.assert_array_equal(a.cumulative, b.cumulative)
    np.testing.assert_array_equal(a.live_display, b.live_display)
    assert (a.n, a.above) == (b.n, b.above) == (len(scores), int(np.sum(scores > manifest.threshold.value)))
    assert a.total == pytest.approx(b.total)
