"""`make demo`: the worker end to end on a local stack (real Kafka + real PostgreSQL), then everything stopped.

1. starts the stack (or uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL), 2. `carsys-ingest init` (topics, migrations),
3. starts `carsys-ingest run`, 4. publishes the contract's examples, a few hundred generated events with messy
contact fields, and invalid records, 5. waits until the worker has consumed everything, 6. prints what landed and the
dead letters, 7. stops the worker (SIGTERM) and the stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from dev import samples
from dev import stack as devstack
from dev.kafka import produce
from dev.process import REPO

TOPIC = "carsys.appointments"
CLI = [sys.executable, "-m", "worker.cli"]
EXAMPLES = REPO / "schemas" / "examples"


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def sample_records() -> tuple[list[tuple[bytes | None, bytes]], int]:
    """The records to publish, and how many of them are invalid."""
    valid = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    valid += list(samples.stream(seed=2026, events=500, dealers=2))
    records: list[tuple[bytes | None, bytes]] = [(samples.key_of(e), samples.encode(e)) for e in valid]
    invalid = [(b"dealer-x/" + p.stem.encode(), p.read_bytes()) for p in sorted((EXAMPLES / "invalid").glob("*.json"))]
    invalid += [
        (b"dealer-x/garbage", b"{not json at all"),
        (b"dealer-x/latin1", "Jansen, Tilburg".encode("latin-1") + b"\xe9"),
    ]
    return records + invalid, len(invalid)


async def wait_consumed(dsn: str, total: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(dsn)
            try:
                done = await conn.fetchval(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic = $1", TOPIC
                )
            finally:
                await conn.close()
            print(f"   consumed {done}/{total}", end="\r", flush=True)
            if done >= total:
                print()
                return
        except (OSError, asyncpg.PostgresError):
            pass
        await asyncio.sleep(0.5)
    raise SystemExit(f"the worker did not consume {total} records within {timeout_s:.0f}s")


async def show_tables(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for table in ("appointments", "interventions", "vehicles", "persons", "applied_events"):
            print(f"   {table:<15} {await conn.fetchval(f'SELECT count(*) FROM {table}'):>6} rows")
        deleted = await conn.fetchval("SELECT count(*) FROM appointments WHERE deleted")
        print(f"   ({deleted} appointments are tombstones of deletions)")
        row: Any = await conn.fetchrow(
            "SELECT person_id, title, city, postcode, house_number, house_number_addition, preferred_mobile, "
            "preferred_email, notes FROM persons WHERE notes <> '[]' ORDER BY person_id LIMIT 1"
        )
        if row:
            say("one normalised person (invented data), with the normaliser's notes (no values in notes)")
            for key, value in dict(row).items():
                print(f"   {key:<22} {value}")
        plates = await conn.fetch("SELECT license_plate, vehicle_key, fuel FROM vehicles ORDER BY vehicle_key LIMIT 3")
        for p in plates:
            print(f"   vehicle: plate {p['license_plate']}, key {p['vehicle_key']}, fuel {p['fuel']}")
    finally:
        await conn.close()


def run_cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([*CLI, *args], env=env, check=True, cwd=REPO)


def spawn_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen([*CLI, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


async def demo(stack: devstack.Stack, log_path: Path) -> None:
    env = {
        **os.environ,
        **stack.env(),
        "KAFKA_TOPIC": TOPIC,
        "LOG_FORMAT": "json",
        "METRICS_PORT": str(devstack.free_port()),
    }
    say("carsys-ingest init: topics (6 partitions, dead-letter topic with 30 days retention) and migrations")
    run_cli(env, "init", "--partitions", "6")
    say(f"carsys-ingest run (logs: {log_path}, metrics: http://127.0.0.1:{env['METRICS_PORT']}/metrics)")
    worker = spawn_worker(env, log_path)
    try:
        records, n_invalid = sample_records()
        say(f"publishing {len(records)} records ({n_invalid} invalid) to {TOPIC}")
        await produce(stack.kafka_bootstrap, TOPIC, records)
        await wait_consumed(stack.database_url, len(records))
        say("what landed in PostgreSQL")
        await show_tables(stack.database_url)
        say(f"carsys-ingest dlq list: the dead letters in {TOPIC}.dlq (docs/operations.md says how to replay them)")
        run_cli(env, "dlq", "list")
        say("carsys-ingest dlq show --stage decode: one letter, values redacted")
        run_cli(env, "dlq", "show", "--stage", "decode", "--limit", "1")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        say(f"worker stopped on SIGTERM with exit code {code}")


def main() -> int:
    say("starting the local stack (real Apache Kafka in KRaft mode + real PostgreSQL)")
    stack = devstack.up("demo")
    print(f"   Kafka {stack.kafka_bootstrap}, PostgreSQL {stack.database_url}")
    try:
        asyncio.run(demo(stack, Path(devstack.STATE_ROOT) / "demo-worker.log"))
    finally:
        stack.down()
        say("stack stopped and its data deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
