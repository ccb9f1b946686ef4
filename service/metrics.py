"""Prometheus metrics, one collector registry per app (so several apps in one process stay apart).

Labels carry only endpoint names and names of models that exist, so clients cannot grow them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from service.admission import Admission
from service.drift import Drift, DriftCollector
from service.registry import Registry

UNKNOWN_MODEL = "<unknown>"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _RegistryCollector(Collector):
    """Read at scrape time: load failures so far, and versions by status."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        failures = CounterMetricFamily(
            "latentserve_model_load_failures", "Model versions that failed to load (checksum, pickle, format)"
        )
        failures.add_metric([], float(self._registry.load_failures_total))
        yield failures
        versions = GaugeMetricFamily(
            "latentserve_model_versions",
            "Model versions in the registry by status",
            labels=["model", "status"],
        )
        for name, records in self._registry.records().items():
            counts: dict[str, int] = {}
            for record in records.values():
                counts[record.status] = counts.get(record.status, 0) + 1
            for status, count in counts.items():
                versions.add_metric([name, status], float(count))
        yield versions


class _AdmissionCollector(Collector):
    """Read at scrape time: requests shed with 503 by limit, and what is in flight (the connections
    closed by a timeout or a cap are the HTTP layer's: `service.http.connections`)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        a = self._admission
        shed = CounterMetricFamily(
            "latentserve_shed", "Requests answered 503 before their body was read", labels=["limit"]
        )
        for limit, count in sorted(a.shed.items()):
            shed.add_metric([limit], float(count))
        yield shed
        yield GaugeMetricFamily("latentserve_inflight_requests", "Admitted requests", value=a.requests)
        yield GaugeMetricFamily(
            "latentserve_inflight_bytes", "Weighted request-body bytes reserved", value=a.bytes
        )


class ServiceMetrics:
    """The service's counters and histograms."""

    def __init__(self, registry: Registry, admission: Admission | None = None) -> None:
        self.collectors = CollectorRegistry()
        self.requests = Counter(
            "latentserve_requests",
            "Inference requests",
            ["endpoint", "model", "status"],
            registry=self.collectors,
        )
        self.latency = Histogram(
            "latentserve_request_duration_seconds",
            "Inference request latency",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.collectors,
        )
        self.rows = Counter(
            "latentserve_rows", "Rows processed", ["endpoint", "model"], registry=self.collectors
        )
        self.errors = Counter(
            "latentserve_errors",
            "Failed inference requests by error type",
            ["endpoint", "model", "type"],
            registry=self.collectors,
        )
        self.batch_requests = Histogram(
            "latentserve_batch_requests",
            "Requests per model call of the micro-batcher (small concurrent requests stacked together)",
            buckets=BATCH_BUCKETS,
            registry=self.collectors,
        )
        self.collectors.register(_RegistryCollector(registry))
        if admission is not None:
            self.collectors.register(_AdmissionCollector(admission))
        self.drift = Drift()  # /anomaly-score's scores against each version's calibration
        self.collectors.register(DriftCollector(registry, self.drift))
        self._children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._failures: dict[tuple[str, str, int, str | None], tuple[Any, Any]] = {}

    def observe(
        self, endpoint: str, model: str, status: int, seconds: float, rows: int, error: str | None = None
    ) -> None:
        key = (endpoint, model)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: look each child up once
            children = self._children[key] = (
                self.requests.labels(endpoint, model, "200"),
                self.latency.labels(endpoint, model),
                self.rows.labels(endpoint, model),
            )
        ok, latency, rows_counter = children
        latency.observe(seconds)
        if error is None and status == 200:
            ok.inc()
        else:
            failure = self._failures.get((endpoint, model, status, error))
            if failure is None:  # as above; the label values are those the counters hold already
                requests = self.requests.labels(endpoint, model, str(status))
                errors = self.errors.labels(endpoint, model, error) if error is not None else None
                failure = self._failures[endpoint, model, status, error] = (requests, errors)
            failure[0].inc()
            if failure[1] is not None:
                failure[1].inc()
        if rows:
            rows_counter.inc(rows)

    def observe_batch(self, requests: int, _rows: int) -> None:
        """One stacked model call of the batcher (the rows it held are not recorded)."""
        self.batch_requests.observe(requests)

    def render(self) -> bytes:
        return generate_latest(self.collectors)
