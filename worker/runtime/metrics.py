"""Prometheus metrics of one worker. One registry per instance, so tests can run several workers in one process;
the default process, platform and GC collectors are registered in it too, so ``/metrics`` has ``process_*``,
``python_info`` and ``python_gc_*`` like any Python exporter.

Names follow Prometheus conventions (units in the name, ``_total`` on counters); docs/operations.md lists them and the
Helm chart's alerts and dashboard use exactly these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from worker.headers import worker_version

BATCH_SIZES = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# (topic, partition) -> records between the log end and the group's position
Lags = Mapping[tuple[str, int], int]


def lag_of(end_offset: int, position: int) -> int:
    """Records not yet committed: the log-end offset minus the group's next offset (never negative)."""
    return max(0, end_offset - position)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        if GC_COLLECTOR is not None:  # absent on interpreters without gc.get_stats
            GCCollector(registry=r)
        self.consumed = Counter("carsys_events_consumed", "Records fetched from the topic", registry=r)
        self.applied = Counter("carsys_events_applied", "Events written to PostgreSQL", registry=r)
        self.duplicates = Counter("carsys_events_duplicate", "Events already applied before (no-op)", registry=r)
        self.stale = Counter("carsys_events_stale", "Events older than the stored row (no-op)", registry=r)
        self.dead_lettered = Counter(
            "carsys_events_dead_lettered", "Records sent to the dead-letter topic", ["stage"], registry=r
        )
        self.commits = Counter(
            "carsys_commits", "Batches committed (data and offsets in one PostgreSQL transaction)", registry=r
        )
        self.batch_size = Histogram("carsys_batch_size", "Records per batch", buckets=BATCH_SIZES, registry=r)
        self.batch_duration = Histogram(
            "carsys_batch_duration_seconds", "Decode to commit, per batch", buckets=SECONDS, registry=r
        )
        self.latency = Histogram(
            "carsys_end_to_end_latency_seconds", "Record timestamp to commit", buckets=SECONDS, registry=r
        )
        self.lag = Gauge(
            "carsys_consumer_lag_records",
            "Log-end offset minus the group's committed position, per assigned partition (uncommitted records count)",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned = Gauge(
            "carsys_assigned_partitions", "Partitions assigned to this replica", ["topic"], registry=r
        )
        self.key_mismatches = Counter(
            "carsys_key_mismatch",
            "Stored records whose key is not the event's dealer_id/dms_number (part: missing, dealer_id, dms_number)",
            ["part"],
            registry=r,
        )
        self.retries = Counter("carsys_retries", "Retries after transient errors", registry=r)
        self.paused = Gauge("carsys_paused_partitions", "Partitions paused while waiting out an outage", registry=r)
        self.held = Gauge(
            "carsys_held_partitions",
            "Partitions held at a record batch that cannot be decoded, until an operator skips it",
            registry=r,
        )
        self.pool_in_use = Gauge("carsys_db_pool_in_use", "Database connections in use", registry=r)
        self.pool_size = Gauge("carsys_db_pool_size", "Database connections open", registry=r)
        self.ready = Gauge("carsys_ready", "1 when /readyz answers 200, else 0", registry=r)
        Gauge("carsys_build_info", "The running build (always 1)", ["version"], registry=r).labels(
            worker_version()
        ).set(1)
        self._last_commit_at = time.monotonic()
        Gauge(
            "carsys_last_commit_age_seconds",
            "Seconds since the last batch commit (since start before the first)",
            registry=r,
        ).set_function(lambda: time.monotonic() - self._last_commit_at)
        self._lag_series: set[tuple[str, int]] = set()

    def committed(self) -> None:
        self.commits.inc()
        self._last_commit_at = time.monotonic()

    def follow_readiness(self, ready: Callable[[], bool]) -> None:
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)

    def set_lags(self, lags: Lags, topics: set[str]) -> None:
        """Replace the lag series by ``lags`` (the partitions assigned now): a revoked partition's series goes."""
        for gone in self._lag_series - set(lags):
            self.lag.remove(gone[0], str(gone[1]))
        for (topic, partition), records in lags.items():
            self.lag.labels(topic, str(partition)).set(records)
        self._lag_series = set(lags)
        for topic in topics:
            self.assigned.labels(topic).set(sum(1 for t, _ in lags if t == topic))

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Drop the lag series of revoked partitions at once (the next refresh would too)."""
        for topic, partition in partitions & self._lag_series:
            self.lag.remove(topic, str(partition))
        self._lag_series -= partitions

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
