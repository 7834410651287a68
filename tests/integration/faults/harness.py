"""The fault suite's harness: a run (topics, database, worker processes), the end-of-scenario checks, and the
means to inject faults at the right moment (kill during a batch, keep records coming while faults last)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from dev.db import fetchval
from dev.kafka import committed_offsets, end_offsets, produce, read_all
from dev.process import WorkerProcess, worker_env
from dev.waiting import eventually
from tests import tables
from tests.integration.faults.corpus import KIND, Record, Stream

APP_NAME = "carsys-ingest-under-test"  # marks the worker's PostgreSQL sessions, so faults hit only those

# --- Kafka and PostgreSQL helpers --------------------------------------------------------------------------------


async def stored_offsets(dsn: str, topic: str) -> dict[int, int]:
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return {}
    try:
        rows = await conn.fetch("SELECT partition, next_offset FROM consumer_offsets WHERE topic = $1", topic)
    except asyncpg.PostgresError:
        return {}  # not migrated yet
    finally:
        await conn.close()
    return {r["partition"]: r["next_offset"] for r in rows}


async def applied(dsn: str) -> int:
    try:
        return int(await fetchval(dsn, "SELECT count(*) FROM applied_events"))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return -1


def worker_dsn(dsn: str) -> str:
    # asyncpg passes unknown DSN parameters on as server settings: the worker's sessions carry this name.
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name={APP_NAME}"


def db_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


async def worker_backends_in_transaction(conn: asyncpg.Connection, dsn: str, *, terminate: bool) -> int:
    """How many of the worker's sessions are inside a transaction right now (terminating them if asked)."""
    action = "pg_terminate_backend(pid)" if terminate else "true"
    rows = await conn.fetch(
        f"SELECT {action} AS hit FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 "
        "AND xact_start IS NOT NULL AND state IN ('active', 'idle in transaction')",
        db_name(dsn),
        APP_NAME,
    )
    return sum(1 for r in rows if r["hit"])


# --- the scenario harness ---------------------------------------------------------------------------------------


@dataclass
class Run:
    bootstrap: str
    dsn: str
    topic: str
    tmp_path: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def dlq(self) -> str:
        return f"{self.topic}.dlq"

    def start(self, name: str, **extra: str) -> WorkerProcess:
        env = worker_env(
            bootstrap=self.bootstrap, database_url=worker_dsn(self.dsn), topic=self.topic, group=self.topic
        )
        env |= {"LOG_LEVEL": "INFO", "BATCH_MAX_RECORDS": "500", **extra}
        worker = WorkerProcess(env, self.tmp_path / f"{name}.log").start()
        self.workers.append(worker)
        return worker

    async def until_consumed(self, *, timeout_s: float = 240, workers: Sequence[WorkerProcess] = ()) -> None:
        ends = await end_offsets(self.bootstrap, self.topic)

        async def done() -> bool:
            stored = await stored_offsets(self.dsn, self.topic)
            return all(stored.get(p, 0) >= end for p, end in ends.items())

        await eventually(done, timeout_s=timeout_s, workers=workers, what="consuming to the end of every partition")

    async def verify(self, stream: Stream) -> dict[str, int]:
        """The three end-of-scenario checks (module docstring). Returns figures for the report."""
        source = await read_all(self.bootstrap, self.topic, timeout_s=120)
        ends = await end_offsets(self.bootstrap, self.topic)
        assert len(source) == sum(ends.values()) == len(stream.records)
        expected_letters = {}
        for r in source:
            kind = dict(r.headers).get(KIND)
            if kind is not None and stream.stages[kind.decode()] is not None:
                expected_letters[(r.partition, r.offset)] = (r, stream.stages[kind.decode()])

        letters = await read_all(self.bootstrap, self.dlq, timeout_s=120)
        by_origin: dict[tuple[int, int], Any] = {}
        for letter in letters:
            h = dict(letter.headers)
            assert h["dlq.original.topic"] == self.topic.encode()
            origin = (int(h["dlq.original.partition"]), int(h["dlq.original.offset"]))
            if origin in by_origin:
                # A legitimate duplicate is the same letter sent again, nothing else.
                first = by_origin[origin]
                assert (first.key, first.value, dict(first.headers)["dlq.stage"]) == (
                    letter.key,
                    letter.value,
                    h["dlq.stage"],
                )
            by_origin.setdefault(origin, letter)
        unexpected = sorted(set(by_origin) - set(expected_letters))
        missing = sorted(set(expected_letters) - set(by_origin))
        assert not unexpected, f"{len(unexpected)} dead letters for valid records (an outage?): {unexpected[:5]}"
        assert not missing, f"{len(missing)} invalid records not dead-lettered: {missing[:5]}"
        for origin, (record, stage) in expected_letters.items():
            letter = by_origin[origin]
            kind = dict(record.headers)[KIND].decode()
            h = dict(letter.headers)
            assert h["dlq.stage"].decode() == stage, f"{kind}: stage {h['dlq.stage']!r}, expected {stage}"
            assert (letter.key, letter.value) == (record.key, record.value), f"{kind}: not byte-identical"
            assert [x for x in letter.headers if not x[0].startswith("dlq.")] == list(record.headers), kind
            assert int(h["dlq.original.timestamp"]) == record.timestamp

        conn = await asyncpg.connect(self.dsn)
        try:
            actual = await tables.read_tables(conn)
        finally:
            await conn.close()
        tables.assert_tables_equal(tables.expected_state(stream.valid), actual)

        stored = await stored_offsets(self.dsn, self.topic)
        assert {p: stored.get(p, 0) for p in ends} == ends

        async def kafka_caught_up() -> bool:
            return await committed_offsets(self.bootstrap, self.topic, self.topic, list(ends)) == ends

        await eventually(kafka_caught_up, timeout_s=60, what="Kafka's committed offsets reaching the end")
        figures = {
            "records": len(source),
            "valid_events": len(stream.valid),
            "dead_letters": len(by_origin),
            "raw_dead_letter_duplicates": len(letters) - len(by_origin),
        }
        print(f"\n[faults] {self.topic}: {figures}")
        return figures

    def stop_all(self) -> list[int]:
        return [w.stop() for w in self.workers if w.alive]


async def kill_during_batch(worker: WorkerProcess, dsn: str, *, after_commit: bool, timeout_s: float = 20) -> bool:
    """SIGKILL the worker while one of its PostgreSQL sessions is inside a transaction, or (``after_commit``) just
    after that transaction ended: the window between the database commit and the Kafka commit. True when the
    transaction was seen; at the timeout the worker is killed anyway."""
    admin = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        seen = False
        while time.monotonic() < deadline:
            in_transaction = await worker_backends_in_transaction(admin, dsn, terminate=False) > 0
            seen = seen or in_transaction
            if seen and (in_transaction != after_commit):
                worker.kill()
                return True
            await asyncio.sleep(0.002)
    finally:
        await admin.close()
    worker.kill()
    return False


class KeepBusy:
    """Offers a stream while faults are injected, so that every fault finds work in flight whatever the machine's
    speed: about ``backlog`` records stay waiting, and the last ``reserve`` records are held back until ``allow()``
    or ``finish()``, so the worker cannot reach the end of the stream before the last fault (it used to, on a fast
    machine)."""

    def __init__(self, run: Run, records: Sequence[Record], *, backlog: int, reserve: int, sent: int = 0) -> None:
        self._run, self._records = run, records
        self._backlog, self._cap = backlog, len(records) - reserve
        self._holding = asyncio.Event()
        self.sent = sent  # records[:sent] are in the topic already
        self._task = asyncio.create_task(self._offer())

    async def _offer(self) -> None:
        while not self._holding.is_set():
            waiting = self.sent - await self.consumed()
            if self.sent < self._cap and waiting < self._backlog:
                await self._send(min(self._cap, self.sent + 100))
            else:
                await asyncio.sleep(0.05)

    async def _send(self, upto: int) -> None:
        await produce(self._run.bootstrap, self._run.topic, self._records[self.sent : upto])
        self.sent = upto

    def allow(self, upto: int) -> None:
        """Offer records up to ``upto`` (of the stream) from now on."""
        self._cap = max(self._cap, min(upto, len(self._records)))

    async def consumed(self) -> int:
        """Records of the stream the worker has stored its offsets past."""
        return sum((await stored_offsets(self._run.dsn, self._run.topic)).values())

    async def hold(self) -> int:
        """Stop offering; returns how many records of the stream are in the topic."""
        self._holding.set()
        await self._task
        return self.sent

    async def finish(self) -> None:
        """Offer the rest of the stream, and return once all of it is in the topic."""
        await self.hold()
        await self._send(len(self._records))
