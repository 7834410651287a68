"""The peers draining the corpus, measured like the worker (bench/worker_bench.py): events/s, rows/s, CPU, RSS.

Each peer gets a fresh topic (6 partitions) pre-filled with the corpus and a fresh database, and drains it:

- window start: Quix, the moment its pipeline saw the first event (written by the app itself, with its CPU then);
  Connect, the first 50 ms poll that finds a row in its table (a connector created paused gets no tasks in
  standalone mode, so its start-up cannot be kept out otherwise; this leaves its first batch of <= 500 records
  outside the window);
- window end: the first 100 ms poll at which the peer's group has committed N offsets in Kafka (Quix commits every
  1 s, Connect's sink every 1 s: ``offset.flush.interval.ms``), so the end is late by up to ~1.1 s;
- CPU: the peer process's utime+stime (/proc) over the window, peak RSS its VmHWM; PostgreSQL's over the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench import worker_bench as wb
from bench.peers.common import Committed, QuixProcess
from bench.peers.connect import ConnectWorker, sink_config


def _figures(n: int, rows: int, seconds: float, cpu_s: float, pg_cpu_s: float | None, rss: float) -> dict[str, Any]:
    return {
        "events": n,
        "rows": rows,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        "rows_per_s": round(rows / seconds, 1),
        "cpu_seconds": round(cpu_s, 2),
        "cpu_percent_of_one_core": round(100 * cpu_s / seconds, 1),
        "cpu_ms_per_1000_events": round(1000 * cpu_s / n * 1000, 1),
        "peak_rss_mib": round(rss, 1),
        "postgres_cpu_seconds": None if pg_cpu_s is None else round(pg_cpu_s, 2),
    }


def _pg_cpu(bench: wb.Bench) -> float | None:
    pid = bench.postgres_pid()
    return wb.children_cpu_seconds(pid) if pid else None


def _minus(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


async def measure_worker(bench: wb.Bench, records: Sequence[wb.Record], rows: int, log_dir: Path) -> dict[str, Any]:
    """bench/worker_bench.py's own measurement, with rows/s added."""
    result = await wb.measure_worker(bench, records, log_dir)
    result["rows"] = rows
    result["rows_per_s"] = round(rows / result["seconds"], 1)
    return result


async def measure_quix(bench: wb.Bench, records: Sequence[wb.Record], rows: int, log_dir: Path) -> dict[str, Any]:
    n = len(records)
    topic = await bench.fresh_topic("quix", records)
    dsn = await bench.fresh_database("quix")
    quix = QuixProcess(bench, topic, dsn, log_dir / "quix")
    try:
        deadline = time.monotonic() + 120
        while (first := quix.first_message()) is None:
            if not quix.alive or time.monotonic() > deadline:
                raise RuntimeError(f"Quix did not start consuming; see {quix.log}")
            await asyncio.sleep(0.05)
        pg_before = _pg_cpu(bench)
        async with Committed(bench.bootstrap) as committed:
            end = await committed.until(topic, topic, n, timeout_s=max(120.0, n / 200), alive=lambda: quix.alive)
        if end is None:
            raise RuntimeError(f"Quix did not drain {n} events ({quix.last_error() or 'timeout'}); see {quix.log}")
        cpu, pg_after, rss = wb.cpu_seconds(quix.pid), _pg_cpu(bench), wb.peak_rss_mib(quix.pid)
    finally:
        quix.stop()
    seconds = end - first["first_message"]
    return _figures(n, rows, seconds, cpu - first["cpu_s"], _minus(pg_after, pg_before), rss)


async def first_row(dsn: str, table: str, alive: Callable[[], bool], timeout_s: float = 180) -> float:
    """The first 50 ms poll at which ``table`` (created by the peer itself) has a row."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and alive():
            with contextlib.suppress(asyncpg.UndefinedTableError):
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    return time.time()
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError(f"no row in {table} within {timeout_s:.0f}s")


async def measure_connect(
    bench: wb.Bench, flat_records: Sequence[wb.Record], tasks: int, log_dir: Path
) -> dict[str, Any]:
    n = len(flat_records)
    topic = await bench.fresh_topic(f"connect{tasks}", flat_records)
    dsn = await bench.fresh_database(f"connect{tasks}")
    worker = ConnectWorker(bench.bootstrap, log_dir / f"connect{tasks}-{bench.run_id}")
    name = f"sink-{topic}".replace(".", "-")
    try:
        await asyncio.to_thread(worker.start)
        worker.create(name, sink_config(topic, dsn, "appointments", tasks))
        start = await first_row(dsn, "appointments", alive=lambda: worker.alive)
        cpu_before, pg_before = wb.cpu_seconds(worker.pid), _pg_cpu(bench)
        async with Committed(bench.bootstrap) as committed:
            end = await committed.until(f"connect-{name}", topic, n, timeout_s=max(120.0, n / 200))
        states = worker.task_states(name)
        if end is None:
            raise RuntimeError(f"Connect did not drain {n} records (tasks {states}); see {worker.dir}")
        cpu, pg_after, rss = wb.cpu_seconds(worker.pid), _pg_cpu(bench), wb.peak_rss_mib(worker.pid)
    finally:
        worker.stop()
    return {**_figures(n, n, end - start, cpu - cpu_before, _minus(pg_after, pg_before), rss), "tasks": tasks}
