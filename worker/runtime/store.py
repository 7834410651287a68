"""The idempotent batch writer: normalised events -> PostgreSQL, one transaction per batch, offsets included.

Public API::

    store = Store(pool, group_id=..., retention_days=14, retrying=worker.runtime.retry.policy, staging="auto",
                  prune_every=1000)
    result = await store.apply(items, extra_offsets=(), *, on_rejected=None)   # -> BatchResult
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
- **Bulk only**: one ``INSERT ... SELECT ... ON CONFLICT`` per table, fed either by ``unnest($1::text[], ...)`` (one
  round trip) or by COPY into a temporary staging table (three round trips, but cheaper per row). ``staging="auto"``
  (default) picks COPY for a table when the batch has at least ``COPY_MIN_ROWS`` rows for it: measured in
  bench/store_bench.py, unnest wins small batches and COPY wins large ones (the README has the figures).
- **Offsets**: the next offset per (group, topic, partition) (max offset + 1 over ``items`` and ``extra_offsets``,
  the latter being records dead-lettered or skipped before the store) is written in the same transaction and never
  moves backwards. The consumer resumes from ``stored_offsets``.
- **Permanent errors** (SQLSTATE 22*, 23*, 54000, values the driver cannot encode) are isolated by bisecting the batch
  under savepoints; the offending items come back in ``BatchResult.rejected`` with a ``WriteRejected`` and everything
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

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import asyncpg
import msgspec
import structlog
import tenacity
from asyncpg.exceptions import _base as asyncpg_base

from worker.errors import IngestError, TransientError, WriteRejected
from worker.normalise.model import Delete, NormalisedEvent, Note, Person, Upsert
from worker.normalise.records import Item, Offset, next_offsets
from worker.runtime.retry import policy

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    Conn: TypeAlias = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
Staging = Literal["auto", "unnest", "copy"]
# Where COPY starts to beat unnest for our widest table (persons, 22 columns); the README has the figures.
COPY_MIN_ROWS = 1000


class BatchResult(msgspec.Struct, frozen=True):
    applied: int
    duplicates: int
    stale: int
    rejected: tuple[tuple[Item, WriteRejected], ...] = ()


RejectedHook = Callable[[Sequence[tuple[Item, WriteRejected]]], Awaitable[None]]


# --- error classification -------------------------------------------------------------------------------------

_TRANSIENT_PREFIXES = ("08", "53", "57P")
# 40001 serialization, 40P01 deadlock, 57014 statement timeout, 55P03 lock timeout: the same batch can succeed later.
_TRANSIENT_CODES = frozenset({"40001", "40P01", "57014", "55P03"})


def classify(exc: BaseException, context: str) -> IngestError | None:
    """The project's error for a database failure, or None when it is neither transient nor the data's fault.

    Messages carry the SQLSTATE and object names only: PostgreSQL's message and detail may quote values.
    """
    if isinstance(exc, IngestError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state.startswith(_TRANSIENT_PREFIXES) or state in _TRANSIENT_CODES:
            return TransientError(f"{context}: {type(exc).__name__} (SQLSTATE {state})")
        # 54000: a value too big for an index row (e.g. a 20 kB dms_number); permanent for that record, and
        # bisecting isolates it like a 22*/23* error instead of the worker crashing on it at every restart.
        if state.startswith(("22", "23")) or state == "54000":
            return WriteRejected(_describe(exc, context), state)
        return None
    if isinstance(exc, asyncpg_base.DataError):
        # Raised by the driver before sending, e.g. a string it cannot encode; its message quotes the value.
        return WriteRejected(f"{context}: the driver could not encode a value ({type(exc.__cause__).__name__})")
    if isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError):
        return TransientError(f"{context}: connection failure ({type(exc).__name__})")
    return None


def _describe(exc: asyncpg.PostgresError, context: str) -> str:
    parts = [f"{context}: {type(exc).__name__} (SQLSTATE {exc.sqlstate})"]
    for label in ("table_name", "column_name", "constraint_name", "data_type_name"):
        name = getattr(exc, label, None)
        if name:
            parts.append(f"{label.removesuffix('_name')}={name}")
    return " ".join(parts)


@contextmanager
def _stage(context: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        err = classify(exc, context)
        if err is None or err is exc:
            raise
        raise err from exc


# --- tables ---------------------------------------------------------------------------------------------------


class _Table(msgspec.Struct, frozen=True):
    """How rows of one table are staged and merged.

    ``columns`` are (name, staging type, select expression); uuid and jsonb travel as text and are cast in SQL so
    that a bad value is a per-statement 22* error (bisectable) rather than a client-side encoding failure.
    """

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...]
    update: str  # the SET list of ON CONFLICT DO UPDATE
    returning: str = ""

    def merge_sql(self, source: str) -> str:
        names = ", ".join(c[0] for c in self.columns)
        exprs = ", ".join(c[2] for c in self.columns)
        order = ", ".join(f"s.{k}" for k in self.key)
        returning = f" RETURNING {self.returning}" if self.returning else ""
        return (
            f"INSERT INTO {self.name} AS t ({names}) SELECT {exprs} FROM {source} ORDER BY {order} "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {self.update}, updated_at = now() "
            "WHERE (t.occurred_at, t.event_id) < (EXCLUDED.occurred_at, EXCLUDED.event_id)"
            f"{returning}"
        )

    def unnest_source(self, first_param: int = 1) -> str:
        params = ", ".join(f"${i}::{c[1]}[]" for i, c in enumerate(self.columns, first_param))
        return f"unnest({params}) AS s({', '.join(c[0] for c in self.columns)})"

    def staging_ddl(self) -> str:
        cols = ", ".join(f"{c[0]} {c[1]}" for c in self.columns)
        return f"CREATE TEMP TABLE IF NOT EXISTS _stage_{self.name} ({cols}); TRUNCATE _stage_{self.name};"


def _col(name: str, pgtype: str = "text") -> tuple[str, str, str]:
    return (name, pgtype, f"s.{name}")


def _bookkeeping_cols() -> tuple[tuple[str, str, str], ...]:
    return (
        ("notes", "text", "s.notes::jsonb"),
        _col("occurred_at", "timestamptz"),
        ("event_id", "text", "s.event_id::uuid"),
    )


def _set_all(columns: Sequence[tuple[str, str, str]], key: Sequence[str]) -> str:
    return ", ".join(f"{c[0]} = EXCLUDED.{c[0]}" for c in columns if c[0] not in key)


# Column names are the model's field names.
_PERSON_FIELDS = tuple(f for f in Person.__struct_fields__ if f not in ("id", "notes"))
_PERSON_COLS = (_col("dealer_id"), _col("person_id"), *(_col(f) for f in _PERSON_FIELDS), *_bookkeeping_cols())
PERSONS = _Table(
    name="persons",
    key=("dealer_id", "person_id"),
    columns=_PERSON_COLS,
    update=_set_all(_PERSON_COLS, ("dealer_id", "person_id")),
)

_VEHICLE_TEXT = ("make", "model", "license_plate", "license_plate_key", "vin", "fuel")
_VEHICLE_COLS = (
    _col("dealer_id"),
    _col("vehicle_key"),
    *(_col(f) for f in _VEHICLE_TEXT),
    _col("first_registration_date", "date"),
    _col("apk_due_date", "date"),
    _col("driver_id"),
    _col("owner_id"),
    _col("contractor_id"),
    *_bookkeeping_cols(),
)
VEHICLES = _Table(
    name="vehicles",
    key=("dealer_id", "vehicle_key"),
    columns=_VEHICLE_COLS,
    update=_set_all(_VEHICLE_COLS, ("dealer_id", "vehicle_key")),
)

# A tombstone keeps only its key and the delete bookkeeping: the snapshot's columns and interventions are cleared.
# Keeping them would make a tombstone's content depend on batch boundaries (an upsert collapsed into the same batch
# as its delete is never written), and the data of a cancelled appointment is not Claire's to keep (minimisation).
_APPOINTMENT_COLS = (
    _col("dealer_id"),
    _col("dms_number"),
    _col("wo_number"),
    _col("appointment_at", "timestamptz"),
    _col("created_at", "timestamptz"),
    _col("waiting_customer", "boolean"),
    _col("vehicle_key"),
    # text[][] would be flattened by unnest, so the per-row id list travels as a JSON array.
    ("person_ids", "text", "ARRAY(SELECT jsonb_array_elements_text(s.person_ids::jsonb))"),
    _col("deleted", "boolean"),
    _col("deleted_at", "timestamptz"),
    *_bookkeeping_cols(),
)
APPOINTMENTS = _Table(
    name="appointments",
    key=("dealer_id", "dms_number"),
    columns=_APPOINTMENT_COLS,
    update=_set_all(_APPOINTMENT_COLS, ("dealer_id", "dms_number")),
    returning="t.dealer_id, t.dms_number, t.event_id::text AS event_id, t.deleted",
)

_INTERVENTION_COLS = (
    _col("dealer_id"),
    _col("dms_number"),
    _col("position", "integer"),
    _col("title"),
    _col("description"),
    _col("price", "numeric"),
    _col("occurred_at", "timestamptz"),
    ("event_id", "text", "s.event_id::uuid"),
)
INTERVENTIONS = _Table(
    name="interventions", key=("dealer_id", "dms_number", "position"), columns=_INTERVENTION_COLS, update=""
)

_INSERT_APPLIED = """
INSERT INTO applied_events (event_id)
SELECT e::uuid FROM unnest($1::text[]) AS e ORDER BY 1
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id::text
"""

_DELETE_INTERVENTIONS = """
DELETE FROM interventions i
USING unnest($1::text[], $2::text[]) AS k(dealer_id, dms_number)
WHERE i.dealer_id = k.dealer_id AND i.dms_number = k.dms_number
"""

_SAVE_OFFSETS = """
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
SELECT $1, s.topic, s.partition, s.next_offset
FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS s(topic, partition, next_offset)
ORDER BY s.topic, s.partition
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()
"""

_PRUNE = """
DELETE FROM applied_events WHERE event_id IN (
    SELECT event_id FROM applied_events WHERE applied_at < now() - make_interval(days => $1) LIMIT $2
)
"""

# Any constant shared by the replicas: only one of them prunes at a time.
_PRUNE_LOCK = 0x63617273_7973_7072  # "carsyspr"


# --- building rows --------------------------------------------------------------------------------------------


def canonical_event_id(event_id: str) -> str:
    """PostgreSQL's text form of the uuid, so ids compare the way the database compares them."""
    try:
        return str(uuid.UUID(event_id))
    except ValueError:
        return event_id  # the ::uuid cast rejects it as 22P02, which isolates the event


def _notes(notes: Sequence[Note]) -> str:
    return msgspec.json.encode(notes).decode()


_Version = tuple[dt.datetime, str]
Row = tuple[Any, ...]


class _Rows(msgspec.Struct):
    """The newest snapshot per key of each table, from the new events of one (sub-)batch."""

    persons: dict[tuple[str, str], tuple[_Version, Row]] = msgspec.field(default_factory=dict)
    vehicles: dict[tuple[str, str], tuple[_Version, Row]] = msgspec.field(default_factory=dict)
    appointments: dict[tuple[str, str], tuple[_Version, Row, NormalisedEvent]] = msgspec.field(default_factory=dict)

    def add(self, event: NormalisedEvent) -> None:
        eid = canonical_event_id(event.event_id)
        version = (event.occurred_at, eid)
        if isinstance(event, Delete):
            row: Row = (event.dealer_id, event.dms_number, None, None, None, False, None, "[]", True)
            row += (event.occurred_at, "[]", event.occurred_at, eid)
            _keep_newest(self.appointments, (event.dealer_id, event.dms_number), (version, row, event))
            return
        appt = event.appointment
        for person in appt.persons:
            values = tuple(getattr(person, f) for f in _PERSON_FIELDS)
            prow = (event.dealer_id, person.id, *values, _notes(person.notes), event.occurred_at, eid)
            _keep_newest(self.persons, (event.dealer_id, person.id), (version, prow))
        vehicle = appt.vehicle
        vehicle_key = vehicle.vehicle_key if vehicle is not None else None
        if vehicle is not None and vehicle_key is not None:
            vrow: Row = (event.dealer_id, vehicle_key, *(getattr(vehicle, f) for f in _VEHICLE_TEXT))
            vrow += (vehicle.first_registration_date, vehicle.apk_due_date)
            vrow += (vehicle.driver_id, vehicle.owner_id, vehicle.contractor_id)
            vrow += (_notes(vehicle.notes), event.occurred_at, eid)
            _keep_newest(self.vehicles, (event.dealer_id, vehicle_key), (version, vrow))
        person_ids = msgspec.json.encode([p.id for p in appt.persons]).decode()
        arow: Row = (event.dealer_id, appt.dms_number, appt.wo_number, appt.appointment_at, appt.created_at)
        arow += (appt.waiting_customer, vehicle_key, person_ids, False, None)
        arow += (_notes(appt.notes), event.occurred_at, eid)
        _keep_newest(self.appointments, (event.dealer_id, appt.dms_number), (version, arow, event))


def _dms_number(event: NormalisedEvent) -> str:
    return event.dms_number if isinstance(event, Delete) else event.appointment.dms_number


def _keep_newest(rows: dict[Any, Any], key: Any, candidate: tuple[Any, ...]) -> None:
    # ">=" so that within one event a repeated person id keeps its last occurrence, as a replay would.
    current = rows.get(key)
    if current is None or candidate[0] >= current[0]:
        rows[key] = candidate


def _interventions(events: Sequence[Upsert]) -> list[Row]:
    rows: list[Row] = []
    for event in events:
        eid = canonical_event_id(event.event_id)
        appt = event.appointment
        for position, item in enumerate(appt.interventions):
            key = (event.dealer_id, appt.dms_number, position)
            rows.append((*key, item.title, item.description, item.price, event.occurred_at, eid))
    return rows


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
    ) -> BatchResult:
        """Write the batch and its offsets in one transaction; retried as a whole on transient errors."""
        if not items and not extra_offsets:
            return BatchResult(0, 0, 0)
        outcome = _Outcome()
        async for attempt in self._retrying():
            with attempt:
                outcome = await self._apply_once(items, extra_offsets, on_rejected)
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
        with _stage("reading offsets"):
            rows = await self._pool.fetch(
                "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
                self._group_id,
                topic,
            )
        return {r["partition"]: r["next_offset"] for r in rows}

    async def ping(self) -> None:
        with _stage("ping"):
            await self._pool.fetchval("SELECT 1")

    async def prune(self, limit: int = 50_000) -> int:
        """Forget applied event ids older than the retention; at most ``limit`` per call. Returns how many."""
        with _stage("pruning applied_events"):
            async with self._pool.acquire() as conn, conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _PRUNE_LOCK):
                    return 0  # another replica is pruning
                status = await conn.execute(_PRUNE, self._retention_days, limit)
        return int(status.split()[-1])

    async def _prune_quietly(self) -> None:
        try:
            pruned = await self.prune()
        except TransientError as exc:
            log.warning("pruning applied_events failed; next time", error=str(exc))
        else:
            log.debug("pruned applied_events", rows=pruned)

    async def _apply_once(
        self, items: Sequence[Item], extra_offsets: Sequence[Offset], on_rejected: RejectedHook | None
    ) -> _Outcome:
        with _stage("applying batch"):
            async with self._pool.acquire() as conn, conn.transaction():
                outcome = await self._apply_isolating(conn, list(items)) if items else _Outcome()
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

    async def _merge(self, conn: Conn, items: list[Item]) -> _Outcome:
        unique: dict[str, NormalisedEvent] = {}
        for item in items:
            unique.setdefault(canonical_event_id(item.event.event_id), item.event)
        with _stage("recording applied_events"):
            fresh = {r[0] for r in await conn.fetch(_INSERT_APPLIED, list(unique))}
        rows = _Rows()
        for eid, event in unique.items():
            if eid in fresh:
                rows.add(event)
        await self._merge_table(conn, PERSONS, [r for _, r in _sorted(rows.persons)])
        await self._merge_table(conn, VEHICLES, [r for _, r in _sorted(rows.vehicles)])
        won = await self._merge_table(conn, APPOINTMENTS, [a[1] for a in _sorted(rows.appointments)])
        winners = [rows.appointments[(r["dealer_id"], r["dms_number"])][2] for r in won]
        await self._replace_interventions(conn, winners)
        return _Outcome(applied=len(winners), duplicates=len(items) - len(fresh), stale=len(fresh) - len(winners))

    async def _merge_table(self, conn: Conn, table: _Table, rows: list[Row]) -> list[asyncpg.Record]:
        if not rows:
            return []
        with _stage(f"merging {table.name}"):
            if self._use_copy(rows):
                await conn.execute(table.staging_ddl())
                names = [c[0] for c in table.columns]
                await conn.copy_records_to_table(f"_stage_{table.name}", records=rows, columns=names)
                return await conn.fetch(table.merge_sql(f"_stage_{table.name} AS s"))
            return await conn.fetch(table.merge_sql(table.unnest_source()), *_columns(rows, len(table.columns)))

    async def _replace_interventions(self, conn: Conn, winners: Sequence[NormalisedEvent]) -> None:
        """The winning snapshots' interventions replace the old set; a winning delete leaves none."""
        if not winners:
            return
        keys = sorted({(e.dealer_id, _dms_number(e)) for e in winners})
        with _stage("replacing interventions"):
            await conn.execute(_DELETE_INTERVENTIONS, [k[0] for k in keys], [k[1] for k in keys])
        upserts = [e for e in winners if isinstance(e, Upsert)]
        rows = sorted(_interventions(upserts), key=lambda r: (r[0], r[1], r[2]))
        if not rows:
            return
        names = ", ".join(c[0] for c in INTERVENTIONS.columns)
        exprs = ", ".join(c[2] for c in INTERVENTIONS.columns)
        with _stage("inserting interventions"):
            if self._use_copy(rows):
                await conn.execute(INTERVENTIONS.staging_ddl())
                cols = [c[0] for c in INTERVENTIONS.columns]
                await conn.copy_records_to_table("_stage_interventions", records=rows, columns=cols)
                source = "_stage_interventions AS s"
                await conn.execute(f"INSERT INTO interventions ({names}) SELECT {exprs} FROM {source}")
            else:
                source = INTERVENTIONS.unnest_source()
                sql = f"INSERT INTO interventions ({names}) SELECT {exprs} FROM {source}"
                await conn.execute(sql, *_columns(rows, len(INTERVENTIONS.columns)))

    def _use_copy(self, rows: Sequence[Row]) -> bool:
        return self._staging == "copy" or (self._staging == "auto" and len(rows) >= COPY_MIN_ROWS)

    async def _save_offsets(self, conn: Conn, offsets: dict[tuple[str, int], int]) -> None:
        if not offsets:
            return
        keys = sorted(offsets)
        with _stage("saving offsets"):
            await conn.execute(
                _SAVE_OFFSETS,
                self._group_id,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [offsets[k] for k in keys],
            )


def _sorted(rows: dict[tuple[str, str], Any]) -> list[Any]:
    # Python's order only needs to be stable here: the statements ORDER BY the key themselves.
    return [rows[k] for k in sorted(rows)]


def _columns(rows: Sequence[Row], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


__all__ = ["COPY_MIN_ROWS", "BatchResult", "RejectedHook", "Store", "classify"]
