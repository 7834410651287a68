"""The dead-letter tools on a large dead-letter topic: ``dlq list`` and ``trace`` against N letters (100,000 default).

    .venv/bin/python -m bench.dlq_bench [--letters N] [--runs R] [--partitions P]

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set (DATABASE_URL's server, never its database: a fresh
database and a fresh topic pair are created), otherwise starts a throwaway stack with dev/stack.py. Fills the
dead-letter topic with N letters as the worker writes them (sample v1 events, ~1.7 KB each, ``dlq.*`` headers of a
contract error, one appointment key per letter), then times each command as an operator runs it (a
``carsys-ingest`` process: start-up and imports included), R times, and prints min and median. Prints, never
asserts; writes bench/results/dlq-<timestamp>.json. The figures of record are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dev import samples
from dev import stack as devstack
from worker.errors import ContractError
from worker.headers import letter_headers
from worker.runtime import migrations

RESULTS = Path(__file__).resolve().parent / "results"


class _Source(msgspec.Struct, frozen=True):
    """The parts of a consumer record that letter_headers reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int = 1_700_000_000_000
    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """(bootstrap, admin DSN) of the servers in the environment, or of a stack started for the run."""
    bootstrap, dsn = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("DATABASE_URL")
    if bootstrap and dsn:
        yield bootstrap, urlunsplit(urlsplit(dsn)._replace(path="/postgres"))
        return
    stack = devstack.up(f"dlqbench-{os.getpid()}", fast=True)
    try:
        yield stack.kafka_bootstrap, urlunsplit(urlsplit(stack.database_url)._replace(path="/postgres"))
    finally:
        stack.down()


async def create(bootstrap: str, admin_dsn: str, topic: str, partitions: int) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in (topic, f"{topic}.dlq")]
        )
    finally:
        await admin.close()
    name = f"dlqbench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    await migrations.migrate(dsn)
    return dsn


async def drop(bootstrap: str, admin_dsn: str, topic: str, dsn: str) -> None:
    """Remove the run's topics (~200 MB) and database from servers that may be shared."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic, f"{topic}.dlq"])
    finally:
        await admin.close()
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE "{urlsplit(dsn).path.lstrip("/")}"')
    finally:
        await conn.close()


async def fill(bootstrap: str, topic: str, letters: int, partitions: int) -> tuple[bytes, str, int]:
    """Produce ``letters`` letters; return the key and event id of one of them and the bytes produced."""
    events = samples.stream(seed=3, events=letters, dealers=50, appointments_per_dealer=10**6, delete_ratio=0)
    error = ContractError("$.appointment.persons[0].id: Expected `str`, got `int`")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    size, chosen, event_id = 0, b"", ""
    try:
        pending = []
        for n, event in enumerate(events):
            key, value = samples.key_of(event), samples.encode(event)
            headers = letter_headers(_Source(topic, n % partitions, n), error, failed_at=dt.datetime.now(dt.UTC),
                                     version="bench")  # fmt: skip
            pending.append(await producer.send(f"{topic}.dlq", value=value, key=key, headers=headers))
            size += len(key) + len(value) + sum(len(k) + len(v) for k, v in headers)
            if n == letters // 2:
                chosen, event_id = key, event["event_id"]
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return chosen, event_id, size


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(env: dict[str, str], args: list[str], runs: int) -> dict[str, Any]:
    """Wall time and the command's own CPU time (user + system): on a shared machine the wall time also holds the
    wait for a core, the CPU time does not (the broker's and PostgreSQL's work is in neither)."""
    seconds, cpu = [], []
    for _ in range(runs):
        started, cpu_before = time.perf_counter(), _children_cpu_s()
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", *args], env=env, capture_output=True, text=True, check=False
        )
        seconds.append(time.perf_counter() - started)
        cpu.append(_children_cpu_s() - cpu_before)
        if done.returncode not in (0, 1):
            raise SystemExit(f"carsys-ingest {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return {
        "command": "carsys-ingest " + " ".join(args),
        "min_s": min(seconds),
        "median_s": statistics.median(seconds),
        "cpu_median_s": statistics.median(cpu),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=100_000, help="letters in the dead-letter topic")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (min and median printed)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of both topics")
    opts = parser.parse_args()
    with servers() as (bootstrap, admin_dsn):
        topic = f"bench.dlq.{uuid.uuid4().hex[:8]}"
        dsn = asyncio.run(create(bootstrap, admin_dsn, topic, opts.partitions))
        started = time.perf_counter()
        key, event_id, size = asyncio.run(fill(bootstrap, topic, opts.letters, opts.partitions))
        took_s = time.perf_counter() - started
        print(f"filled {topic}.dlq: {opts.letters} letters, {size / 1e6:.0f} MB in {took_s:.1f} s")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": dsn, "KAFKA_TOPIC": topic}
        commands = [
            ["--version"],
            ["dlq", "list", "--json"],
            ["dlq", "list", "--json", "--key", key.decode()],
            ["trace", key.decode(), "--json"],
            ["trace", "--event-id", event_id, "--json"],
        ]
        try:
            results = [timed(env, args, opts.runs) for args in commands]
        finally:
            asyncio.run(drop(bootstrap, admin_dsn, topic, dsn))
    for r in results:
        print(
            f"{r['command']:<58} min {r['min_s']:6.2f} s  median {r['median_s']:6.2f} s"
            f"  CPU {r['cpu_median_s']:5.2f} s  load {r['load_average_after'][0]}"
        )
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {"letters": opts.letters, "bytes": size, "machine": machine(), "commit": commit(), "results": results}
    (RESULTS / f"dlq-{stamp}.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
