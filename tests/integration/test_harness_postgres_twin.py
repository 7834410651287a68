"""A twin of test_harness_postgres: both create table `harness`, so they pass in either order only if isolated."""

from __future__ import annotations

import asyncpg


async def test_rows_round_trip_through_real_postgres(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # The same table name in every harness module: isolation comes from the per-module database.
        await conn.execute("CREATE TABLE harness (id int PRIMARY KEY, note text)")
        await conn.copy_records_to_table("harness", records=[(1, "een"), (2, "twee")])
        rows = await conn.fetch("SELECT id, note FROM harness ORDER BY id")
        version = await conn.fetchval("SHOW server_version_num")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [(1, "een"), (2, "twee")]
    assert int(version) >= 150000


async def test_each_module_gets_an_empty_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'harness'"
        )
    finally:
        await conn.close()
    assert tables == []
