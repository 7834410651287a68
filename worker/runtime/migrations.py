"""Numbered plain-SQL migrations (``sql/NNN_name.sql``), applied by ``carsys-ingest migrate``.

- Files apply in numeric order, each in its own transaction together with its ``schema_migrations`` row, so a
  failing file leaves nothing behind and the next run retries it.
- The whole run holds a session-level ``pg_advisory_lock``: replicas starting at once queue up, the first applies,
  the others then find nothing pending. Running it twice is a no-op.
- ``schema_migrations`` records version and sha256 checksum; if an applied file has changed since, the run refuses
  before applying anything (fix it with a new file, never by editing an applied one).
- Versions applied in the database but absent from this build are tolerated: that is an older build running
  against a newer schema during a rollback, and migrations only ever add.

With ``MIGRATE_ON_START=false`` (the runtime role, which may not change the schema) the worker calls ``check_current``
instead: read-only, it exits with one line when a file is not applied (``DeploymentError``) or was changed
(``MigrationError``). A role without the right to change the schema that tries to migrate gets the same kind of line,
never a half-applied file (each file is one transaction).

The files are looked up as package data first (``worker/_sql`` in the wheel), then in the repository's ``sql/``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import re
import ssl
import sys
from pathlib import Path

import asyncpg
import msgspec

from worker.config import database_url_from_env
from worker.errors import DeploymentError, MigrationError
from worker.runtime.failures import database_tls_refusal

# pg_advisory_lock key: any constant shared by every replica; derived from the name so it does not collide with
# keys other software may use in the same database.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"carsys-ingest:migrations").digest()[:8], "big", signed=True)

_FILE = re.compile(r"^(\d+)_[A-Za-z0-9_]+\.sql$")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text        PRIMARY KEY,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class Migration(msgspec.Struct, frozen=True):
    version: str  # file name without .sql, e.g. "001_schema"
    number: int
    sql: str
    checksum: str  # sha256 hex of the file's bytes


def sql_dir() -> Path:
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_sql", package.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise MigrationError(f"no migrations directory found (looked for {package / '_sql'} and {package.parent / 'sql'})")


def load(directory: Path | None = None) -> list[Migration]:
    """The migration files in apply order."""
    directory = sql_dir() if directory is None else directory
    found: list[Migration] = []
    for path in directory.glob("*.sql"):
        match = _FILE.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNN_name.sql")
        raw = path.read_bytes()
        found.append(
            Migration(
                version=path.stem,
                number=int(match.group(1)),
                sql=raw.decode("utf-8"),
                checksum=hashlib.sha256(raw).hexdigest(),
            )
        )
    found.sort(key=lambda m: m.number)
    for before, after in itertools.pairwise(found):
        if before.number == after.number:
            raise MigrationError(f"{before.version} and {after.version} share the number {before.number}")
    return found


def _check_unchanged(migrations: list[Migration], applied: dict[str, str]) -> None:
    changed = [m.version for m in migrations if m.version in applied and applied[m.version] != m.checksum]
    if changed:
        raise MigrationError(
            f"applied migration(s) changed since they were applied: {', '.join(changed)}; "
            "restore the original file(s) and put the change in a new numbered file"
        )


async def migrate(dsn: str, *, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations; returns the versions applied by this call (empty when up to date)."""
    migrations = load(directory)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        try:
            return await _apply_pending(conn, migrations)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise DeploymentError(
                f"the database role may not change the schema ({exc.sqlstate}: {type(exc).__name__}): run"
                " `carsys-ingest migrate` as the owner role and set MIGRATE_ON_START=false for this role"
            ) from None
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await conn.close()


async def pending(dsn: str, *, directory: Path | None = None) -> list[str]:
    """The versions not yet applied, read-only (no DDL, no lock). Raises MigrationError if an applied file changed."""
    migrations = load(directory)
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return [m.version for m in migrations]
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    finally:
        await conn.close()
    applied = {r["version"]: r["checksum"] for r in rows}
    _check_unchanged(migrations, applied)
    return [m.version for m in migrations if m.version not in applied]


async def check_current(dsn: str, *, directory: Path | None = None) -> None:
    """Raise DeploymentError naming the missing migrations if the schema is behind this build."""
    missing = await pending(dsn, directory=directory)
    if missing:
        raise DeploymentError(
            f"the database schema is behind this build ({len(missing)} migration(s) not applied: {', '.join(missing)})"
            " and MIGRATE_ON_START=false: run `carsys-ingest migrate` as the owner role first"
        )


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    # Created under the lock: concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog.
    await conn.execute(_BOOKKEEPING)
    applied = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
    _check_unchanged(migrations, applied)
    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        async with conn.transaction():
            # No arguments: the simple query protocol, so a file may hold many statements.
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                migration.version,
                migration.checksum,
            )
        done.append(migration.version)
    return done


def migrate_command(args: argparse.Namespace) -> int:
    dsn = database_url_from_env()
    try:
        applied = asyncio.run(migrate(dsn))
    except MigrationError as exc:
        sys.stderr.write(f"carsys-ingest migrate: {exc}\n")
        return 1
    except ssl.SSLError as exc:  # a CA that does not match: the command line's one line and exit code (6)
        raise (database_tls_refusal(exc, dsn) or exc) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The message may name the host, never data; the DSN itself (with its password) is not printed.
        sys.stderr.write(f"carsys-ingest migrate: database error: {type(exc).__name__}: {exc}\n")
        return 1
    if applied:
        sys.stdout.write("".join(f"applied {version}\n" for version in applied))
    else:
        sys.stdout.write("schema up to date\n")
    return 0


__all__ = [
    "LOCK_KEY",
    "Migration",
    "MigrationError",
    "check_current",
    "load",
    "migrate",
    "migrate_command",
    "pending",
    "sql_dir",
]
