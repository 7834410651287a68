"""Least privilege against a real PostgreSQL: sql/roles/roles.sql's two roles, the owner migrates, the runtime role
runs the whole pipeline with MIGRATE_ON_START=false and can never change the schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from dev import samples
from dev.db import fetchval
from dev.kafka import produce, read_all
from dev.process import REPO, WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory, with_database
from worker.runtime import migrations

pytestmark = pytest.mark.timeout(240)

ROLES_SQL = REPO / "sql" / "roles" / "roles.sql"


class Roles:
    def __init__(self, admin_dsn: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        # Roles are cluster-wide and the stack may be shared: the documented names, made unique for this run.
        self.owner, self.runtime = f"carsys_owner_{suffix}", f"carsys_runtime_{suffix}"
        self.admin_dsn = admin_dsn
        self.databases: list[str] = []

    def sql(self) -> str:
        text = ROLES_SQL.read_text()
        return text.replace("carsys_owner", self.owner).replace("carsys_runtime", self.runtime)

    def dsn(self, database_dsn: str, role: str) -> str:
        parts = urlsplit(database_dsn)
        return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _new_database(admin_dsn: str, roles: Roles | None) -> str:
    name = f"t_least_privilege_{uuid.uuid4().hex[:8]}"
    await _execute(admin_dsn, f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    if roles is not None:
        roles.databases.append(name)
        await _execute(dsn, roles.sql())
    return dsn


@pytest.fixture(scope="module")
def roles(pg_admin_dsn: str) -> Iterator[Roles]:
    made = Roles(pg_admin_dsn)
    yield made
    asyncio.run(_drop_roles(made))


async def _drop_roles(roles: Roles) -> None:
    # The databases go first (grants and default privileges live in them), then the cluster-wide roles.
    for name in roles.databases:
        await _execute(roles.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _execute(roles.admin_dsn, f"DROP ROLE {roles.owner}; DROP ROLE {roles.runtime}")


@pytest.fixture(scope="module")
def migrated(pg_admin_dsn: str, roles: Roles) -> str:
    """A database with both roles, migrated by the owner role through the command line."""
    dsn = asyncio.run(_new_database(pg_admin_dsn, roles))
    result = _cli(["migrate"], {"DATABASE_URL": roles.dsn(dsn, roles.owner)})
    assert result.returncode == 0, result.stderr
    assert "applied 001_" in result.stdout
    return dsn


def _cli(argv: list[str], env: dict[str, str], timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        check=False,
    )


def _one_line(stderr: str, wanted: str) -> str:
    assert "Traceback" not in stderr
    lines = expected.operator_lines(stderr)
    assert len(lines) == 1, stderr[-2000:]
    assert wanted in lines[0]
    return lines[0]


async def test_the_runtime_role_runs_the_whole_pipeline_without_migrating(
    migrated: str, roles: Roles, kafka_bootstrap: str, create_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=2, dlq=True)
    valid = [e for e in samples.stream(seed=31, events=80) if e["event_type"] == "appointment.upserted"]
    records = [(samples.key_of(e), samples.encode(e)) for e in valid] + [(b"dealer-x/1", b"{not json")]
    await produce(kafka_bootstrap, topic, records)
    runtime_dsn = roles.dsn(migrated, roles.runtime)
    env = worker_env(bootstrap=kafka_bootstrap, database_url=runtime_dsn, topic=topic, group=topic)
    worker = WorkerProcess({**env, "MIGRATE_ON_START": "false"}, tmp_path / "runtime.log").start()
    try:
        distinct = len({e["event_id"] for e in valid})

        async def all_applied() -> bool:
            return bool(await fetchval(migrated, "SELECT count(*) FROM applied_events") == distinct)

        await eventually(all_applied, timeout_s=90, workers=[worker], what="every valid event applied")
        letters: list[object] = []
        for _ in range(40):
            letters = await read_all(kafka_bootstrap, f"{topic}.dlq")
            if letters:
                break
            await asyncio.sleep(0.5)
    finally:
        assert worker.stop() == 0, worker.death_note("stopping")
    assert len(letters) == 1
    log = worker.log_text()
    assert "schema current" in log
    assert "permission denied" not in log
    assert "Traceback" not in log
    owners = await fetchval(migrated, "SELECT array_agg(DISTINCT tableowner) FROM pg_tables WHERE schemaname='public'")
    assert owners == [roles.owner]  # the worker created nothing of its own


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE intruder (a int)",
        "ALTER TABLE persons ADD COLUMN intruder int",
        "DROP TABLE applied_events",
        "CREATE INDEX intruder_idx ON persons (dealer_id)",
        "TRUNCATE consumer_offsets",
    ],
)
async def test_postgres_refuses_the_runtime_role_any_ddl(migrated: str, roles: Roles, ddl: str) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _execute(roles.dsn(migrated, roles.runtime), ddl)


async def test_the_runtime_role_has_what_the_batch_writer_needs(migrated: str, roles: Roles) -> None:
    from worker.runtime.tables import PERSONS

    conn = await asyncpg.connect(roles.dsn(migrated, roles.runtime))
    try:
        async with conn.transaction():
            await conn.execute(PERSONS.staging_ddl())  # COPY's temporary staging table
            await conn.copy_records_to_table("_stage_persons", records=[], columns=[c[0] for c in PERSONS.columns])
            assert await conn.fetchval("SELECT pg_try_advisory_xact_lock(42)") is True
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(migrations.load())
    finally:
        await conn.close()


def test_a_runtime_role_worker_told_to_migrate_says_so_in_one_line(migrated: str, roles: Roles) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DATABASE_URL": roles.dsn(migrated, roles.runtime)}
    result = _cli(["run"], {**env, "MIGRATE_ON_START": "true", "METRICS_PORT": "0"})
    assert result.returncode == 3, result.stderr[-2000:]
    _one_line(result.stderr, "MIGRATE_ON_START=false")


async def test_a_schema_behind_the_build_stops_a_runtime_role_worker_before_any_ddl(
    pg_admin_dsn: str, roles: Roles, tmp_path: Path
) -> None:
    dsn = await _new_database(pg_admin_dsn, roles)
    first = migrations.load()[0]
    (tmp_path / f"{first.version}.sql").write_text(first.sql)
    assert await migrations.migrate(roles.dsn(dsn, roles.owner), directory=tmp_path) == [first.version]

    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "DATABASE_URL": roles.dsn(dsn, roles.runtime)}
    result = _cli(["run"], {**env, "MIGRATE_ON_START": "false", "METRICS_PORT": "0"})
    assert result.returncode == 3, result.stderr[-2000:]
    line = _one_line(result.stderr, "schema is behind")
    assert all(m.version in line for m in migrations.load()[1:])
    applied = await fetchval(dsn, "SELECT count(*) FROM schema_migrations")
    assert applied == 1  # nothing half-applied, nothing applied at all


async def test_an_empty_database_is_behind_too(pg_admin_dsn: str) -> None:
    dsn = await _new_database(pg_admin_dsn, None)
    assert await migrations.pending(dsn) == [m.version for m in migrations.load()]
    assert await fetchval(dsn, "SELECT to_regclass('schema_migrations')") is None  # the check created nothing
