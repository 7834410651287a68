"""Migrations against a real PostgreSQL: order, idempotence, the advisory lock, checksums."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import with_database
from worker.errors import ConfigError
from worker.runtime.migrations import MigrationError, load, migrate, migrate_command

REPO = Path(__file__).resolve().parents[2]


async def _fresh_database(admin_dsn: str) -> str:
    name = f"t_migr_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def _write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql, encoding="utf-8")


async def test_applies_the_repository_migrations_then_is_a_no_op(database_url: str) -> None:
    expected = [m.version for m in load()]
    assert expected
    assert expected[0].startswith("001_")

    assert await migrate(database_url) == expected
    assert await migrate(database_url) == []

    tables = {r["tablename"] for r in await _fetch(database_url, "SELECT tablename FROM pg_tables")}
    assert {
        "appointments",
        "interventions",
        "vehicles",
        "persons",
        "applied_events",
        "consumer_offsets",
        "schema_migrations",
    } <= tables
    rows = await _fetch(database_url, "SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["checksum"]) for r in rows] == [(m.version, m.checksum) for m in load()]


async def test_files_apply_in_numeric_order(pg_admin_dsn: str, tmp_path: Path) -> None:
    dsn = await _fresh_database(pg_admin_dsn)
    _write(tmp_path, "10_second.sql", "INSERT INTO log VALUES ('10');")
    _write(tmp_path, "9_first.sql", "CREATE TABLE log (v text); INSERT INTO log VALUES ('9');")
    assert await migrate(dsn, directory=tmp_path) == ["9_first", "10_second"]
    assert [r["v"] for r in await _fetch(dsn, "SELECT v FROM log")] == ["9", "10"]


async def test_changed_applied_file_is_refused_before_anything_runs(pg_admin_dsn: str, tmp_path: Path) -> None:
    dsn = await _fresh_database(pg_admin_dsn)
    _write(tmp_path, "001_base.sql", "CREATE TABLE base (id int);")
    await migrate(dsn, directory=tmp_path)

    _write(tmp_path, "001_base.sql", "CREATE TABLE base (id bigint);")
    _write(tmp_path, "002_next.sql", "CREATE TABLE next (id int);")
    with pytest.raises(MigrationError, match="001_base"):
        await migrate(dsn, directory=tmp_path)

    tables = {r["tablename"] for r in await _fetch(dsn, "SELECT tablename FROM pg_tables")}
    assert "next" not in tables
    # Restoring the file unblocks the run: the refusal left no lock or half-applied state behind.
    _write(tmp_path, "001_base.sql", "CREATE TABLE base (id int);")
    assert await migrate(dsn, directory=tmp_path) == ["002_next"]


async def test_failing_file_leaves_nothing_and_is_retried_next_run(pg_admin_dsn: str, tmp_path: Path) -> None:
    dsn = await _fresh_database(pg_admin_dsn)
    _write(tmp_path, "001_ok.sql", "CREATE TABLE ok (id int);")
    _write(tmp_path, "002_broken.sql", "CREATE TABLE half (id int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate(dsn, directory=tmp_path)
    tables = {r["tablename"] for r in await _fetch(dsn, "SELECT tablename FROM pg_tables")}
    assert "ok" in tables
    assert "half" not in tables
    assert [r["version"] for r in await _fetch(dsn, "SELECT version FROM schema_migrations")] == ["001_ok"]

    _write(tmp_path, "002_broken.sql", "CREATE TABLE half (id int);")
    assert await migrate(dsn, directory=tmp_path) == ["002_broken"]


def test_bad_file_names_and_duplicate_numbers_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "001_a.sql", "SELECT 1;")
    _write(tmp_path, "1_b.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="share the number 1"):
        load(tmp_path)
    (tmp_path / "1_b.sql").unlink()
    _write(tmp_path, "create-things.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNN_name\.sql"):
        load(tmp_path)


async def _run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _env(dsn: str) -> dict[str, str]:
    # Only DATABASE_URL: `migrate` must not need the Kafka settings.
    return {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": dsn, "PYTHONPATH": str(REPO)}


async def test_three_concurrent_cli_processes_apply_once(pg_admin_dsn: str) -> None:
    dsn = await _fresh_database(pg_admin_dsn)
    cli = [sys.executable, "-m", "worker.cli", "migrate"]
    results = await asyncio.gather(*(_run(*cli, env=_env(dsn)) for _ in range(3)))

    assert [rc for rc, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    outputs = sorted(out for _, out, _ in results)
    applied = "".join(f"applied {m.version}\n" for m in load())
    assert outputs == sorted([applied, "schema up to date\n", "schema up to date\n"])
    rows = await _fetch(dsn, "SELECT version FROM schema_migrations")
    assert sorted(r["version"] for r in rows) == [m.version for m in load()]


async def test_concurrent_processes_serialise_on_the_lock(pg_admin_dsn: str, tmp_path: Path) -> None:
    # A slow, non-idempotent file: without the lock two processes would both run it and one would fail.
    dsn = await _fresh_database(pg_admin_dsn)
    _write(tmp_path, "001_slow.sql", "SELECT pg_sleep(0.5); CREATE TABLE slow (id int); INSERT INTO slow VALUES (1);")
    code = (
        "import asyncio, sys; from pathlib import Path; from worker.runtime.migrations import migrate; "
        "print(asyncio.run(migrate(sys.argv[1], directory=Path(sys.argv[2]))))"
    )
    runs = [_run(sys.executable, "-c", code, dsn, str(tmp_path), env=_env(dsn)) for _ in range(3)]
    results = await asyncio.gather(*runs)

    assert [rc for rc, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    assert sorted(out.strip() for _, out, _ in results) == ["['001_slow']", "[]", "[]"]
    assert [r["id"] for r in await _fetch(dsn, "SELECT id FROM slow")] == [1]


async def test_cli_reports_a_changed_file_and_exits_non_zero(pg_admin_dsn: str, tmp_path: Path) -> None:
    dsn = await _fresh_database(pg_admin_dsn)
    conn = await asyncpg.connect(dsn)
    try:
        # Pretend 001 was applied with other contents.
        await conn.execute(
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, checksum text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute("INSERT INTO schema_migrations VALUES ($1, 'not-the-checksum')", load()[0].version)
    finally:
        await conn.close()
    rc, _out, err = await _run(sys.executable, "-m", "worker.cli", "migrate", env=_env(dsn))
    assert rc == 1
    assert "changed since they were applied" in err
    assert load()[0].version in err


def test_migrate_command_needs_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        migrate_command(None)  # type: ignore[arg-type]
