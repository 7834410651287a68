"""End-to-end benchmark: the real worker against three baselines, in one run, on a local broker and PostgreSQL.

    .venv/bin/python bench/worker_bench.py [--events N] [--quick] [--rate R] [--latency-seconds S] [--seed S]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set (DATABASE_URL's server is used, never its
database: every measurement gets a fresh database and a fresh topic), otherwise starts a throwaway stack with
dev/stack.py and stops it at the end. Prints a table, writes bench/results/worker-<timestamp>.json and
bench/results/latest.json. Prints, never asserts. What each figure means: docs/benchmarks.md.

Measurements, in this order, each on its own topic and database:

- worker: a real ``carsys-ingest run`` (1 replica, default settings) drains N pre-produced events.
  events/s = N / (last commit - first fetch). First fetch = first scrape of /metrics (every 50 ms) that shows
  ``carsys_events_consumed_total`` > 0 (incremented when a fetch returns); last commit = first scrape whose
  ``carsys_end_to_end_latency_seconds_count`` reaches N (observed after PostgreSQL's commit). Checked afterwards
  against ``consumer_offsets`` and Kafka's committed offsets. CPU = utime+stime of the worker process over that
  window (/proc/<pid>/stat), peak RSS = VmHWM (/proc/<pid>/status).
- latency: a second worker process; copies of the largest example event (schemas/examples/) are produced by
  librdkafka (acks=all) at a steady offered load (default 1,000/s, then 4,000/s: ``--high-rate``) with the send
  time as record timestamp; a poller reads ``consumer_offsets`` every 10 ms, and a record is visible at the first
  poll whose next offset for its partition is past it. Also reported: the worker's own histogram.
- client limit: aiokafka getmany + ``schemas.decoder.decode``, same consumer options, no database.
- database limit: the same events, decoded and normalised beforehand, written by ``Store.apply`` in batches of
  BATCH_MAX_RECORDS (2000), one after the other like the worker; no Kafka.
- PostgreSQL floor: the same batches' rows (collapsed per key like the worker's) COPY'd into copies of the four
  tables with the same columns and indexes (unique ones made plain), no merge, no newest-wins guard, no
  applied_events or offsets: the most this database can take for these rows.
- naive worker: one record per fetch, ``Store.apply`` with a batch of one (one transaction, offsets included),
  then one Kafka commit per record. Time-bounded: its rate is what it did in ``--naive-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Producer

from dev import samples
from dev import stack as devstack
from dev.db import fetchval
from dev.process import REPO, WorkerProcess
from schemas.contract import key_for
from schemas.decoder import decode
from worker import config
from worker.normalise.model import Upsert
from worker.normalise.records import Item, Offset, decode_value, normalised, prepare
from worker.runtime import logs, retry
from worker.runtime.app import tune_gc
from worker.runtime.kafka import consumer_options
from worker.runtime.migrations import migrate
from worker.runtime.store import Store
from worker.runtime.tables import (
    APPOINTMENTS,
    INTERVENTIONS,
    PERSONS,
    VEHICLES,
    Row,
    Rows,
    Table,
    canonical_event_id,
    intervention_rows,
)

RESULTS = REPO / "bench" / "results"
EXAMPLES = REPO / "schemas" / "examples"
PARTITIONS = 6  # `carsys-ingest init`'s default
CLK_TCK = os.sysconf("SC_CLK_TCK")
Record = tuple[bytes, bytes]


# ------------------------------------------------------------------------------------------------ corpus


def corpus(n: int, seed: int) -> list[Record]:
    """N realistic events as (key, value), about 3 events per appointment; cached, as generating is slow."""
    # Keyed by the generator's source too: a changed worker/samples.py must not be benchmarked with old events.
    version = hashlib.sha256(Path(samples.__file__).read_bytes()).hexdigest()[:10]
    path = RESULTS / f".corpus-{seed}-{n}-{version}.msgpack"
    if path.exists():
        return [(k, v) for k, v in msgspec.msgpack.decode(path.read_bytes())]
    dealers = max(3, n // 4000)
    appointments = max(10, n // (dealers * 3))
    events = samples.stream(
        seed,
        events=n,
        dealers=dealers,
        appointments_per_dealer=appointments,
        persons_per_dealer=max(5, appointments * 3 // 5),
        vehicles_per_dealer=max(4, appointments * 2 // 5),
        # Carsys pushes whole snapshots: a person's record arrives unchanged in most events (dev/samples.py).
        person_change_ratio=samples.REALISTIC_PERSON_CHANGE_RATIO,
    )
    records = [(samples.key_of(e), samples.encode(e)) for e in events]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.msgpack.encode(records))
    return records


# ------------------------------------------------------------------------------------------------ process


def cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return 0.0


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children_cpu_seconds(parent: int) -> float:
    """CPU of a process and its direct children (PostgreSQL's postmaster and its backends)."""
    total = cpu_seconds(parent)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                total += cpu_seconds(int(stat.parent.name))
    return total


def metrics_of(port: int) -> dict[str, float]:
    """The worker's /metrics as {"name{labels}": value}; empty while it is not listening."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def histogram_quantile(metrics: dict[str, float], name: str, q: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket (so only as fine as the buckets)."""
    buckets = sorted(
        (float("inf") if key.split('le="')[1][:-2] == "+Inf" else float(key.split('le="')[1][:-2]), count)
        for key, count in metrics.items()
        if key.startswith(f"{name}_bucket{{")
    )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return None


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------------------------------ the stack


@dataclass
class Bench:
    bootstrap: str
    admin_dsn: str
    stack: devstack.Stack
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    cleanup: list[Callable[[], Any]] = field(default_factory=list)

    def settings(self, topic: str, dsn: str) -> config.Settings:
        return config.from_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "DATABASE_URL": dsn,
                "KAFKA_TOPIC": topic,
                "KAFKA_GROUP_ID": topic,
            }
        )

    async def fresh_database(self, phase: str) -> str:
        name = f"bench_{phase}_{self.run_id}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.cleanup.append(lambda: self._drop_database(name))
        return urlunsplit(urlsplit(self.admin_dsn)._replace(path=f"/{name}"))

    async def _drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    async def fresh_topic(self, phase: str, records: Sequence[Record]) -> str:
        topic = f"bench.{phase}.{self.run_id}"
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(t, num_partitions=p, replication_factor=1)
                    for t, p in ((topic, PARTITIONS), (f"{topic}.dlq", 1))
                ]
            )
            await _until_known(admin, topic)
        finally:
            await admin.close()
        self.cleanup.append(lambda: self._delete_topics([topic, f"{topic}.dlq"]))
        await fill(self.bootstrap, topic, records)
        return topic

    async def _delete_topics(self, topics: list[str]) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.delete_topics(topics)
        finally:
            await admin.close()

    async def tidy(self) -> None:
        for step in reversed(self.cleanup):
            with contextlib.suppress(Exception):
                await step()
        self.cleanup.clear()

    def postgres_pid(self) -> int | None:
        if self.stack.postgres is None:
            return None  # not ours: its processes are not ours to account
        with contextlib.suppress(OSError, ValueError):
            return int((Path(self.stack.postgres.dir) / "data" / "postmaster.pid").read_text().split()[0])
        return None

    def kafka_pid(self) -> int | None:
        return self.stack.kafka.pid if self.stack.kafka else None


async def _until_known(admin: AIOKafkaAdminClient, topic: str, timeout_s: float = 10) -> None:
    # The broker's metadata lags topic creation a little; a client asking earlier logs an ERROR and retries.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = await admin.describe_topics([topic])
        if described and described[0]["error_code"] == 0 and len(described[0]["partitions"]) == PARTITIONS:
            return
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def local_stack() -> Iterator[Bench]:
    stack = devstack.up(f"bench-{os.getpid()}")
    try:
        admin = urlunsplit(urlsplit(stack.database_url)._replace(path="/postgres"))
        yield Bench(bootstrap=stack.kafka_bootstrap, admin_dsn=admin, stack=stack)
    finally:
        stack.down()


async def fill(bootstrap: str, topic: str, records: Sequence[Record]) -> None:
    # Large batches and a short linger: filling is set-up, not measured, and should not take longer than the run.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1024 * 1024, max_request_size=8 << 20
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# ------------------------------------------------------------------------------------------------ the worker


class Worker:
    """A real ``carsys-ingest run`` with default settings: only connection, topic, group and port are set."""

    def __init__(self, bench: Bench, topic: str, dsn: str, log: Path) -> None:
        self.port = devstack.free_port()
        # Blank every setting first: a BATCH_MAX_RECORDS in the caller's shell must not leak into "default settings".
        env = {var: "" for var in config.VARIABLES}
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": bench.bootstrap,
            "DATABASE_URL": dsn,
            "KAFKA_TOPIC": topic,
            "KAFKA_GROUP_ID": topic,
            "METRICS_PORT": str(self.port),
            "LOG_FORMAT": "json",
        }
        self.process = WorkerProcess(env, log).start()
        assert self.process.proc is not None
        self.pid = self.process.proc.pid

    def metrics(self) -> dict[str, float]:
        return metrics_of(self.port)

    async def ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.process.get("/readyz")[0] != 200:
            if not self.process.alive or time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready; see {self.process.log_path}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        self.process.stop()


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set(range(PARTITIONS))
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in parts])
    finally:
        await consumer.stop()


@dataclass
class Window:
    """The first-fetch and last-commit moments as seen by the 50 ms scraper, with CPU readings at both."""

    start: float = 0.0
    end: float = 0.0
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)


async def watch_drain(workers: Sequence[Worker], bench: Bench, n: int, timeout_s: float) -> Window:
    """Scrape every worker until together they have committed ``n`` events. CPU keys: worker-0, worker-1, ...,
    postgres, kafka."""
    pids = {"postgres": bench.postgres_pid(), "kafka": bench.kafka_pid()}
    pids |= {f"worker-{i}": w.pid for i, w in enumerate(workers)}

    def cpu() -> dict[str, float]:
        return {
            name: (children_cpu_seconds(pid) if name == "postgres" else cpu_seconds(pid))
            for name, pid in pids.items()
            if pid
        }

    window, before = Window(), cpu()
    deadline, idle_at, idle_cpu = time.monotonic() + timeout_s, time.time(), before
    while time.monotonic() < deadline:
        scraped = [w.metrics() for w in workers]
        now = time.time()
        consumed = sum(m.get("carsys_events_consumed_total", 0) for m in scraped)
        committed = sum(m.get("carsys_end_to_end_latency_seconds_count", 0) for m in scraped)
        if not window.start and consumed > 0:
            window.start, before = now, cpu()
        elif not window.start:
            idle_at, idle_cpu = now, cpu()
        if committed >= n:
            if window.start == now:
                # A drain shorter than one scrape (a quick run) is timed from the last scrape that saw nothing
                # consumed: an upper bound, never zero.
                window.start, before = idle_at, idle_cpu
            window.end = now
            after = cpu()
            window.cpu = {k: (before[k], after[k]) for k in after}
            return window
        for w in workers:
            if not w.process.alive:
                raise RuntimeError(f"worker exited; see {w.process.log_path}")
        await asyncio.sleep(0.05)
    raise RuntimeError(f"workers did not drain {n} events in {timeout_s:.0f}s; see {workers[0].process.log_path}")


async def measure_worker(bench: Bench, records: Sequence[Record], log_dir: Path) -> dict[str, Any]:
    n = len(records)
    topic = await bench.fresh_topic("worker", records)
    dsn = await bench.fresh_database("worker")
    worker = Worker(bench, topic, dsn, log_dir / "worker-throughput.log")
    try:
        window = await watch_drain([worker], bench, n, timeout_s=max(120.0, n / 300))
        m, rss = worker.metrics(), peak_rss_mib(worker.pid)
    finally:
        worker.stop()
    seconds = window.end - window.start
    cpu = {k: b - a for k, (a, b) in window.cpu.items()}
    batches = m.get("carsys_batch_size_count", 0)
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        "cpu_seconds": round(cpu["worker-0"], 2),
        "cpu_percent_of_one_core": round(100 * cpu["worker-0"] / seconds, 1),
        "cpu_ms_per_1000_events": round(1000 * cpu["worker-0"] / n * 1000, 1),
        "peak_rss_mib": round(rss, 1),
        "postgres_cpu_seconds": round(cpu["postgres"], 2) if "postgres" in cpu else None,
        "kafka_cpu_seconds": round(cpu["kafka"], 2) if "kafka" in cpu else None,
        "batches": int(batches),
        "mean_batch_size": round(m.get("carsys_batch_size_sum", 0) / max(batches, 1), 1),
        "busy_seconds": round(m.get("carsys_batch_duration_seconds_sum", 0), 3),
        "applied": int(m.get("carsys_events_applied_total", 0)),
        "stale": int(m.get("carsys_events_stale_total", 0)),
        "duplicates": int(m.get("carsys_events_duplicate_total", 0)),
        "dead_lettered": int(sum(v for k, v in m.items() if k.startswith("carsys_events_dead_lettered_total"))),
        "db_committed_offsets": int(await fetchval(dsn, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets")),
        "kafka_committed_offsets": await committed_total(bench.bootstrap, topic, topic),
        "scrape_resolution_s": 0.05,
    }


async def measure_scale_out(bench: Bench, records: Sequence[Record], replicas: int, log_dir: Path) -> dict[str, Any]:
    """``replicas`` worker processes in one group, started together on the pre-produced topic (their joining the
    group is inside the window), draining it into one database."""
    n = len(records)
    topic = await bench.fresh_topic(f"scale{replicas}", records)
    dsn = await bench.fresh_database(f"scale{replicas}")
    workers = [Worker(bench, topic, dsn, log_dir / f"worker-scale-{replicas}-{i}.log") for i in range(replicas)]
    try:
        window = await watch_drain(workers, bench, n, timeout_s=max(120.0, n / 300))
        rss = [peak_rss_mib(w.pid) for w in workers]
    finally:
        for w in workers:
            w.stop()
    seconds = window.end - window.start
    cpu = {k: b - a for k, (a, b) in window.cpu.items()}
    each = [cpu[f"worker-{i}"] for i in range(replicas)]
    return {
        "replicas": replicas,
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        "cpu_percent_of_one_core_each": [round(100 * c / seconds, 1) for c in each],
        "cpu_ms_per_1000_events_all_workers": round(1000 * sum(each) / n * 1000, 1),
        "peak_rss_mib_each": [round(r, 1) for r in rss],
        "postgres_cpu_ms_per_1000_events": round(1000 * cpu["postgres"] / n * 1000, 1) if "postgres" in cpu else None,
        "kafka_cpu_ms_per_1000_events": round(1000 * cpu["kafka"] / n * 1000, 1) if "kafka" in cpu else None,
        "db_committed_offsets": int(await fetchval(dsn, "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets")),
    }


# ------------------------------------------------------------------------------------------------ latency


class Visibility:
    """When each partition's committed position (consumer_offsets, same transaction as the rows) moved."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[list[int], list[float]]] = {}

    def observe(self, partition: int, next_offset: int, at: float) -> None:
        offsets, times = self.seen.setdefault(partition, ([], []))
        if not offsets or next_offset > offsets[-1]:
            offsets.append(next_offset)
            times.append(at)

    def visible_at(self, partition: int, offset: int) -> float | None:
        offsets, times = self.seen.get(partition, ([], []))
        i = bisect.bisect_right(offsets, offset)  # first observation with next_offset > offset
        return times[i] if i < len(offsets) else None


async def poll_visibility(dsn: str, topic: str, into: Visibility, stop: asyncio.Event) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncpg.UndefinedTableError):
                rows = await conn.fetch("SELECT partition, next_offset FROM consumer_offsets WHERE topic = $1", topic)
                now = time.time()
                for row in rows:
                    into.observe(row["partition"], row["next_offset"], now)
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


class Sent(msgspec.Struct, frozen=True):
    partition: int
    offset: int
    timestamp: float  # the record's timestamp (its send time), s
    acked: float  # when the broker acknowledged it (acks=all), s


def example_stream(n: int, seed: int) -> list[Record]:
    """N copies of the largest example event (schemas/examples/), each a new event (its own id, one second newer
    than the last) about one of 1,000 appointments of the example's dealer: what the latency goal is stated for."""
    example = max(EXAMPLES.glob("*.json"), key=lambda p: p.stat().st_size)
    event = json.loads(example.read_text())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    records: list[Record] = []
    for i in range(n):
        event["event_id"] = str(uuid.UUID(int=(seed << 64) + i))
        event["occurred_at"] = (start + dt.timedelta(seconds=i)).isoformat()
        event["appointment"]["dms_number"] = f"LAT-{i % 1000:04d}"
        records.append((key_for(event["dealer_id"], event["appointment"]["dms_number"]), json.dumps(event).encode()))
    return records


async def offer(bootstrap: str, topic: str, records: Sequence[Record], rate: float) -> list[Sent]:
    """Send at a steady rate, 100 ticks a second, each record stamped with its send time, by librdkafka
    (confluent-kafka, acks=all, as Carsys' producer would), which leaves the CPU to the worker."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 0})
    acked: dict[int, tuple[int, int, float]] = {}
    failed: list[str] = []

    def on_ack(i: int) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failed.append(str(err))
            else:
                acked[i] = (msg.partition(), msg.offset(), time.time())

        return delivered

    # Warm-up, not measured: metadata and the idempotent producer's id cost the first records ~300 ms, which is the
    # producer starting, not the worker (the first record again then is a duplicate, which the worker skips).
    producer.produce(topic, value=records[0][1], key=records[0][0])
    await asyncio.to_thread(producer.flush, 30)
    await asyncio.sleep(1)
    stamps: list[float] = []
    start, sent = time.monotonic(), 0
    while sent < len(records):
        due = min(len(records), int((time.monotonic() - start) * rate) + 1)
        for i, (key, value) in enumerate(records[sent:due], sent):
            stamps.append(time.time())
            producer.produce(topic, value=value, key=key, timestamp=int(stamps[-1] * 1000), on_delivery=on_ack(i))
        producer.poll(0)
        sent = due
        await asyncio.sleep(0.01)
    left = await asyncio.to_thread(producer.flush, 30)
    if left or failed:
        raise RuntimeError(f"librdkafka did not deliver {left} records; errors: {failed[:3]}")
    # The record timestamp has millisecond resolution: latencies are measured from it, as the worker's are.
    return [Sent(acked[i][0], acked[i][1], int(stamps[i] * 1000) / 1000, acked[i][2]) for i in range(len(records))]


async def measure_latency(bench: Bench, records: Sequence[Record], rate: float, log_dir: Path) -> dict[str, Any]:
    topic = await bench.fresh_topic("latency", [])
    dsn = await bench.fresh_database("latency")
    worker = Worker(bench, topic, dsn, log_dir / "worker-latency.log")
    visibility, stop = Visibility(), asyncio.Event()
    try:
        await worker.ready()
        poller = asyncio.create_task(poll_visibility(dsn, topic, visibility, stop))
        cpu_before, started = cpu_seconds(worker.pid), time.monotonic()
        sent = await offer(bench.bootstrap, topic, records, rate)
        await wait_visible(visibility, sent, timeout_s=60)
        cpu, wall = cpu_seconds(worker.pid) - cpu_before, time.monotonic() - started
        stop.set()
        await poller
        m, rss = worker.metrics(), peak_rss_mib(worker.pid)
    finally:
        stop.set()
        worker.stop()
    latencies = [max(0.0, (visibility.visible_at(r.partition, r.offset) or 0) - r.timestamp) for r in sent]
    produce = [r.acked - r.timestamp for r in sent]
    name = "carsys_end_to_end_latency_seconds"
    batches = max(m.get("carsys_batch_size_count", 0), 1)
    return {
        "offered_events_per_s": rate,
        "events": len(sent),
        "seconds": round(wall, 2),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "max_ms": round(1000 * max(latencies), 1),
        "poll_resolution_ms": 10,
        "worker_histogram_p50_ms": _ms(histogram_quantile(m, name, 0.50)),
        "worker_histogram_p99_ms": _ms(histogram_quantile(m, name, 0.99)),
        # What the latency is made of: the producer's own wait for acks=all, and the worker's batches.
        "produce_ack_p50_ms": round(1000 * percentile(produce, 0.50), 1),
        "produce_ack_p99_ms": round(1000 * percentile(produce, 0.99), 1),
        "worker_batches": int(m.get("carsys_batch_size_count", 0)),
        "worker_mean_batch_size": round(m.get("carsys_batch_size_sum", 0) / batches, 1),
        "worker_mean_batch_ms": round(1000 * m.get("carsys_batch_duration_seconds_sum", 0) / batches, 1),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "peak_rss_mib": round(rss, 1),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


async def wait_visible(visibility: Visibility, sent: Sequence[Sent], timeout_s: float) -> None:
    last: dict[int, int] = {}
    for r in sent:
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    deadline = time.monotonic() + timeout_s
    while any(visibility.visible_at(p, o) is None for p, o in last.items()):
        if time.monotonic() > deadline:
            raise RuntimeError("offered records not all committed in time")
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------------------------ baselines


async def measure_client_limit(bench: Bench, records: Sequence[Record]) -> dict[str, Any]:
    topic = await bench.fresh_topic("client", records)
    settings = bench.settings(topic, "postgresql://unused/unused")
    consumer = AIOKafkaConsumer(**consumer_options(settings))
    await consumer.start()
    consumer.subscribe([topic])
    n, start = 0, 0.0
    try:
        while n < len(records):
            batch = await consumer.getmany(
                timeout_ms=settings.batch_max_wait_ms, max_records=settings.batch_max_records
            )
            start = start or (time.monotonic() if batch else 0.0)
            for got in batch.values():
                for record in got:
                    decode(record.value or b"")
                n += len(got)
        seconds = time.monotonic() - start
    finally:
        await consumer.stop()
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1)}


def normalised_items(records: Sequence[Record]) -> tuple[list[Item], dict[str, Any]]:
    """Decode + normalise in-process (timed: the worker's CPU floor per event), with the offsets Kafka would give."""
    partitioner, parts = DefaultPartitioner(), list(range(PARTITIONS))
    next_offset = dict.fromkeys(parts, 0)
    start, items = time.perf_counter(), []
    for key, value in records:
        # With the decoded event as its source, as the worker's items: the rows then carry their snapshots.
        source = decode_value(value)
        p = partitioner(key, parts, parts)
        items.append(Item(event=normalised(source), offset=Offset("bench.database", p, next_offset[p]), source=source))
        next_offset[p] += 1
    seconds = time.perf_counter() - start
    return items, {"events": len(items), "seconds": round(seconds, 3), "events_per_s": round(len(items) / seconds, 1)}


@contextlib.asynccontextmanager
async def store_on(dsn: str, settings: config.Settings) -> AsyncIterator[Store]:
    await migrate(dsn)
    pool = await asyncpg.create_pool(dsn, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size)
    try:
        yield Store(
            pool,
            group_id=settings.kafka_group_id,
            retention_days=settings.applied_event_retention_days,
            retrying=lambda: retry.policy(attempts=1),
        )
    finally:
        await pool.close()


async def measure_database_limit(bench: Bench, items: Sequence[Item]) -> dict[str, Any]:
    dsn = await bench.fresh_database("database")
    settings = bench.settings("bench.database", dsn)
    size = settings.batch_max_records
    async with store_on(dsn, settings) as store:
        start = time.monotonic()
        for i in range(0, len(items), size):
            await store.apply(items[i : i + size])
        seconds = time.monotonic() - start
    return {
        "events": len(items),
        "batch_size": size,
        "seconds": round(seconds, 3),
        "events_per_s": round(len(items) / seconds, 1),
    }


FLOOR_TABLES = (PERSONS, VEHICLES, APPOINTMENTS, INTERVENTIONS)


async def _floor_schema(conn: asyncpg.Connection) -> None:
    """``floor_<table>``: each table's columns and indexes, every unique index made plain (nothing to conflict on)."""
    for table in FLOOR_TABLES:
        await conn.execute(f"CREATE TABLE floor_{table.name} (LIKE {table.name} INCLUDING DEFAULTS)")
        for (indexdef,) in await conn.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = $1", table.name):
            plain = indexdef.replace("CREATE UNIQUE INDEX ", "CREATE INDEX ").replace(
                f" ON public.{table.name} ", f" ON public.floor_{table.name} "
            )
            await conn.execute(plain.replace("CREATE INDEX ", "CREATE INDEX floor_", 1))


async def _floor_copy(conn: asyncpg.Connection, table: Table, rows: Sequence[Row]) -> None:
    # Through the worker's own staging table and casts, then a plain INSERT: no ON CONFLICT, no guard, no order.
    names = [c[0] for c in table.columns]
    await conn.execute(table.staging_ddl())
    await conn.copy_records_to_table(f"_stage_{table.name}", records=rows, columns=names)
    exprs = ", ".join(c[2] for c in table.columns)
    await conn.execute(
        f"INSERT INTO floor_{table.name} ({', '.join(names)}) SELECT {exprs} FROM _stage_{table.name} AS s"
    )


async def _floor_batch(conn: asyncpg.Connection, items: Sequence[Item]) -> None:
    rows = Rows()
    for item in items:
        rows.add(item.event, item.source, item.offset)  # the worker's rows: snapshots and provenance included
    upserts = [e for e in rows.events() if isinstance(e, Upsert)]
    batch = (
        (PERSONS, rows.persons()),
        (VEHICLES, rows.vehicles()),
        (APPOINTMENTS, rows.appointments()),
        (INTERVENTIONS, intervention_rows(upserts, {canonical_event_id(i.event.event_id): i.offset for i in items})),
    )
    async with conn.transaction():
        for table, table_rows in batch:
            if table_rows:
                await _floor_copy(conn, table, table_rows)


async def measure_postgres_floor(bench: Bench, items: Sequence[Item], size: int = 2000) -> dict[str, Any]:
    """The most this database takes: the batch's rows (collapsed per key, as the worker's) COPY'd into tables with
    the same columns and indexes, no merge, no newest-wins guard, no bookkeeping, one transaction per batch."""
    dsn = await bench.fresh_database("floor")
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await _floor_schema(conn)
        start = time.monotonic()
        for i in range(0, len(items), size):
            await _floor_batch(conn, items[i : i + size])
        seconds = time.monotonic() - start
    finally:
        await conn.close()
    return {
        "events": len(items),
        "batch_size": size,
        "seconds": round(seconds, 3),
        "events_per_s": round(len(items) / seconds, 1),
    }


async def measure_naive(bench: Bench, records: Sequence[Record], limit_s: float) -> dict[str, Any]:
    topic = await bench.fresh_topic("naive", records)
    dsn = await bench.fresh_database("naive")
    settings = bench.settings(topic, dsn)
    consumer = AIOKafkaConsumer(**consumer_options(settings))
    async with store_on(dsn, settings) as store:
        await consumer.start()
        consumer.subscribe([topic])
        n, start = 0, 0.0
        try:
            while n < len(records) and (not start or time.monotonic() - start < limit_s):
                for tp, got in (await consumer.getmany(timeout_ms=200, max_records=1)).items():
                    start = start or time.monotonic()
                    prepared = prepare(got[0])
                    if isinstance(prepared, Item):
                        await store.apply([prepared])
                    await consumer.commit({tp: got[0].offset + 1})
                    n += 1
            seconds = time.monotonic() - start
        finally:
            await consumer.stop()
    return {"events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds, 1)}


# ------------------------------------------------------------------------------------------------ profile

# Where a sample's time goes: the first category whose marker is on its stack, in this order (inner stages first).
CATEGORIES = (
    ("decode (schemas/decoder)", "schemas/decoder.py"),
    ("normalise (worker/normaliser & rules)", "worker/normalise/normaliser.py"),
    ("store: rows, SQL, asyncpg", "worker/runtime/store.py"),
    ("rows built ahead (tables.Plan, under a backlog)", "Plan.build:"),
    ("dead letters / commit / metrics", "worker/runtime/consumer.py:_commit"),
    ("kafka client (aiokafka)", "aiokafka/"),
    ("health/metrics server", "worker/runtime/health.py"),
)


# Frames on (nearly) every stack: they say nothing about where the time goes.
WRAPPERS = frozenset(
    {
        "<module> (worker/cli.py)",
        "main (worker/cli.py)",
        "run_command (worker/runtime/app.py)",
        "Consumer.run (worker/runtime/consumer.py)",
        "Consumer._handle (worker/runtime/consumer.py)",
        "Consumer._process_until_done (worker/runtime/consumer.py)",
    }
)


def _category(frames: list[str]) -> str:
    if "select (selectors.py" in frames[-1]:
        return "idle: waiting for I/O"
    stack = ";".join(frames).replace(" (", ":")
    for name, marker in CATEGORIES:
        if marker in stack:
            return name
    return "other (event loop, asyncio, start-up)"


def _function(frame: str) -> str:
    """'fn (/work/main/worker/x.py:12)' -> 'fn (worker/x.py)': own time per function, not per line."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].split("/site-packages/")[-1].replace(f"{REPO}/", "")
    return f"{name} ({path})"


def summarise_profile(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """py-spy's collapsed stacks -> share per pipeline stage, and the hottest functions by own and total time."""
    stages: dict[str, int] = {}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        total += n
        category = _category(frames)
        stages[category] = stages.get(category, 0) + n
        if category.startswith("idle"):
            continue
        leaf = _function(frames[-1])
        own[leaf] = own.get(leaf, 0) + n
        for fn in {_function(f) for f in frames if " (worker/" in f or " (schemas/" in f} - WRAPPERS:
            inclusive[fn] = inclusive.get(fn, 0) + n

    def percent(counts: dict[str, int], limit: int) -> dict[str, float]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
        return {k: round(100 * v / max(total, 1), 1) for k, v in ranked}

    return {
        "samples": total,
        "percent_by_stage": percent(stages, len(stages)),
        "hottest_own_percent": percent(own, top),
        "hottest_total_percent": percent(inclusive, top),
    }


async def profile_worker(bench: Bench, records: Sequence[Record], log_dir: Path) -> dict[str, Any]:
    """The worker drain again, with py-spy attached (so its rate is not a figure): where its time goes."""
    spy = REPO / ".venv" / "bin" / "py-spy"
    topic = await bench.fresh_topic("profile", records)
    dsn = await bench.fresh_database("profile")
    worker = Worker(bench, topic, dsn, log_dir / "worker-profile.log")
    out = log_dir / "profile-worker.collapsed"
    try:
        await worker.ready()
        sampler = await asyncio.create_subprocess_exec(
            str(spy), "record", "--idle", "--format", "raw", "--rate", "200", "--pid", str(worker.pid),
            "--output", str(out), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await watch_drain([worker], bench, len(records), timeout_s=max(120.0, len(records) / 200))
        sampler.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        await sampler.wait()
    finally:
        worker.stop()
    return {**summarise_profile(out), "collapsed_stacks": str(out)}


# ------------------------------------------------------------------------------------------------ report


def machine() -> dict[str, Any]:
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


async def postgres_settings(admin_dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        return {name: str(await conn.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await conn.close()


def source_state() -> dict[str, Any]:
    """What was measured: the commit and any uncommitted changes (the working tree is shared while we run)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.rstrip()

    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "HEAD").strip(), "modified_files": dirty}


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return round(float(a["events_per_s"]) / float(b["events_per_s"]), 2)


def table(report: dict[str, Any]) -> str:
    r = report["results"]
    rows = [
        ("worker, end to end (1 replica, defaults)", r["worker"]),
        ("client limit: consume + decode", r["client_limit"]),
        ("decode + normalise, in-process (CPU floor)", r["normalise_only"]),
        ("database limit: Store.apply, batches of 2000", r["database_limit"]),
        ("PostgreSQL floor: COPY only, batches of 2000", r["postgres_floor"]),
        ("naive worker: 1 record, 1 txn, 1 commit", r["naive"]),
    ]
    lines = [f"{'measurement':<46} {'events':>8} {'seconds':>8} {'events/s':>10}"]
    lines += [f"{name:<46} {m['events']:>8} {m['seconds']:>8.1f} {m['events_per_s']:>10.0f}" for name, m in rows]
    w = r["worker"]
    lines += [
        "",
        f"worker / database limit: {report['ratios']['worker_vs_database_limit']:.2f}x   "
        f"worker / PostgreSQL floor: {report['ratios']['worker_vs_postgres_floor']:.2f}x   "
        f"worker / naive: {report['ratios']['worker_vs_naive']:.1f}x   "
        f"worker / client limit: {report['ratios']['worker_vs_client_limit']:.2f}x",
        f"worker: CPU {w['cpu_percent_of_one_core']}% of one core ({w['cpu_ms_per_1000_events']} ms per 1000 events), "
        f"peak RSS {w['peak_rss_mib']} MiB, {w['batches']} batches of {w['mean_batch_size']} on average; "
        f"PostgreSQL CPU {w['postgres_cpu_seconds']} s, Kafka CPU {w['kafka_cpu_seconds']} s over {w['seconds']} s",
        *(_latency_line(r[k]) for k in ("latency", "latency_high") if k in r),
    ]
    return "\n".join(lines)


def _latency_line(lat: dict[str, Any]) -> str:
    return (
        f"latency at {lat['offered_events_per_s']:.0f} events/s offered ({lat['events']} events): "
        f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms (record timestamp -> committed, "
        f"±10 ms); worker histogram p50 {lat['worker_histogram_p50_ms']} ms, p99 {lat['worker_histogram_p99_ms']} ms; "
        f"CPU {lat['cpu_percent_of_one_core']}%, peak RSS {lat['peak_rss_mib']} MiB; producer acks p50 "
        f"{lat['produce_ack_p50_ms']} ms, p99 {lat['produce_ack_p99_ms']} ms; {lat['worker_batches']} batches of "
        f"{lat['worker_mean_batch_size']} records, {lat['worker_mean_batch_ms']} ms each on average"
    )


# ------------------------------------------------------------------------------------------------ main


@dataclass
class Options:
    events: int
    rate: float
    high_rate: float
    latency_seconds: float
    naive_seconds: float
    seed: int
    quick: bool
    output: Path
    profile: bool
    scale_out: tuple[int, ...]


def options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, help="events pre-produced for the throughput figures (default 120000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds per measurement")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered load of the latency run, events/s")
    parser.add_argument(
        "--high-rate", type=float, default=4000.0, help="offered load of a second latency run near capacity (0: none)"
    )
    parser.add_argument("--latency-seconds", type=float, help="length of the latency run (default 30, quick 3)")
    parser.add_argument("--naive-seconds", type=float, help="time bound of the naive worker (default 30, quick 3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="instead: drain N events under py-spy, print hotspots")
    parser.add_argument(
        "--scale-out",
        default="",
        metavar="1,2,3",
        help="instead: drain N events with each number of replicas in turn, print the aggregate and each one's CPU",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON goes (default bench/results)")
    a = parser.parse_args(argv)
    return Options(
        events=a.events or (3000 if a.quick else 120_000),
        rate=a.rate,
        high_rate=a.high_rate,
        latency_seconds=a.latency_seconds or (3.0 if a.quick else 30.0),
        naive_seconds=a.naive_seconds or (3.0 if a.quick else 30.0),
        seed=a.seed,
        quick=a.quick,
        output=a.output,
        profile=a.profile,
        scale_out=tuple(int(k) for k in a.scale_out.split(",") if k),
    )


async def measure_all(bench: Bench, opts: Options, log_dir: Path) -> dict[str, Any]:
    records = corpus(opts.events, opts.seed)
    offered = example_stream(int(opts.rate * opts.latency_seconds), opts.seed + 1)
    offered_high = example_stream(int(opts.high_rate * opts.latency_seconds), opts.seed + 2)
    results: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("worker", lambda: measure_worker(bench, records, log_dir)),
        ("latency", lambda: measure_latency(bench, offered, opts.rate, log_dir)),
        *(
            [("latency_high", lambda: measure_latency(bench, offered_high, opts.high_rate, log_dir))]
            if opts.high_rate
            else []
        ),
        ("client_limit", lambda: measure_client_limit(bench, records)),
        ("database_limit", lambda: measure_database_limit(bench, items)),
        ("postgres_floor", lambda: measure_postgres_floor(bench, items)),
        ("naive", lambda: measure_naive(bench, records[:50_000], opts.naive_seconds)),
    ]
    load = round(os.getloadavg()[0], 2)
    tune_gc()  # as the worker does: the in-process baselines must not pay for the collector what the worker does not
    items, results["normalise_only"] = normalised_items(records)
    results["normalise_only"]["load_average_1m_at_start"] = load
    for name, step in steps:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        load = round(os.getloadavg()[0], 2)
        try:
            results[name] = {**await step(), "load_average_1m_at_start": load}
        finally:
            await bench.tidy()
    return results


def write(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    path = directory / f"worker-{report['timestamp'].replace(':', '')}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path


async def run(opts: Options, bench: Bench) -> dict[str, Any]:
    log_dir = opts.output / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started, source = machine(), source_state()
    results = await measure_all(bench, opts, log_dir)
    return {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": opts.quick,
        "options": {**vars(opts), "output": str(opts.output), "partitions": PARTITIONS},
        "machine": {**started, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "postgres": await postgres_settings(bench.admin_dsn),
        "source": source,
        "stack_started_here": bench.stack.kafka is not None or bench.stack.postgres is not None,
        "results": results,
        "ratios": {
            "worker_vs_database_limit": ratio(results["worker"], results["database_limit"]),
            "worker_vs_postgres_floor": ratio(results["worker"], results["postgres_floor"]),
            "worker_vs_naive": ratio(results["worker"], results["naive"]),
            "worker_vs_client_limit": ratio(results["worker"], results["client_limit"]),
        },
    }


async def profile_only(opts: Options, bench: Bench) -> None:
    log_dir = opts.output / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        summary = await profile_worker(bench, corpus(opts.events, opts.seed), log_dir)
    finally:
        await bench.tidy()
    summary["machine"], summary["source"] = machine(), source_state()
    (opts.output / "profile-latest.json").write_text(json.dumps(summary, indent=2))
    print(f"{summary['samples']} samples of the worker process draining {opts.events} events (py-spy, --idle)")
    for name, pct in summary["percent_by_stage"].items():
        print(f"  {pct:5.1f}%  {name}")
    for key, title in (("hottest_own_percent", "own time"), ("hottest_total_percent", "total time, project code")):
        print(f"hottest functions, {title}:")
        for name, pct in summary[key].items():
            print(f"  {pct:5.1f}%  {name}")
    print(f"written: {opts.output / 'profile-latest.json'}; stacks: {summary['collapsed_stacks']}")


async def scale_out_only(opts: Options, bench: Bench) -> None:
    log_dir = opts.output / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    records, runs = corpus(opts.events, opts.seed), []
    for replicas in opts.scale_out:
        print(f"bench: {replicas} replica(s) ...", file=sys.stderr, flush=True)
        load = round(os.getloadavg()[0], 2)
        try:
            measured = await measure_scale_out(bench, records, replicas, log_dir)
            runs.append({**measured, "load_average_1m_at_start": load})
        finally:
            await bench.tidy()
    report: dict[str, Any] = {"timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    report["machine"] = machine()
    report |= {"source": source_state(), "partitions": PARTITIONS, "runs": runs}
    (opts.output / "scale-latest.json").write_text(json.dumps(report, indent=2))
    header = f"{'replicas':>8} {'events/s':>9} {'CPU % of a core, each':>24}"
    print(f"{header} {'worker ms/1000':>15} {'PostgreSQL ms/1000':>19}")
    for r in runs:
        each = " ".join(f"{c:.0f}" for c in r["cpu_percent_of_one_core_each"])
        pg = r["postgres_cpu_ms_per_1000_events"]
        print(
            f"{r['replicas']:>8} {r['events_per_s']:>9.0f} {each:>24} {r['cpu_ms_per_1000_events_all_workers']:>15}"
            f" {pg if pg is not None else 'n/a':>19}"
        )
    print(f"written: {opts.output / 'scale-latest.json'}")


def main(argv: Sequence[str] | None = None) -> None:
    opts = options(argv)
    logs.configure("WARNING", "console")  # the in-process Store logs at DEBUG; the table is the output
    with local_stack() as bench:
        if opts.profile:
            asyncio.run(profile_only(opts, bench))
            return
        if opts.scale_out:
            asyncio.run(scale_out_only(opts, bench))
            return
        report = asyncio.run(run(opts, bench))
    print(table(report))
    print(f"written: {write(report, opts.output)} and {opts.output / 'latest.json'}")


if __name__ == "__main__":
    main()
