"""The idempotent batch writer: normalised events -> PostgreSQL, one transaction per batch, offsets included.

Public API::

    store = Store(pool, group_id=..., retention_days=14, retrying=worker.runtime.retry.policy, staging="auto",
                  prune_every=1000)
    result = await store.apply(items, extra_offsets=(), *, on_rejected=None, plan=None)   # -> BatchResult
    offsets = await store.stored_offsets(topic)                            # {partition: next offset}
    await store.ping()
    await store.prune()                                                     # also run every `prune_every` batches

``apply`` writes a batch in one transaction:

- **Duplicates**: event ids are inserted into ``applied_events`` first (sorted, ``ON CONFLICT DO NOTHING``); an id
  already there, or twice in the batch, is a no-op (``duplicates``). A second writer applying the same event
  concurrently waits on that row, then sees it as a duplicate.
- **Newest wins per row**: ``persons``, ``vehicles`` and ``appointments`` rows are only overwritten by a strictly
  newer ``(occurred_at, event_id)``; within the batch a key is first collapsed to its newest snapshot. Persons and
  vehicles are taken from every new event (an event stale for its appointment may still carry the newest snapshot
  of a shared person). An event whose appointment row did not change is counted ``stale``, otherwise ``applied``.
  So the tables are a function of the *set* of events seen: any order, any replay, same result.
- **Deletes are tombstones** (``deleted``, ``deleted_at``) keeping ``occurred_at``: a late, older upsert is stale.
  The tombstone keeps only the key and the delete bookkeeping (its snapshot columns and interventions are cleared,
  so it does not depend on batching); a strictly newer upsert revives the row.
- **Interventions** are replaced as a set whenever a newer upsert of their appointment wins.
- **Lock order**: tables in a fixed order (applied_events, persons, vehicles, appointments, interventions,
  consumer_offsets), rows in key order inside each statement, so concurrent batches sharing persons or vehicles
  wait for each other instead of deadlocking. Only while bisecting (below) do the halves lock out of global order;
  a deadlock there is transient and the batch is retried.
- **Rows built ahead**: ``plan`` (``tables.planned(items)``, or a ``tables.Plan`` built step by step) carries the
  batch's rows built beforehand; it is used only when ``applied_events`` finds every event in it new, otherwise
  the rows are built again from the new events alone. The consumer builds it while the previous batch is written.
- **Bulk only**: one ``INSERT ... SELECT ... ON CONFLICT`` per table, fed either by ``unnest($1::text[], ...)`` (one
  round trip) or by COPY into a temporary staging table (three round trips, but cheaper per row). ``staging="auto"``
  (default) picks COPY for a table when the batch has at least ``COPY_MIN_ROWS`` rows for it: measured in
  bench/store_bench.py, unnest wins small batches and COPY wins large ones (docs/benchmarks.md has the figures).
- **Offsets**: the next offset per (group, topic, partition) (max offset + 1 over ``items`` and ``extra_offsets``,
  the latter being records dead-lettered or skipped before the store) is written in the same transaction and never
  moves backwards. The consumer resumes from ``stored_offsets``.
- **Permanent errors** (SQLSTATE 22*, 23*, 54000, values the driver cannot encode) roll the batch's first attempt
  (written without savepoints) back; it is then written again, isolating them by bisecting the batch under
  savepoints; the offending items come back in ``BatchResult.rejected`` with a ``WriteRejected`` and everything
  else commits. Their offsets are covered too, so dead-letter them: pass ``on_rejected`` (awaited inside the
  transaction, before the commit) to make "dead-lettered" and "offset stored" atomic from the consumer's point of
  view; without it, a crash between the commit and your dead-letter produce loses the letter.
- **Transient errors** (08*, 40001, 40P01, 53*, 57P*, 57014, 55P03, lost connections) roll the whole batch back and
  ``apply`` retries it with the project's retry policy (``worker.runtime.retry.policy``, or the ``retrying`` factory you
  pass); when the policy gives up, ``TransientError`` propagates and the caller pauses and tries again later. Any
  other database error (e.g. a missing table: migrations not run) propagates unchanged: it is a bug or a deployment
  problem, neither retryable nor the record's fault.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias

import asyncpg
import msgspec
import structlog
import tenacity

from worker.errors import TransientError, WriteRejected
from worker.normalise.model import NormalisedEvent, dms_number_of
from worker.normalise.records import Item, Offset, next_offsets
from worker.runtime.retry import policy
from worker.runtime.tables import (
    APPOINTMENTS,
    DELETE_INTERVENTIONS,
    INSERT_APPLIED,
    INTERVENTIONS,
    PERSONS,
    PRUNE,
    PRUNE_LOCK,
    SAVE_OFFSETS,
    VEHICLES,
    Plan,
    Row,
    Table,
    applied_columns,
    column_arrays,
    planned,
    stage,
    unique_items,
)

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    Conn: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
Staging = Literal["auto", "unnest", "copy"]
# Where COPY starts to beat unnest for our widest table (persons, 22 columns); docs/benchmarks.md has the figures.
COPY_MIN_ROWS = 1000


class BatchResult(msgspec.Struct, frozen=True):
    applied: int
    duplicates: int
    stale: int
    rejected: tuple[tuple[Item, WriteRejected], ...] = ()


RejectedHook = Callable[[Sequence[tuple[Item, WriteRejected]]], Awaitable[None]]


class _Outcome(msgspec.Struct):
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    rejected: list[tuple[Item, WriteRejected]] = msgspec.field(default_factory=list)

    def __add__(self, other: _Outcome) -> _Outcome:
        return _Outcome(
            self.applied + other.applied,
            self.duplicates + other.duplicates,
            self.stale + other.stale,
            self.rejected + other.rejected,
        )


# --- the store ------------------------------------------------------------------------------------------------


class Store:
    """See the module docstring. Safe to share between tasks: each call takes its own pooled connection."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        group_id: str,
        retention_days: int = 14,
        retrying: Callable[[], tenacity.AsyncRetrying] = policy,
        staging: Staging = "auto",
        prune_every: int = 1000,
    ) -> None:
        self._pool = pool
        self._group_id = group_id
        self._retention_days = retention_days
        self._retrying = retrying
        self._staging = staging
        self._prune_every = prune_every
        self._batches = 0

    async def apply(
        self,
        items: Sequence[Item],
        extra_offsets: Sequence[Offset] = (),
        *,
        on_rejected: RejectedHook | None = None,
        plan: Plan | None = None,
    ) -> BatchResult:
        """Write the batch and its offsets in one transaction; retried as a whole on transient errors.

        ``plan``: the rows of ``items``, built beforehand (``planned``); used when all of them turn out new."""
        if not items and not extra_offsets:
            return BatchResult(0, 0, 0)
        outcome = _Outcome()
        async for attempt in self._retrying():
            with attempt:
                outcome = await self._apply_once(items, extra_offsets, on_rejected, plan)
        for item, err in outcome.rejected:
            log.warning(
                "event rejected by the database",
                event_id=item.event.event_id,
                topic=item.offset.topic,
                partition=item.offset.partition,
                offset=item.offset.offset,
                sqlstate=err.sqlstate,
                reason=str(err),
            )
        self._batches += 1
        # After the first batch (so that a restarting replica prunes too), then every `prune_every` batches.
        if self._prune_every and self._batches % self._prune_every == 1 % self._prune_every:
            await self._prune_quietly()
        return BatchResult(outcome.applied, outcome.duplicates, outcome.stale, tuple(outcome.rejected))

    async def stored_offsets(self, topic: str) -> dict[int, int]:
        """partition -> next offset to consume, as committed with the data."""
        with stage("reading offsets"):
            rows = await self._pool.fetch(
                "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
                self._group_id,
                topic,
            )
        return {r["partition"]: r["next_offset"] for r in rows}

    async def ping(self) -> None:
        with stage("ping"):
            await self._pool.fetchval("SELECT 1")

    async def prune(self, limit: int = 50_000) -> int:
        """Forget applied event ids older than the retention; at most ``limit`` per call. Returns how many."""
        with stage("pruning applied_events"):
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", PRUNE_LOCK):
                    return 0  # another replica is pruning
                status = await conn.execute(PRUNE, self._retention_days, limit)
        return int(status.split()[-1])

    async def _prune_quietly(self) -> None:
        try:
            pruned = await self.prune()
        except TransientError as exc:
            log.warning("pruning applied_events failed; next time", error=str(exc))
        else:
            log.debug("pruned applied_events", rows=pruned)

    async def _apply_once(
        self,
        items: Sequence[Item],
        extra_offsets: Sequence[Offset],
        on_rejected: RejectedHook | None,
        plan: Plan | None,
    ) -> _Outcome:
        # First without savepoints (two round trips fewer per batch, ~4% of a small batch's time): a permanent error
        # rolls the whole transaction back, and only then is the batch written again, bisecting under savepoints.
        try:
            return await self._write(items, extra_offsets, on_rejected, plan)
        except WriteRejected:
            return await self._write(items, extra_offsets, on_rejected, None, isolate=True)

    async def _write(
        self,
        items: Sequence[Item],
        extra_offsets: Sequence[Offset],
        on_rejected: RejectedHook | None,
        plan: Plan | None,
        *,
        isolate: bool = False,
    ) -> _Outcome:
        with stage("applying batch"):
            async with self._pool.acquire() as conn, conn.transaction():
                outcome = _Outcome()
                if items and isolate:
                    outcome = await self._apply_isolating(conn, list(items))
                elif items:
                    outcome = await self._merge(conn, items, plan)
                if on_rejected is not None and outcome.rejected:
                    await on_rejected(outcome.rejected)
                await self._save_offsets(conn, next_offsets([*(item.offset for item in items), *extra_offsets]))
        return outcome

    async def _apply_isolating(self, conn: Conn, items: list[Item]) -> _Outcome:
        """Apply under a savepoint; on a permanent error, bisect until the offending items are found."""
        try:
            async with conn.transaction():
                return await self._merge(conn, items)
        except WriteRejected as exc:
            if len(items) == 1:
                return _Outcome(rejected=[(items[0], exc)])
            middle = len(items) // 2
            left = await self._apply_isolating(conn, items[:middle])
            return left + await self._apply_isolating(conn, items[middle:])

    async def _merge(self, conn: Conn, items: Sequence[Item], plan: Plan | None = None) -> _Outcome:
        unique = unique_items(items)
        with stage("recording applied_events"):
            fresh = {r[0] for r in await conn.fetch(INSERT_APPLIED, *applied_columns(unique))}
        if plan is None or plan.unique.keys() != fresh:
            # Some events were seen before (a replay, a retried batch): only the new ones make rows.
            plan = planned(item for eid, item in unique.items() if eid in fresh)
        await self._merge_table(conn, PERSONS, plan.persons())
        await self._merge_table(conn, VEHICLES, plan.vehicles())
        won = await self._merge_table(conn, APPOINTMENTS, plan.appointments())
        # RETURNING gives no order: the winners go on in key order, which orders their interventions' rows too.
        keys = sorted((r["dealer_id"], r["dms_number"]) for r in won)
        await self._replace_interventions(conn, [plan.rows.event_of(k) for k in keys], plan.interventions(keys))
        return _Outcome(applied=len(keys), duplicates=len(items) - len(fresh), stale=len(fresh) - len(keys))

    async def _merge_table(self, conn: Conn, table: Table, rows: list[Row]) -> list[asyncpg.Record]:
        if not rows:
            return []
        with stage(f"merging {table.name}"):
            if self._use_copy(rows):
                await conn.execute(table.staging_ddl())
                names = [c[0] for c in table.columns]
                await conn.copy_records_to_table(f"_stage_{table.name}", records=rows, columns=names)
                return await conn.fetch(table.merge_sql(f"_stage_{table.name} AS s"))
            return await conn.fetch(table.merge_sql(table.unnest_source()), *column_arrays(rows, len(table.columns)))

    async def _replace_interventions(self, conn: Conn, winners: Sequence[NormalisedEvent], rows: list[Row]) -> None:
        """The winning snapshots' interventions (``rows``, in key order) replace the old set; a winning delete leaves
        none. ``winners``: one event per appointment, in key order (the lock order)."""
        if not winners:
            return
        keys = [(e.dealer_id, dms_number_of(e)) for e in winners]
        with stage("replacing interventions"):
            await conn.execute(DELETE_INTERVENTIONS, [k[0] for k in keys], [k[1] for k in keys])
        if not rows:
            return
        names = ", ".join(c[0] for c in INTERVENTIONS.columns)
        exprs = ", ".join(c[2] for c in INTERVENTIONS.columns)
        with stage("inserting interventions"):
            if self._use_copy(rows):
                await conn.execute(INTERVENTIONS.staging_ddl())
                cols = [c[0] for c in INTERVENTIONS.columns]
                await conn.copy_records_to_table("_stage_interventions", records=rows, columns=cols)
                source = "_stage_interventions AS s"
                await conn.execute(f"INSERT INTO interventions ({names}) SELECT {exprs} FROM {source}")
            else:
                source = INTERVENTIONS.unnest_source()
                sql = f"INSERT INTO interventions ({names}) SELECT {exprs} FROM {source}"
                await conn.execute(sql, *column_arrays(rows, len(INTERVENTIONS.columns)))

    def _use_copy(self, rows: Sequence[Row]) -> bool:
        return self._staging == "copy" or (self._staging == "auto" and len(rows) >= COPY_MIN_ROWS)

    async def _save_offsets(self, conn: Conn, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        keys = sorted(offsets)
        with stage("saving offsets"):
            await conn.execute(
                SAVE_OFFSETS,
                self._group_id,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [offsets[k] for k in keys],
            )


__all__ = ["COPY_MIN_ROWS", "BatchResult", "RejectedHook", "Store"]
