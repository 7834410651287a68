"""The peers a user would pick instead of carsys-ingest, on the same corpus, in the same run: ``make bench-peers``.

    .venv/bin/python -m bench.peers.run [--events N] [--rounds R] [--connect-tasks 1,2] [--skip-throughput]
                                        [--skip-behaviour] [--seed S]

- carsys-ingest: bench/worker_bench.py's own measurement of a real ``carsys-ingest run`` (1 replica, defaults);
- Quix Streams 3.28.1 with four community PostgreSQLSinks (bench/peers/quix_app.py), the same four tables, raw values;
- Kafka Connect 4.1.1 standalone + the Debezium JDBC sink 3.6.0.Final, upsert, fed one pre-flattened appointment row
  per event (bench/peers/flat.py), with 1 and 2 tasks.

Each measurement has its own topic and database; the rounds interleave the systems (the order rotates), so a noisy
neighbour hurts all of them alike. Then the behaviour checks (bench/peers/behaviour.py): a stale update, a record
that is not JSON, a record that breaks the contract. Needs the peers fetched first (bench/peers/fetch.py). Uses
``--stack NAME`` (a stack of dev/stack.py), else KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else starts
a durable throwaway stack; PostgreSQL's CPU is reported when its process is known (not with the variables).
Prints, never asserts; writes bench/results/peers-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench import worker_bench as wb
from bench.peers import behaviour, fetch, flat
from bench.peers.common import connect_records, events_of
from bench.peers.throughput import measure_connect, measure_quix, measure_worker
from dev import stack as devstack
from worker.runtime import logs


@dataclass
class Options:
    events: int
    rounds: int
    connect_tasks: list[int]
    seed: int
    throughput: bool
    behaviour: bool
    output: Path
    stack: str | None


def options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000, help="events per throughput measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--connect-tasks", default="1,2", help="Connect's tasks.max, one measurement each")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-behaviour", action="store_true")
    parser.add_argument("--stack", help="a stack started with `python -m dev.stack up --name NAME` (default: own)")
    parser.add_argument("--output", type=Path, default=wb.RESULTS)
    a = parser.parse_args(argv)
    return Options(
        events=a.events,
        rounds=a.rounds,
        connect_tasks=[int(t) for t in a.connect_tasks.split(",") if t],
        seed=a.seed,
        throughput=not a.skip_throughput,
        behaviour=not a.skip_behaviour,
        output=a.output,
        stack=a.stack,
    )


Step = Callable[[], Awaitable[dict[str, Any]]]


def steps(bench: wb.Bench, opts: Options, log_dir: Path) -> list[tuple[str, Step]]:
    records = wb.corpus(opts.events, opts.seed)
    rows = sum(flat.rows_of(e) for e in events_of(records))
    flat_records = connect_records(records)
    found: list[tuple[str, Step]] = [
        ("carsys-ingest", lambda: measure_worker(bench, records, rows, log_dir)),
        ("quix", lambda: measure_quix(bench, records, rows, log_dir)),
    ]
    for tasks in opts.connect_tasks:
        found.append((f"connect-{tasks}task", lambda t=tasks: measure_connect(bench, flat_records, t, log_dir)))  # type: ignore[misc]
    return found


async def throughput(bench: wb.Bench, opts: Options, log_dir: Path) -> dict[str, list[dict[str, Any]]]:
    plan = steps(bench, opts, log_dir)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
    for r in range(opts.rounds):
        for name, step in plan[r % len(plan) :] + plan[: r % len(plan)]:
            load = round(os.getloadavg()[0], 2)
            print(f"peers: round {r + 1}: {name} (load {load}) ...", file=sys.stderr, flush=True)
            try:
                results[name].append({**await step(), "load_average_1m_at_start": load, "round": r + 1})
            except RuntimeError as exc:
                results[name].append({"error": str(exc), "load_average_1m_at_start": load, "round": r + 1})
            finally:
                await bench.tidy()
    return results


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [run for run in runs if "error" not in run]
    for run in ok:
        pg = run.get("postgres_cpu_seconds")
        run["postgres_cpu_ms_per_1000_events"] = None if pg is None else round(1e6 * pg / run["events"], 1)
    keys = ("events_per_s", "rows_per_s", "cpu_ms_per_1000_events", "postgres_cpu_ms_per_1000_events", "peak_rss_mib")
    out: dict[str, Any] = {"runs": len(ok), "failed": len(runs) - len(ok)}
    for key in keys:
        values = [run[key] for run in ok if run.get(key) is not None]
        out[key] = round(statistics.median(values), 1) if values else None
    out["load_average_1m_at_start"] = [run["load_average_1m_at_start"] for run in runs]
    return out


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(summary: dict[str, dict[str, Any]]) -> str:
    head = f"{'system':<16} {'events/s':>9} {'rows/s':>9} {'x worker rows/s':>15} {'CPU ms/1000 ev':>14}"
    head += f" {'PG CPU ms/1000 ev':>17} {'RSS MiB':>8}"
    base = summary.get("carsys-ingest", {}).get("rows_per_s")
    lines = [head]
    for name, m in summary.items():
        if not m["runs"]:
            lines.append(f"{name:<16} failed in every round")
            continue
        ratio = f"{m['rows_per_s'] / base:.2f}x" if base else "-"
        lines.append(
            f"{name:<16} {m['events_per_s']:>9.0f} {m['rows_per_s']:>9.0f} {ratio:>15} "
            f"{m['cpu_ms_per_1000_events']:>14.1f} {_or_dash(m['postgres_cpu_ms_per_1000_events']):>17} "
            f"{m['peak_rss_mib']:>8.0f}"
        )
    return "\n".join(lines)


async def run(opts: Options, bench: wb.Bench) -> dict[str, Any]:
    log_dir = opts.output / "logs" / "peers"
    log_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "versions": {
            "quixstreams": fetch.QUIX_VERSION,
            "kafka_connect": fetch.CONNECT_VERSION,
            "debezium_jdbc": fetch.DEBEZIUM_VERSION,
        },
        "options": {**vars(opts), "output": str(opts.output)},
        "machine": wb.machine(),
        "postgres": await wb.postgres_settings(bench.admin_dsn),
        "source": wb.source_state(),
    }
    if opts.throughput:
        report["throughput"] = await throughput(bench, opts, log_dir)
        report["summary"] = {name: medians(runs) for name, runs in report["throughput"].items()}
    if opts.behaviour:
        print("peers: behaviour ...", file=sys.stderr, flush=True)
        report["behaviour"] = await behaviour.run_all(bench, opts.seed, log_dir)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["timestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return report


@contextlib.contextmanager
def stack(name: str | None) -> Iterator[wb.Bench]:
    """A named stack of dev/stack.py (its PostgreSQL's and Kafka's CPU are then accounted), else a throwaway one."""
    if name is None:
        with wb.local_stack() as bench:
            yield bench
        return
    found = devstack.Stack.load(name)
    if found is None:
        raise SystemExit(f"stack {name!r} is not running: python -m dev.stack up --name {name}")
    admin = urlunsplit(urlsplit(found.database_url)._replace(path="/postgres"))
    yield wb.Bench(bootstrap=found.kafka_bootstrap, admin_dsn=admin, stack=found)


def main(argv: Sequence[str] | None = None) -> None:
    opts = options(argv)
    logs.configure("WARNING", "console")
    if fetch.main() != 0:
        sys.exit(1)
    with stack(opts.stack) as bench:
        report = asyncio.run(run(opts, bench))
    if "summary" in report:
        print(table(report["summary"]))
    if "behaviour" in report:
        print(behaviour.table(report["behaviour"]))
    opts.output.mkdir(parents=True, exist_ok=True)
    path = opts.output / f"peers-{report['timestamp'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
