"""``carsys-ingest renormalise``: re-run the current normaliser over the stored source snapshots (sql/005) and rewrite
the rows whose output differs, while the workers keep running.

Which rows: every person, vehicle and appointment with a snapshot whose ``normaliser_version`` is older than the
normaliser's (``worker.normalise.version``), optionally of one ``--dealer``. Each row's snapshot is its own part of
the winning event (a person, a vehicle, an appointment without vehicle and persons); it is wrapped in an event with
the row's dealer, event id and occurred_at and normalised by the very function the worker uses (a parameter here, so
that tests can pass another rule set).

What it writes, per chunk of rows in key order, one transaction per chunk, tables in the store's lock order
(persons, vehicles, then appointments with their interventions):
- a row whose output differs gets the new values, notes and version;
- a row whose output is the same only gets the new version (so "which rows are still on the old rules?" is
  ``WHERE normaliser_version < N``, and a second run finds nothing to do);
- never a row that changed since it was read: every UPDATE requires the row to still hold the event that was read
  (``occurred_at`` and ``event_id``) and a snapshot (an erasure clears it), after locking the rows in key order like
  the store does. A row a worker overwrote meanwhile counts as ``superseded``: the worker's own normaliser wrote it.
- Keys are not re-derived: a row whose new output would have another key (a vehicle's VIN or plate rule, a person or
  appointment id) is left as it is and counted ``key would change`` (moving it is a migration, not a rewrite).
  Likewise an appointment's links (``vehicle_key``, ``person_ids``) stay as stored.

Resumable: a rewritten or confirmed row carries the new version, so an interrupted run simply runs again.
Rate-limited (``--rate`` rows per second, read and compared). ``--dry-run`` writes nothing and reports what would
change, counted by table, field and rule. Never prints or logs values: counts, field names and rule names only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import decimal
import hashlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import asyncpg
import msgspec

from schemas import contract
from worker import config
from worker.errors import PermanentError, TransientError
from worker.normalise import model
from worker.normalise.records import normalised
from worker.normalise.version import NORMALISER_VERSION
from worker.ops.replay import pace
from worker.runtime.tables import (
    DELETE_INTERVENTIONS,
    INTERVENTIONS,
    PERSON_FIELDS,
    VEHICLE_FIELDS,
    column_arrays,
    intervention_rows,
)

NormaliseFn = Callable[[contract.Event], model.NormalisedEvent]
# A connection of its own (the command) or from a pool (tests, a caller holding a pool).
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
Row: TypeAlias = "Mapping[str, Any] | asyncpg.Record"
LOCK_KEY: Final = int.from_bytes(hashlib.sha256(b"carsys-ingest:renormalise").digest()[:8], "big", signed=True)
PROGRESS_EVERY_S: Final = 5.0

# A derived column changes because of the rules of the fields it is derived from.
_DERIVED: Final = {
    "preferred_email": ("email_private", "email_business"),
    "preferred_mobile": ("mobile_private", "mobile_business", "phone_private", "phone_business"),
    "house_number_addition": ("house_number",),
    "license_plate_key": ("license_plate",),
}


# --- pure parts -----------------------------------------------------------------------------------------------


Notes = list[dict[str, str]]


def note_dicts(notes: Sequence[model.Note]) -> Notes:
    return [{"field": n.field, "rule": n.rule, "action": n.action} for n in notes]


def _rules_for(field: str, notes: Notes) -> str:
    fields = {field, *_DERIVED.get(field, ())}
    rules = sorted({n["rule"] for n in notes if n["field"] in fields or n["field"].startswith(f"{field}[")})
    return "+".join(rules) or "(no note)"


def changes(
    old: Mapping[str, Any], new: Mapping[str, Any], old_notes: Notes, new_notes: Notes
) -> list[tuple[str, str]]:
    """(field, rule) for every field whose value differs, the rule(s) being those noted for the field by either
    version; when only the notes differ, one (field, "rule (note only)") per added or removed note. No values."""
    both = old_notes + new_notes
    found = [(f, _rules_for(f, both)) for f in new if old[f] != new[f]]
    if found or old_notes == new_notes:
        return found
    old_set = {tuple(n.values()) for n in old_notes}
    new_set = {tuple(n.values()) for n in new_notes}
    return sorted({(n[0], f"{n[1]} (note only)") for n in old_set ^ new_set})


class Outcome(msgspec.Struct):
    """One row, re-normalised: its new values (column -> value) and notes, or why it is left alone."""

    key: tuple[str, str]
    values: dict[str, Any] = msgspec.field(default_factory=dict)
    notes: Notes = msgspec.field(default_factory=list)
    changed: list[tuple[str, str]] = msgspec.field(default_factory=list)
    skipped: str | None = None  # "refused" or "key would change"
    event: model.Upsert | None = None


def _event(row: Row, appointment: contract.Appointment) -> contract.AppointmentUpserted:
    return contract.AppointmentUpserted(
        event_id=row["event_id"],
        schema_version=1,
        occurred_at=row["occurred_at"],
        dealer_id=row["dealer_id"],
        appointment=appointment,
    )


def _wrapper(row: Row, **parts: Any) -> contract.Appointment:
    # Only the part under test is normalised into the row; the wrapper's own fields are never written.
    return contract.Appointment(dms_number="renormalise", created_at=row["occurred_at"], **parts)


def _upsert(fn: NormaliseFn, event: contract.Event) -> model.Upsert:
    out = fn(event)
    if not isinstance(out, model.Upsert):
        raise TypeError("the normaliser turned an upsert into something else")
    return out


class Kind(msgspec.Struct, frozen=True):
    """One table renormalise rewrites: its key, the columns it compares and writes, and how a snapshot becomes
    those columns."""

    table: str
    key: tuple[str, str]
    fields: tuple[tuple[str, str], ...]  # (column, pgtype) compared and written besides notes

    def outcome(self, row: Row, fn: NormaliseFn) -> Outcome:
        key = (row[self.key[0]], row[self.key[1]])
        try:
            new_key, values, notes, event = _normalise_row(self.table, row, fn)
        except (PermanentError, ValueError, TypeError, ArithmeticError, msgspec.MsgspecError):
            return Outcome(key, skipped="refused")
        if new_key != key[1]:
            return Outcome(key, skipped="key would change")
        old = {f: row[f] for f, _ in self.fields}
        if event is not None:
            old["interventions"] = _stored_interventions(row["interventions"])
            values["interventions"] = _interventions_of(event)
        old_notes = msgspec.json.decode(row["notes"])
        return Outcome(key, values, notes, changes(old, values, old_notes, notes), event=event)


def _cents(price: decimal.Decimal | None) -> decimal.Decimal | None:
    # As numeric(12, 2) stores it, so that a price with more decimals does not differ on every run.
    return None if price is None else price.quantize(_CENT, rounding=decimal.ROUND_HALF_UP)


_CENT: Final = decimal.Decimal("0.01")


def _interventions_of(event: model.Upsert) -> list[tuple[Any, ...]]:
    return [(i.title, i.description, _cents(i.price)) for i in event.appointment.interventions]


def _stored_interventions(rows: Sequence[str]) -> list[tuple[Any, ...]]:
    items = [msgspec.json.decode(r) for r in rows]
    return [(t, d, None if p is None else _cents(decimal.Decimal(p))) for t, d, p in items]


def _normalise_row(
    table: str, row: Row, fn: NormaliseFn
) -> tuple[str | None, dict[str, Any], Notes, model.Upsert | None]:
    """(the key the new output would have, its values, its notes, the event when interventions come with it)."""
    if table == "persons":
        person = msgspec.json.decode(row["source"], type=contract.Person)
        p = _upsert(fn, _event(row, _wrapper(row, persons=(person,)))).appointment.persons[0]
        return p.id, {f: getattr(p, f) for f in PERSON_FIELDS}, note_dicts(p.notes), None
    if table == "vehicles":
        vehicle = msgspec.json.decode(row["source"], type=contract.Vehicle)
        v = _upsert(fn, _event(row, _wrapper(row, vehicle=vehicle))).appointment.vehicle
        if v is None:
            return None, {}, [], None
        return (
            v.vehicle_key,
            {f: getattr(v, f) for f in VEHICLE_FIELDS if f != "vehicle_key"},
            note_dicts(v.notes),
            None,
        )
    event = _upsert(fn, _event(row, msgspec.json.decode(row["source"], type=contract.Appointment)))
    a = event.appointment
    values = {f: getattr(a, f) for f in ("wo_number", "appointment_at", "created_at", "waiting_customer")}
    return a.dms_number, values, note_dicts(a.notes), event


_T = "text"
PERSONS: Final = Kind("persons", ("dealer_id", "person_id"), tuple((f, _T) for f in PERSON_FIELDS))
VEHICLES: Final = Kind(
    "vehicles",
    ("dealer_id", "vehicle_key"),
    tuple((f, "date" if f.endswith("_date") else _T) for f in VEHICLE_FIELDS if f != "vehicle_key"),
)
APPOINTMENTS: Final = Kind(
    "appointments",
    ("dealer_id", "dms_number"),
    (
        ("wo_number", _T),
        ("appointment_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("waiting_customer", "boolean"),
    ),
)
KINDS: Final = (PERSONS, VEHICLES, APPOINTMENTS)  # the store's lock order


# --- SQL --------------------------------------------------------------------------------------------------------


def select_sql(kind: Kind) -> str:
    k0, k1 = kind.key
    cols = ", ".join(f for f, _ in kind.fields)
    interventions = ""
    if kind is APPOINTMENTS:
        interventions = (
            ", ARRAY(SELECT jsonb_build_array(i.title, i.description, i.price::text) FROM interventions i"
            " WHERE i.dealer_id = t.dealer_id AND i.dms_number = t.dms_number ORDER BY i.position)::text[]"
            " AS interventions"
        )
    return (
        f"SELECT {k0}, {k1}, {cols}, notes::text AS notes, occurred_at, event_id::text AS event_id,"
        f" source::text AS source{interventions} FROM {kind.table} t"
        " WHERE source IS NOT NULL AND coalesce(normaliser_version, 0) < $1 AND ($2::text IS NULL OR dealer_id = $2)"
        f" AND ({k0}, {k1}) > ($3, $4) ORDER BY {k0}, {k1} LIMIT $5"
    )


def lock_sql(kind: Kind) -> str:
    k0, k1 = kind.key
    return (
        f"SELECT 1 FROM {kind.table} t JOIN unnest($1::text[], $2::text[]) AS k(a, b) ON t.{k0} = k.a AND t.{k1} = k.b"
        f" ORDER BY t.{k0}, t.{k1} FOR UPDATE OF t"
    )


_GUARD = "t.occurred_at = s.occurred_at AND t.event_id = s.event_id::uuid AND t.source IS NOT NULL"


def rewrite_sql(kind: Kind) -> str:
    k0, k1 = kind.key
    names = [k0, k1, *(f for f, _ in kind.fields), "notes", "occurred_at", "event_id"]
    types = [_T, _T, *(t for _, t in kind.fields), _T, "timestamptz", _T]
    params = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 2))
    sets = ", ".join(f"{f} = s.{f}" for f, _ in kind.fields)
    return (
        f"UPDATE {kind.table} AS t SET {sets}, notes = s.notes::jsonb, normaliser_version = $1, updated_at = now()"
        f" FROM unnest({params}) AS s({', '.join(names)})"
        f" WHERE t.{k0} = s.{k0} AND t.{k1} = s.{k1} AND {_GUARD} RETURNING t.{k0}, t.{k1}"
    )


def stamp_sql(kind: Kind) -> str:
    k0, k1 = kind.key
    return (
        f"UPDATE {kind.table} AS t SET normaliser_version = $1"
        f" FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[]) AS s({k0}, {k1}, occurred_at, event_id)"
        f" WHERE t.{k0} = s.{k0} AND t.{k1} = s.{k1} AND {_GUARD}"
    )


# --- the run --------------------------------------------------------------------------------------------------


class Options(msgspec.Struct, frozen=True, kw_only=True):
    dry_run: bool = False
    dealer: str | None = None
    rate: float = 2000.0  # rows per second
    chunk: int = 500
    version: int = NORMALISER_VERSION


class Tally(msgspec.Struct):
    """What one table's rows came to. ``changes`` counts rows by (field, rule); a row may count under several."""

    read: int = 0
    changed: int = 0
    unchanged: int = 0
    superseded: int = 0
    skipped: dict[str, int] = msgspec.field(default_factory=dict)
    changes: dict[tuple[str, str], int] = msgspec.field(default_factory=dict)

    def count(self, outcomes: Sequence[Outcome]) -> None:
        self.read += len(outcomes)
        for o in outcomes:
            if o.skipped is not None:
                self.skipped[o.skipped] = self.skipped.get(o.skipped, 0) + 1
            elif o.changed:
                self.changed += 1
                for change in o.changed:
                    self.changes[change] = self.changes.get(change, 0) + 1
            else:
                self.unchanged += 1


Summary = dict[str, Tally]


async def renormalise(
    conn: Conn,
    normalise: NormaliseFn = normalised,
    options: Options | None = None,
    progress: Callable[[str, Tally], None] | None = None,
) -> Summary:
    """Re-normalise every table (see the module docstring); ``normalise`` is the worker's normaliser unless given."""
    opts = options or Options()
    summary: Summary = {}
    for kind in KINDS:
        summary[kind.table] = await _table(conn, kind, normalise, opts, progress)
    return summary


async def _table(
    conn: Conn,
    kind: Kind,
    fn: NormaliseFn,
    opts: Options,
    progress: Callable[[str, Tally], None] | None,
) -> Tally:
    tally, after, started = Tally(), ("", ""), time.monotonic()
    sql = select_sql(kind)
    while True:
        await asyncio.sleep(pace(tally.read, opts.rate, started, time.monotonic()))
        rows = await conn.fetch(sql, opts.version, opts.dealer, after[0], after[1], opts.chunk)
        if not rows:
            return tally
        outcomes = [kind.outcome(r, fn) for r in rows]
        tally.count(outcomes)
        if not opts.dry_run:
            tally.superseded += await write_chunk(conn, kind, rows, outcomes, opts.version)
        after = (rows[-1][0], rows[-1][1])
        if progress is not None:
            progress(kind.table, tally)


async def write_chunk(
    conn: Conn, kind: Kind, rows: Sequence[asyncpg.Record], outcomes: Sequence[Outcome], version: int
) -> int:
    """Rewrite and stamp one chunk in one transaction; returns how many rows changed since they were read."""
    by_key = {(r[0], r[1]): r for r in rows}
    changed = [o for o in outcomes if o.skipped is None and o.changed]
    same = [o for o in outcomes if o.skipped is None and not o.changed]
    if not changed and not same:
        return 0
    async with conn.transaction():
        keys = sorted(o.key for o in [*changed, *same])
        await conn.execute(lock_sql(kind), [k[0] for k in keys], [k[1] for k in keys])
        written = await _rewrite(conn, kind, changed, by_key, version)
        stamp = [by_key[o.key] for o in same]
        status = await conn.execute(
            stamp_sql(kind),
            version,
            [r[0] for r in stamp],
            [r[1] for r in stamp],
            [r["occurred_at"] for r in stamp],
            [r["event_id"] for r in stamp],
        )
        stamped = int(status.split()[-1])
    return len(changed) + len(same) - len(written) - stamped


async def _rewrite(
    conn: Conn,
    kind: Kind,
    changed: Sequence[Outcome],
    by_key: Mapping[tuple[str, str], asyncpg.Record],
    version: int,
) -> list[tuple[str, str]]:
    if not changed:
        return []
    ordered = sorted(changed, key=lambda o: o.key)
    columns: list[list[Any]] = [[o.key[0] for o in ordered], [o.key[1] for o in ordered]]
    columns += [[o.values[f] for o in ordered] for f, _ in kind.fields]
    columns.append([msgspec.json.encode(o.notes).decode() for o in ordered])
    columns.append([by_key[o.key]["occurred_at"] for o in ordered])
    columns.append([by_key[o.key]["event_id"] for o in ordered])
    written = [(r[0], r[1]) for r in await conn.fetch(rewrite_sql(kind), version, *columns)]
    if kind is APPOINTMENTS:
        won = set(written)
        await _replace_interventions(conn, [o.event for o in ordered if o.key in won and o.event is not None])
    return written


async def _replace_interventions(conn: Conn, events: Sequence[model.Upsert]) -> None:
    """As the store does for a winning upsert: the appointment's interventions replaced as a set."""
    if not events:
        return
    keys = sorted((e.dealer_id, e.appointment.dms_number) for e in events)
    await conn.execute(DELETE_INTERVENTIONS, [k[0] for k in keys], [k[1] for k in keys])
    rows = sorted(intervention_rows(events), key=lambda r: (r[0], r[1], r[2]))
    if rows:
        names = ", ".join(c[0] for c in INTERVENTIONS.columns)
        exprs = ", ".join(c[2] for c in INTERVENTIONS.columns)
        sql = f"INSERT INTO interventions ({names}) SELECT {exprs} FROM {INTERVENTIONS.unnest_source()}"
        await conn.execute(sql, *column_arrays(rows, len(INTERVENTIONS.columns)))


# --- the command ----------------------------------------------------------------------------------------------


def report(summary: Summary, *, dry_run: bool, version: int) -> str:
    """The summary: counts, field and rule names only."""
    verb = "would change" if dry_run else "changed"
    lines = [f"{'dry run, nothing written; ' if dry_run else ''}normaliser version {version}"]
    for table, t in summary.items():
        skipped = ", ".join(f"{why} {n}" for why, n in sorted(t.skipped.items())) or "none"
        line = f"{table}: {t.read} read, {verb} {t.changed}, unchanged {t.unchanged}"
        if not dry_run:
            line += f", superseded by a newer event {t.superseded}"
        lines.append(f"{line}, left alone: {skipped}")
        lines += [f"  {field} ({rule}): {n}" for (field, rule), n in sorted(t.changes.items())]
    return "\n".join(lines)


class _Progress:
    """A line on stderr at most every PROGRESS_EVERY_S seconds."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self, table: str, tally: Tally) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
            print(f"{stamp} {table}: {tally.read} read, {tally.changed} to change", file=sys.stderr, flush=True)


async def run_renormalise(settings: config.Settings, options: Options) -> int:
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TransientError(f"database unreachable: {type(exc).__name__}") from None
    try:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            print("carsys-ingest renormalise: another run is in progress; try again later", file=sys.stderr)
            return 3
        summary = await renormalise(conn, normalised, options, _Progress())
    finally:
        await conn.close()  # also releases the advisory lock
    print(report(summary, dry_run=options.dry_run, version=options.version))
    return 0


def renormalise_command(args: argparse.Namespace) -> int:
    settings = config.from_env()
    if args.rate <= 0:
        print("carsys-ingest renormalise: --rate must be > 0", file=sys.stderr)
        return 2
    options = Options(dry_run=args.dry_run, dealer=args.dealer, rate=args.rate)
    return asyncio.run(run_renormalise(settings, options))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="write nothing; count what would change")
    parser.add_argument("--dealer", help="only this dealer's rows")
    parser.add_argument("--rate", type=float, default=2000.0, help="most rows per second (default 2000)")
