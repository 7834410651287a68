"""The tables the worker writes, as data: their columns, the SQL that merges a batch into them, and the rows built
from normalised events (by column name), plus the classification of database errors into the closed hierarchy.

Pure apart from recognising asyncpg's exception classes: no connection is made here. The Store (store.py) runs it.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
import msgspec
from asyncpg.exceptions import _base as asyncpg_base

from schemas import contract
from worker.errors import IngestError, TransientError, WriteRejected
from worker.normalise.model import Delete, NormalisedEvent, Note, Person, Upsert, Vehicle, dms_number_of
from worker.normalise.normaliser import canonical_uuid
from worker.normalise.records import Item, Offset
from worker.normalise.version import NORMALISER_VERSION

# --- error classification -------------------------------------------------------------------------------------

# Connection exceptions, insufficient resources, operator intervention: the server, not the batch.
TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P")
# 40001 serialization, 40P01 deadlock, 57014 statement timeout, 55P03 lock timeout: the same batch can succeed later.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "57014", "55P03"})
# Data exceptions and integrity violations: this record's values, for good.
PERMANENT_SQLSTATE_PREFIXES = ("22", "23")
# 54000: a value too big for an index row (e.g. a 20 kB dms_number); permanent for that record, and bisecting
# isolates it like a 22*/23* error instead of the worker crashing on it at every restart.
PERMANENT_SQLSTATES = frozenset({"54000"})


def classify(exc: BaseException, context: str) -> IngestError | None:
    """The project's error for a database failure, or None when it is neither transient nor the data's fault.

    Messages carry the SQLSTATE and object names only: PostgreSQL's message and detail may quote values.
    """
    if isinstance(exc, IngestError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        if state.startswith(TRANSIENT_SQLSTATE_PREFIXES) or state in TRANSIENT_SQLSTATES:
            return TransientError(f"{context}: {type(exc).__name__} (SQLSTATE {state})")
        if state.startswith(PERMANENT_SQLSTATE_PREFIXES) or state in PERMANENT_SQLSTATES:
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
def stage(context: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        err = classify(exc, context)
        if err is None or err is exc:
            raise
        raise err from exc


# --- tables ---------------------------------------------------------------------------------------------------


class Table(msgspec.Struct, frozen=True):
    """How rows of one table are staged and merged.

    ``columns`` are (name, staging type, select expression); uuid and jsonb travel as text and are cast in SQL so
    that a bad value is a per-statement 22* error (bisectable) rather than a client-side encoding failure.
    """

    name: str
    key: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...]
    update: str  # the SET list of ON CONFLICT DO UPDATE
    returning: str = ""

    def row(self, **values: Any) -> Row:
        """One row given by column name, in the table's column order: a missing or unknown column fails here, not
        as a value landing in the wrong column."""
        if len(values) != len(self.columns):
            raise TypeError(f"{self.name}: columns {sorted(values)} are not {[c[0] for c in self.columns]}")
        return _in_order(self)(values)  # type: ignore[no-any-return]  # KeyError names an unknown column

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


_GETTERS: dict[str, tuple[tuple[tuple[str, str, str], ...], operator.itemgetter[Any]]] = {}


def _in_order(table: Table) -> operator.itemgetter[Any]:
    # One C-level getter per table: rows are built per person, vehicle and appointment of every event (a profile of
    # the worker put the generator it replaces at ~8% of its CPU). Checked by identity of the columns, so another
    # Table of the same name (a test's) never reads this one's order.
    cached = _GETTERS.get(table.name)
    if cached is None or cached[0] is not table.columns:
        cached = _GETTERS[table.name] = (table.columns, operator.itemgetter(*(c[0] for c in table.columns)))
    return cached[1]


def _col(name: str, pgtype: str = "text") -> tuple[str, str, str]:
    return (name, pgtype, f"s.{name}")


def _bookkeeping_cols() -> tuple[tuple[str, str, str], ...]:
    return (("notes", "text", "s.notes::jsonb"), _col("occurred_at", "timestamptz"), *_PROVENANCE_COLS)


# The event that wrote the row last and the Kafka record it came in (sql/004); `carsys-ingest trace` reads them.
_PROVENANCE_COLS = (
    ("event_id", "text", "s.event_id::uuid"),
    _col("source_topic"),
    _col("source_partition", "integer"),
    _col("source_offset", "bigint"),
)


def _snapshot_cols() -> tuple[tuple[str, str, str], ...]:
    # sql/005: the row's part of the source event (json, travelling as text like notes) and the rules' version.
    return (("source", "text", "s.source::json"), _col("normaliser_version", "integer"))


def _set_all(columns: Sequence[tuple[str, str, str]], key: Sequence[str]) -> str:
    return ", ".join(f"{c[0]} = EXCLUDED.{c[0]}" for c in columns if c[0] not in key)


# Column names are the model's field names.
_PERSON_FIELDS = tuple(f for f in Person.__struct_fields__ if f not in ("id", "notes"))
_PERSON_COLS = (
    _col("dealer_id"),
    _col("person_id"),
    *(_col(f) for f in _PERSON_FIELDS),
    *_snapshot_cols(),
    *_bookkeeping_cols(),
)
PERSONS = Table(
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
    *_snapshot_cols(),
    *_bookkeeping_cols(),
)
_NOT_FIELDS = ("dealer_id", "notes", "occurred_at", "source", "normaliser_version", *(c[0] for c in _PROVENANCE_COLS))
_VEHICLE_FIELDS = tuple(c[0] for c in _VEHICLE_COLS if c[0] not in _NOT_FIELDS)
VEHICLES = Table(
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
    *_snapshot_cols(),
    *_bookkeeping_cols(),
)
# What a delete writes besides its key and bookkeeping: no snapshot (see above).
_TOMBSTONE = {
    "wo_number": None,
    "appointment_at": None,
    "created_at": None,
    "waiting_customer": False,
    "vehicle_key": None,
    "person_ids": "[]",
    "deleted": True,
    "notes": "[]",
    # Nothing normalised in it, so no version: "rows on old rules" (normaliser_version < N) never lists a tombstone.
    "source": None,
    "normaliser_version": None,
}
APPOINTMENTS = Table(
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
    *_PROVENANCE_COLS,
)
INTERVENTIONS = Table(
    name="interventions", key=("dealer_id", "dms_number", "position"), columns=_INTERVENTION_COLS, update=""
)

# With the appointment each id was about and the record it came in (sql/004): what `trace` lists as "seen".
INSERT_APPLIED = """
INSERT INTO applied_events (event_id, dealer_id, dms_number, occurred_at, source_topic, source_partition, source_offset)
SELECT e::uuid, d, n, o, t, p, f
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::integer[], $7::bigint[])
    AS s(e, d, n, o, t, p, f)
ORDER BY 1
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id::text
"""

DELETE_INTERVENTIONS = """
DELETE FROM interventions i
USING unnest($1::text[], $2::text[]) AS k(dealer_id, dms_number)
WHERE i.dealer_id = k.dealer_id AND i.dms_number = k.dms_number
"""

SAVE_OFFSETS = """
INSERT INTO consumer_offsets AS o (group_id, topic, partition, next_offset)
SELECT $1, s.topic, s.partition, s.next_offset
FROM unnest($2::text[], $3::integer[], $4::bigint[]) AS s(topic, partition, next_offset)
ORDER BY s.topic, s.partition
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()
"""

PRUNE = """
DELETE FROM applied_events WHERE event_id IN (
    SELECT event_id FROM applied_events WHERE applied_at < now() - make_interval(days => $1) LIMIT $2
)
"""

# Any constant shared by the replicas: only one of them prunes at a time.
PRUNE_LOCK = 0x63617273_7973_7072  # "carsyspr"


# --- building rows --------------------------------------------------------------------------------------------


def canonical_event_id(event_id: str) -> str:
    """PostgreSQL's text form of the uuid, so ids compare the way the database compares them."""
    try:
        return canonical_uuid(event_id)
    except ValueError:
        return event_id  # the ::uuid cast rejects it as 22P02, which isolates the event


def _notes(notes: Sequence[Note]) -> str:
    return _ENCODE(notes).decode() if notes else "[]"


_Version = tuple[dt.datetime, str]
Row = tuple[Any, ...]

# occurred_at, event_id and the source record (topic, partition, offset) of the event a row comes from: the last
# five columns of every table but interventions, in this order (checked below).
Stamp = tuple[dt.datetime, str, str | None, int | None, int | None]
_STAMP_COLS = ("occurred_at", *(c[0] for c in _PROVENANCE_COLS))


def stamp_of(event: NormalisedEvent, offset: Offset | None = None, event_id: str | None = None) -> Stamp:
    """``event_id``: the event's canonical id when the caller has it already."""
    eid = canonical_event_id(event.event_id) if event_id is None else event_id
    if offset is None:
        return (event.occurred_at, eid, None, None, None)
    return (event.occurred_at, eid, offset.topic, offset.partition, offset.offset)


# A person's or a vehicle's row is (dealer_id, *part, *stamp), where the part (normalised values, snapshot, rules'
# version, notes) depends only on the normalised and the raw record. Carsys sends the same snapshots again and
# again, so parts are cached like the normaliser's results: building one was 6.5 us, a hit costs two struct hashes.
_PART_COLS = ("source", "normaliser_version", "notes")


def _check_layout(table: Table, fields: Sequence[str]) -> None:
    expected = (table.columns[0][0], *fields, *_PART_COLS, *_STAMP_COLS)
    if tuple(c[0] for c in table.columns) != expected:
        raise AssertionError(f"{table.name}: row parts do not follow the columns {expected}")


_check_layout(PERSONS, ("person_id", *_PERSON_FIELDS))
_check_layout(VEHICLES, _VEHICLE_FIELDS)
_PERSON_ATTRS = operator.attrgetter("id", *_PERSON_FIELDS)
_VEHICLE_ATTRS = operator.attrgetter(*_VEHICLE_FIELDS)
# Same bound as the normaliser's caches (worker/normalise/normaliser.py): a part holds the same strings plus its
# snapshot's JSON, ~0.7 KiB more per entry.
PART_CACHE_SIZE = 16384


def _person_part_of(person: Person, raw: contract.Person | None) -> Row:
    snapshot = None if raw is None else encode_source(raw)
    return (*_PERSON_ATTRS(person), snapshot, NORMALISER_VERSION, _notes(person.notes))


def _vehicle_part_of(vehicle: Vehicle, raw: contract.Vehicle | None) -> Row:
    snapshot = None if raw is None else encode_source(raw)
    return (*_VEHICLE_ATTRS(vehicle), snapshot, NORMALISER_VERSION, _notes(vehicle.notes))


_person_part = functools.lru_cache(maxsize=PART_CACHE_SIZE)(_person_part_of)
_vehicle_part = functools.lru_cache(maxsize=PART_CACHE_SIZE // 2)(_vehicle_part_of)


def configure_caches(persons: int) -> None:
    """As worker.normalise.normaliser.configure_caches, for the rows' parts: the same bounds."""
    global _person_part, _vehicle_part
    _person_part = functools.lru_cache(maxsize=persons)(_person_part_of)
    _vehicle_part = functools.lru_cache(maxsize=persons // 2)(_vehicle_part_of)


def person_row(dealer_id: str, person: Person, raw: contract.Person | None, stamp: Stamp) -> Row:
    return (dealer_id, *_person_part(person, raw), *stamp)


def vehicle_row(dealer_id: str, vehicle: Vehicle, raw: contract.Vehicle | None, stamp: Stamp) -> Row:
    return (dealer_id, *_vehicle_part(vehicle, raw), *stamp)


def encode_source(part: msgspec.Struct) -> str:
    """One part of a decoded contract event as the JSON of its snapshot (sql/005)."""
    text = _ENCODE(part)
    if b"\\u0000" in text:
        # PostgreSQL's json operators cannot read U+0000 (SQLSTATE 22P05), nor can text hold it, and a snapshot
        # must never be why an event is refused.
        text = _ENCODE(_without_nul(msgspec.to_builtins(part)))
    return text.decode()


_ENCODE = msgspec.json.Encoder().encode


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def appointment_source(appointment: contract.Appointment) -> str:
    """The appointment's own snapshot: without its vehicle and persons, which have rows (and snapshots) of their
    own, so erasing a person never has to edit an appointment's snapshot."""
    return encode_source(msgspec.structs.replace(appointment, vehicle=None, persons=()))


def appointment_row(event: NormalisedEvent, raw: contract.Appointment | None, stamp: Stamp) -> Row:
    occurred_at, event_id, topic, partition, offset = stamp
    provenance = {"event_id": event_id, "source_topic": topic, "source_partition": partition, "source_offset": offset}
    if isinstance(event, Delete):
        return APPOINTMENTS.row(
            **_TOMBSTONE,
            dealer_id=event.dealer_id,
            dms_number=event.dms_number,
            deleted_at=occurred_at,
            occurred_at=occurred_at,
            **provenance,
        )
    appt = event.appointment
    return APPOINTMENTS.row(
        dealer_id=event.dealer_id,
        dms_number=appt.dms_number,
        wo_number=appt.wo_number,
        appointment_at=appt.appointment_at,
        created_at=appt.created_at,
        waiting_customer=appt.waiting_customer,
        vehicle_key=appt.vehicle.vehicle_key if appt.vehicle is not None else None,
        person_ids=_ENCODE([p.id for p in appt.persons]).decode(),
        deleted=False,
        deleted_at=None,
        notes=_notes(appt.notes),
        source=None if raw is None else appointment_source(raw),
        normaliser_version=NORMALISER_VERSION,
        occurred_at=occurred_at,
        **provenance,
    )


# A candidate for a key: the version that decides who wins, what the row is built from, and its stamp.
_Candidate = tuple[_Version, Any, Any, Stamp]


class Rows(msgspec.Struct):
    """The newest snapshot per key of each table, from the new events of one (sub-)batch.

    ``add`` only keeps the newest candidate per key; rows are built for the winners alone, by ``persons()``,
    ``vehicles()`` and ``appointments()``, in key order (a quarter of a batch's person records lose to a newer
    record of the same person in the same batch).
    """

    _persons: dict[tuple[str, str], _Candidate] = msgspec.field(default_factory=dict)
    _vehicles: dict[tuple[str, str], _Candidate] = msgspec.field(default_factory=dict)
    _appointments: dict[tuple[str, str], _Candidate] = msgspec.field(default_factory=dict)

    def add(
        self,
        event: NormalisedEvent,
        source: contract.Event | None = None,
        offset: Offset | None = None,
        event_id: str | None = None,
    ) -> None:
        """``source``: the decoded event ``event`` was normalised from; its parts become the rows' snapshots.
        ``offset``: the Kafka record it came in (the rows' provenance). ``event_id``: its canonical id, if known."""
        stamp = stamp_of(event, offset, event_id)
        version = (stamp[0], stamp[1])
        dealer = event.dealer_id
        if isinstance(event, Delete):
            _keep_newest(self._appointments, (dealer, event.dms_number), (version, event, None, stamp))
            return
        appt = event.appointment
        raw = source.appointment if isinstance(source, contract.AppointmentUpserted) else None
        for person, raw_person in zip(appt.persons, _sources_of(appt.persons, raw), strict=True):
            _keep_newest(self._persons, (dealer, person.id), (version, person, raw_person, stamp))
        vehicle = appt.vehicle
        if vehicle is not None and vehicle.vehicle_key is not None:
            raw_vehicle = None if raw is None else raw.vehicle
            _keep_newest(self._vehicles, (dealer, vehicle.vehicle_key), (version, vehicle, raw_vehicle, stamp))
        _keep_newest(self._appointments, (dealer, appt.dms_number), (version, event, raw, stamp))

    def persons(self) -> list[Row]:
        return _all(self.persons_in_slices)

    def vehicles(self) -> list[Row]:
        return _all(self.vehicles_in_slices)

    def appointments(self) -> list[Row]:
        return _all(self.appointments_in_slices)

    def persons_in_slices(self, out: list[Row]) -> Iterator[None]:
        """Append the persons' rows to ``out`` in key order, stopping after each slice (see Plan.build)."""
        return _in_slices(out, self._persons, lambda k, c: person_row(k[0], c[1], c[2], c[3]))

    def vehicles_in_slices(self, out: list[Row]) -> Iterator[None]:
        return _in_slices(out, self._vehicles, lambda k, c: vehicle_row(k[0], c[1], c[2], c[3]))

    def appointments_in_slices(self, out: list[Row]) -> Iterator[None]:
        return _in_slices(out, self._appointments, lambda _, c: appointment_row(c[1], c[2], c[3]))

    def event_of(self, key: tuple[str, str]) -> NormalisedEvent:
        """The event whose snapshot is the candidate for appointment ``key``."""
        event: NormalisedEvent = self._appointments[key][1]
        return event

    def events(self) -> list[NormalisedEvent]:
        """The appointments' candidate events, in key order."""
        return [c[1] for _, c in sorted(self._appointments.items())]

    def candidates(self) -> Iterator[tuple[tuple[str, str], NormalisedEvent]]:
        """Each appointment key with its candidate event, in no particular order."""
        return ((key, c[1]) for key, c in self._appointments.items())


def _sources_of(persons: Sequence[Person], raw: contract.Appointment | None) -> Sequence[contract.Person | None]:
    """The source record of each normalised person. The normaliser keeps the persons' order and drops only a repeat
    of an earlier person (the same once normalised), so the n-th source person is the n-th normalised one unless
    there were repeats; then the first source record of each id is its source."""
    if raw is None:
        return (None,) * len(persons)
    if len(raw.persons) == len(persons):
        return raw.persons
    first: dict[str, contract.Person] = {}
    for p in raw.persons:
        first.setdefault(p.id.strip(), p)
    return [first[p.id] for p in persons]


def unique_items(items: Iterable[Item]) -> dict[str, Item]:
    """Canonical event id -> the first item with that id (a later one is a duplicate)."""
    unique: dict[str, Item] = {}
    for item in items:
        unique.setdefault(canonical_event_id(item.event.event_id), item)
    return unique


class Plan:
    """A batch's rows built before its write, assuming all its events are new: under a backlog the consumer builds
    the next batch's plan while PostgreSQL writes the current one, so that the write itself only sends rows.

    Build it with ``add`` (any number of times) and then every step of ``build()``; ``Store.apply`` uses it when the
    events it finds new are exactly the plan's, and otherwise builds the rows again itself.
    """

    __slots__ = ("_appointments", "_interventions", "_persons", "_vehicles", "rows", "unique")

    def __init__(self) -> None:
        self.unique: dict[str, Item] = {}
        self.rows = Rows()
        self._persons: list[Row] = []
        self._vehicles: list[Row] = []
        self._appointments: list[Row] = []
        self._interventions: dict[tuple[str, str], list[Row]] = {}

    def add(self, items: Iterable[Item]) -> None:
        for eid, item in unique_items(items).items():
            if self.unique.setdefault(eid, item) is item:  # the first item with an id counts, as in the store
                self.rows.add(item.event, item.source, item.offset, eid)

    def build(self) -> Iterator[None]:
        """The row lists, in steps of a few milliseconds: the caller may yield to other work between steps (a
        write waiting for its turn on the event loop keeps PostgreSQL waiting too)."""
        yield from self.rows.persons_in_slices(self._persons)
        yield from self.rows.vehicles_in_slices(self._vehicles)
        yield from self.rows.appointments_in_slices(self._appointments)
        sources = {eid: item.offset for eid, item in self.unique.items()}
        self._interventions = {
            key: intervention_rows([event], sources)
            for key, event in self.rows.candidates()
            if isinstance(event, Upsert)
        }

    def persons(self) -> list[Row]:
        return self._persons

    def vehicles(self) -> list[Row]:
        return self._vehicles

    def appointments(self) -> list[Row]:
        return self._appointments

    def interventions(self, winners: Sequence[tuple[str, str]]) -> list[Row]:
        """The interventions' rows of these appointments (in the order given)."""
        return [row for key in winners for row in self._interventions.get(key, ())]


def planned(items: Iterable[Item]) -> Plan:
    """The plan of these items, built at once."""
    plan = Plan()
    plan.add(items)
    for _ in plan.build():
        pass
    return plan


# Rows built between two yields of Plan.build: ~1-2 ms of CPU.
_SLICE = 250


def _in_slices(
    out: list[Row], candidates: dict[tuple[str, str], _Candidate], make: Callable[[tuple[str, str], _Candidate], Row]
) -> Iterator[None]:
    ordered = sorted(candidates.items())
    for start in range(0, len(ordered), _SLICE):
        out += [make(key, candidate) for key, candidate in ordered[start : start + _SLICE]]
        yield


def _all(build: Callable[[list[Row]], Iterator[None]]) -> list[Row]:
    rows: list[Row] = []
    for _ in build(rows):
        pass
    return rows


def _keep_newest(rows: dict[Any, Any], key: Any, candidate: tuple[Any, ...]) -> None:
    # ">=" so that within one event a repeated person id keeps its last occurrence, as a replay would.
    current = rows.get(key)
    if current is None or candidate[0] >= current[0]:
        rows[key] = candidate


def intervention_rows(events: Sequence[Upsert], sources: Mapping[str, Offset] | None = None) -> list[Row]:
    """``sources``: canonical event id -> the record it came in. Rows come in the order of ``events``, each
    event's by position, so events in key order give rows in key order."""
    rows: list[Row] = []
    for event in events:
        eid = canonical_event_id(event.event_id)
        offset = (sources or {}).get(eid)
        topic, partition, at = (offset.topic, offset.partition, offset.offset) if offset else (None, None, None)
        appt = event.appointment
        dealer, dms, when = event.dealer_id, appt.dms_number, event.occurred_at
        rows += [
            (dealer, dms, position, i.title, i.description, i.price, when, eid, topic, partition, at)
            for position, i in enumerate(appt.interventions)
        ]
    return rows


def _check_intervention_layout() -> None:
    names = ("dealer_id", "dms_number", "position", "title", "description", "price", *_STAMP_COLS)
    if tuple(c[0] for c in INTERVENTIONS.columns) != names:
        raise AssertionError(f"interventions: rows do not follow the columns {names}")


_check_intervention_layout()


def column_arrays(rows: Sequence[Row], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]


# The normalised data columns of persons and vehicles (keys and bookkeeping aside), for `renormalise`.
PERSON_FIELDS = _PERSON_FIELDS
VEHICLE_FIELDS = _VEHICLE_FIELDS


def applied_columns(items: Mapping[str, Item]) -> list[list[Any]]:
    """INSERT_APPLIED's parameters for ``items`` (canonical event id -> item), in id order."""
    ids = sorted(items)
    chosen = [items[i] for i in ids]
    return [
        ids,
        [i.event.dealer_id for i in chosen],
        [dms_number_of(i.event) for i in chosen],
        [i.event.occurred_at for i in chosen],
        [i.offset.topic for i in chosen],
        [i.offset.partition for i in chosen],
        [i.offset.offset for i in chosen],
    ]
