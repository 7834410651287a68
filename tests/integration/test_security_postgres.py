"""TLS to PostgreSQL against a real server: ``ssl=on`` with a certificate made for the run (dev/stack.py --secure),
``DATABASE_URL`` with ``sslmode=verify-full&sslrootcert=`` (asyncpg reads both from the DSN), a CA that does not
match refused in one line (exit 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from dev import certs, samples
from dev import stack as devstack
from dev.db import fetchval
from dev.kafka import produce
from dev.process import REPO, WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def tls_stack(kafka_bootstrap: str) -> Iterator[devstack.Stack]:
    # PostgreSQL only (Kafka is the run's, passed in): ssl=on, the certificate valid for 127.0.0.1.
    stack = devstack.up(
        f"secure-pg-{os.getpid()}", fast=True, secure=True, environ={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    )
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def tls_dsn(tls_stack: devstack.Stack) -> str:
    dsn = tls_stack.secure_env()["DATABASE_URL"]
    assert "sslmode=verify-full" in dsn
    return dsn


def cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *argv],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


async def test_verify_full_connects_encrypted(tls_dsn: str) -> None:
    conn = await asyncpg.connect(tls_dsn)
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
    finally:
        await conn.close()


async def test_the_worker_runs_over_tls(
    tls_dsn: str, kafka_bootstrap: str, create_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=2, dlq=True)
    events = [e for e in samples.stream(seed=51, events=30) if e["event_type"] == "appointment.upserted"]
    await produce(kafka_bootstrap, topic, [(samples.key_of(e), samples.encode(e)) for e in events])
    env = worker_env(bootstrap=kafka_bootstrap, database_url=tls_dsn, topic=topic, group=topic)
    worker = WorkerProcess(env, tmp_path / "tls-worker.log").start()
    try:

        async def applied() -> bool:
            try:
                count = await fetchval(tls_dsn, "SELECT count(*) FROM applied_events")
            except asyncpg.UndefinedTableError:
                return False
            return bool(count == len({e["event_id"] for e in events}))

        await eventually(applied, timeout_s=90, workers=[worker], what="events applied over TLS")
    finally:
        assert worker.stop() == 0, worker.death_note("stopping")


@pytest.mark.parametrize("command", [["run"], ["migrate"]])
def test_a_ca_that_does_not_match_is_one_line_exit_6(
    tls_dsn: str, tls_stack: devstack.Stack, kafka_bootstrap: str, command: list[str], tmp_path: Path
) -> None:
    other = certs.make_ca(tmp_path / "other", name="some other CA")
    assert tls_stack.ca_file is not None
    wrong = tls_dsn.replace(tls_stack.ca_file, str(other))
    assert wrong != tls_dsn
    result = cli(command, {"DATABASE_URL": wrong, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "METRICS_PORT": "0"})
    assert result.returncode == 6, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = expected.said(result.stderr.rstrip().splitlines()[-1])
    assert last.startswith("carsys-ingest: refused:")
    assert "not trusted" in last
    assert "sslrootcert" in last
    assert tls_stack.postgres is not None
    assert f"127.0.0.1:{tls_stack.postgres.port}" in last
