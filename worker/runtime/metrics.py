"""Prometheus metrics of one worker. One registry per instance, so tests can run several workers in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_SIZES = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000)
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter("carsys_events_consumed", "Records fetched from the topic", registry=r)
        self.applied = Counter("carsys_events_applied", "Events written to PostgreSQL", registry=r)
        self.duplicates = Counter("carsys_events_duplicate", "Events already applied before (no-op)", registry=r)
        self.stale = Counter("carsys_events_stale", "Events older than the stored row (no-op)", registry=r)
        self.dead_lettered = Counter(
            "carsys_events_dead_lettered", "Records sent to the dead-letter topic", ["stage"], registry=r
        )
        self.batch_size = Histogram("carsys_batch_size", "Records per batch", buckets=BATCH_SIZES, registry=r)
        self.batch_duration = Histogram(
            "carsys_batch_duration_seconds", "Decode to commit, per batch", buckets=SECONDS, registry=r
        )
        self.latency = Histogram(
            "carsys_end_to_end_latency_seconds", "Record timestamp to commit", buckets=SECONDS, registry=r
        )
        self.lag = Gauge("carsys_consumer_lag", "High watermark minus committed position", ["partition"], registry=r)
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
