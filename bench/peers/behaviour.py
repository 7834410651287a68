"""What each system does with a stale update and with a poison record: observed, never assumed.

Each (system, case) gets a fresh topic (6 partitions) and database and a running consumer; then:

- stale update: the newer event of an appointment, waited for until committed; then an older event of the same
  appointment (earlier ``occurred_at``, other event id). Which of the two does the table hold?
- not JSON: a record whose value is not JSON, then a valid event with the same key (so the same partition);
- breaks the contract: an event whose appointment has no ``dms_number`` (null; for Connect, the flat row with
  ``dms_number`` null under a schema that allows it, so that it passes the converter), then a valid event, same key.

Then, after waiting for the group to commit everything (or 25 s): is the later valid event in the table, is the
consumer still running (Connect: its task's state), how many records went to a dead-letter topic, which exception
stopped it. Connect runs twice: as configured by default (``errors.tolerance=none``) and with a dead-letter topic
(``errors.tolerance=all`` + ``errors.deadletterqueue.topic.name``), what a careful user adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import worker_bench as wb
from bench.peers import flat
from bench.peers.common import Committed, QuixProcess, events_of
from bench.peers.connect import ConnectWorker, sink_config
from dev import samples
from dev.kafka import end_offsets

Item = dict[str, Any] | bytes  # an event, or raw bytes sent as they are
SETTLE_S = 25.0


@dataclass
class Case:
    name: str
    first: list[Item]
    then: list[Item]
    key: bytes
    newer: str = ""  # stale case: event ids of the newer and the older event
    older: str = ""
    later: dict[str, Any] = field(default_factory=dict)  # poison cases: the valid event after the poison


def _shifted(event: dict[str, Any], seconds: int) -> dict[str, Any]:
    out = copy.deepcopy(event)
    out["event_id"] = str(uuid.uuid4())
    out["occurred_at"] = (dt.datetime.fromisoformat(event["occurred_at"]) + dt.timedelta(seconds=seconds)).isoformat()
    return out


def cases(seed: int) -> list[Case]:
    upserts = [e for e in events_of(wb.corpus(200, seed)) if e["event_type"] == flat.UPSERTED]
    base = upserts[0]
    later = next(e for e in upserts if e["appointment"]["dms_number"] != base["appointment"]["dms_number"])
    newer, older = _shifted(base, 3600), _shifted(base, 0)
    broken = _shifted(later, -60)
    broken["appointment"]["dms_number"] = None
    key = samples.key_of(later)
    return [
        Case("stale update", [newer], [older], samples.key_of(base), newer=newer["event_id"], older=older["event_id"]),
        Case("not JSON", [], [b"\x00\x01 not json {", later], key, later=later),
        Case("breaks the contract", [], [broken, later], key, later=later),
    ]


Encode = Callable[[Item], bytes]


def raw_json(item: Item) -> bytes:
    return item if isinstance(item, bytes) else samples.encode(item)


def connect_json(item: Item) -> bytes:
    if isinstance(item, bytes):
        return item
    return flat.connect_value(item, optional_keys=item["appointment"].get("dms_number") is None)


async def produce(bench: wb.Bench, topic: str, key: bytes, items: Sequence[Item], encode: Encode) -> None:
    await wb.fill(bench.bootstrap, topic, [(key, encode(i)) for i in items])


async def stored_event_id(dsn: str, event: dict[str, Any]) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            value = await conn.fetchval(
                "SELECT event_id::text FROM appointments WHERE dealer_id = $1 AND dms_number = $2",
                event["dealer_id"],
                event["appointment"]["dms_number"],
            )
            return None if value is None else str(value)
        return None
    finally:
        await conn.close()


async def record_count(bootstrap: str, topic: str) -> int:
    return sum((await end_offsets(bootstrap, topic)).values())


@dataclass
class Run:
    """A consumer under test: how to reach it and what to ask it."""

    group: str
    encode: Encode
    running: Callable[[], str]
    error: Callable[[], str]
    dead_letter_topic: str | None
    stop: Callable[[], Any]


async def observe(bench: wb.Bench, case: Case, topic: str, dsn: str, run: Run) -> dict[str, Any]:
    async with Committed(bench.bootstrap) as committed:
        await produce(bench, topic, case.key, case.first, run.encode)
        if case.first:
            await committed.until(run.group, topic, len(case.first), timeout_s=90)
        await produce(bench, topic, case.key, case.then, run.encode)
        total = len(case.first) + len(case.then)
        await committed.until(run.group, topic, total, timeout_s=SETTLE_S)
        done = await committed.total(run.group, topic)
    result: dict[str, Any] = {"committed": f"{done} of {total}", "running": run.running(), "error": run.error()}
    if case.newer:
        stored = await stored_event_id(dsn, newer_event(case))
        result["table_holds"] = {case.newer: "the newer event", case.older: "the stale event"}.get(stored or "", "none")
    else:
        result["later_event_applied"] = await stored_event_id(dsn, case.later) == case.later["event_id"]
    if run.dead_letter_topic:
        result["dead_letters"] = await record_count(bench.bootstrap, run.dead_letter_topic)
    return result


def newer_event(case: Case) -> dict[str, Any]:
    first = case.first[0]
    assert isinstance(first, dict)
    return first


# ------------------------------------------------------------------------------------------------ systems

Starter = Callable[[wb.Bench, Case, str, str, Path], Awaitable[Run]]


async def start_worker(bench: wb.Bench, case: Case, topic: str, dsn: str, log_dir: Path) -> Run:
    worker = wb.Worker(bench, topic, dsn, log_dir / f"behaviour-worker-{topic}.log")
    await worker.ready()
    return Run(
        group=topic,
        encode=raw_json,
        running=lambda: "running" if worker.process.alive else "exited",
        error=lambda: "",
        dead_letter_topic=f"{topic}.dlq",
        stop=worker.stop,
    )


async def start_quix(bench: wb.Bench, case: Case, topic: str, dsn: str, log_dir: Path) -> Run:
    quix = QuixProcess(bench, topic, dsn, log_dir / "quix")
    return Run(
        group=topic,
        encode=raw_json,
        running=lambda: "running" if quix.alive else "exited",
        error=quix.last_error,
        dead_letter_topic=None,
        stop=quix.stop,
    )


def connect_starter(worker: ConnectWorker, dead_letters: bool) -> Starter:
    async def start(bench: wb.Bench, case: Case, topic: str, dsn: str, log_dir: Path) -> Run:
        name = f"sink-{topic}".replace(".", "-")
        dlq = f"{topic}.connect-dlq" if dead_letters else None
        worker.create(name, sink_config(topic, dsn, "appointments", 1, dead_letters=dlq))
        await asyncio.to_thread(worker.wait_tasks, name, "RUNNING", 1)

        def error() -> str:
            traces = [t.get("trace", "") for t in worker.status(name).get("tasks", [])]
            return next((root_cause(t) for t in traces if t), "")

        return Run(
            group=f"connect-{name}",
            encode=connect_json,
            running=lambda: ",".join(worker.task_states(name)) or "no task",
            error=error,
            dead_letter_topic=dlq,
            stop=lambda: None,
        )

    return start


def root_cause(trace: str) -> str:
    """The innermost exception's class of a Java stack trace (its message can carry the record's values)."""
    causes = [line.removeprefix("Caused by: ") for line in trace.splitlines() if line.startswith("Caused by: ")]
    return (causes[-1] if causes else trace).split(":")[0].strip()


async def run_all(bench: wb.Bench, seed: int, log_dir: Path) -> dict[str, dict[str, Any]]:
    connect = ConnectWorker(bench.bootstrap, log_dir / f"connect-behaviour-{bench.run_id}")
    await asyncio.to_thread(connect.start)
    systems: dict[str, Starter] = {
        "carsys-ingest": start_worker,
        "quix": start_quix,
        "connect (defaults)": connect_starter(connect, dead_letters=False),
        "connect (dead-letter topic)": connect_starter(connect, dead_letters=True),
    }
    results: dict[str, dict[str, Any]] = {}
    try:
        for c, case in enumerate(cases(seed)):
            for s, (system, start) in enumerate(systems.items()):
                topic = await bench.fresh_topic(f"b{c}{s}", [])
                dsn = await bench.fresh_database(f"b{c}{s}")
                run = await start(bench, case, topic, dsn, log_dir)
                try:
                    results.setdefault(system, {})[case.name] = await observe(bench, case, topic, dsn, run)
                finally:
                    run.stop()
    finally:
        connect.stop()
        await bench.tidy()
    return results


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = []
    for system, by_case in results.items():
        for case, r in by_case.items():
            applied = "later event applied" if r.get("later_event_applied") else "later event NOT applied"
            outcome = r.get("table_holds") or applied
            extra = f", dead letters {r['dead_letters']}" if "dead_letters" in r else ""
            error = f", error {r['error']}" if r["error"] else ""
            lines.append(f"{system:<28} {case:<20} {outcome}; {r['running']}, committed {r['committed']}{extra}{error}")
    return "\n".join(lines)
