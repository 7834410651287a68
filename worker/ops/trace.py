"""``carsys-ingest trace``: everything the system knows about one appointment, in one report.

Asked by record key (``DEALER/DMS``), by ``--dealer`` + ``--dms``, or by ``--event-id``. It reads:

- PostgreSQL: the appointment row (live or tombstone) with the event id and the source record that wrote it
  (sql/004), its interventions, vehicle and persons (personal values masked unless ``--reveal``, as ``dlq show``);
  the events recorded for the key in ``applied_events`` (each event id once, with its source record; kept
  ``APPLIED_EVENT_RETENTION_DAYS``) and which of them won; the replay history (``dlq_replays``) of its dead letters;
  the consumer's stored offset for the key's partition.
- Kafka: the dead-letter topic, filtered on the record key's bytes (and, by event id, on the id's bytes in the
  value) before anything is decoded, so a topic of 100,000 letters is read in seconds (docs/benchmarks.md); the
  group's committed offset and the log end of the key's partition.

Not recorded anywhere, so not reported: a duplicate delivery of an event id already applied (counted by
``carsys_events_duplicate_total``), events applied before migration 004 or pruned after the retention, and events
that never reached the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from worker import config
from worker.errors import TransientError
from worker.normalise.model import Person
from worker.ops.inspection import consumer_for, read_letters
from worker.ops.letters import Filters, Letter, Origin, origin_text, redact
from worker.runtime.kafka import kafka_options

# Columns that hold personal values (or values derived from them: a vehicle key is "vin:..." or "plate:...").
# "source": the row's source snapshot (sql/005), what Carsys sent: shown with its shape, values masked.
MASKED = {
    "appointments": frozenset({"vehicle_key", "source"}),
    "interventions": frozenset({"description"}),  # free text: may hold a name or a phone number
    "vehicles": frozenset({"vehicle_key", "license_plate", "license_plate_key", "vin", "source"}),
    "persons": frozenset({*(f for f in Person.__struct_fields__ if f not in ("id", "notes")), "source"}),
}
EXIT_FOUND, EXIT_NOTHING = 0, 1


class Subject(msgspec.Struct, kw_only=True):
    dealer: str | None = None
    dms: str | None = None
    event_id: str | None = None

    @property
    def key(self) -> str | None:
        return f"{self.dealer}/{self.dms}" if self.dealer is not None and self.dms is not None else None


def subject_from_args(args: argparse.Namespace) -> Subject:
    """Exactly one of: a key, ``--event-id``, ``--dealer`` with ``--dms``. Raises ValueError saying which is wrong."""
    given = [bool(args.key), bool(args.event_id), bool(args.dealer or args.dms)]
    if sum(given) != 1:
        raise ValueError("give one of: a key DEALER/DMS, --event-id, or --dealer with --dms")
    if args.key:
        dealer, slash, dms = args.key.partition("/")  # a dealer id never holds '/': the first one separates
        if not slash or not dealer or not dms:
            raise ValueError(f"a key is DEALER/DMS, got {args.key!r}")
        return Subject(dealer=dealer, dms=dms)
    if args.event_id:
        return Subject(event_id=canonical(args.event_id))
    if not (args.dealer and args.dms):
        raise ValueError("--dealer and --dms go together")
    return Subject(dealer=args.dealer, dms=args.dms)


def canonical(event_id: str) -> str:
    try:
        return str(uuid.UUID(event_id.strip()))
    except ValueError:
        raise ValueError("--event-id is not a UUID") from None


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client, aiokafka and so `publish` and `dlq replay`): where
    such a producer put a keyed record."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def librdkafka_partition_of(key: bytes, partitions: int) -> int:
    """librdkafka's default partitioner (``consistent_random``: CRC-32 of the key): where the clients built on it
    (.NET's Confluent.Kafka, confluent-kafka-python, Go's confluent-kafka-go, kcat) put a keyed record, unless told
    ``partitioner=murmur2_random``."""
    return zlib.crc32(key) % partitions


# --- rows, masked (pure) ----------------------------------------------------------------------------------------


def row_view(table: str, record: Any, *, reveal: bool) -> dict[str, Any]:
    masked = frozenset() if reveal else MASKED[table]
    row = msgspec.to_builtins(dict(record.items()))
    if isinstance(row.get("source"), str):  # json arrives as text: shown as the document it is
        row["source"] = msgspec.json.decode(row["source"])
    return {k: (redact(v) if k in masked else v) for k, v in row.items()}


def source_text(row: dict[str, Any]) -> str | None:
    if row.get("source_topic") is None:
        return None
    return f"{row['source_topic']}/{row['source_partition']}/{row['source_offset']}"


# --- PostgreSQL -------------------------------------------------------------------------------------------------

_PROVENANCE = "occurred_at, event_id::text AS event_id, source_topic, source_partition, source_offset"
_Q_APPOINTMENT = f"""
SELECT dealer_id, dms_number, deleted, deleted_at, wo_number, appointment_at, created_at, waiting_customer,
       vehicle_key, person_ids, notes::text AS notes, {_PROVENANCE}, updated_at
FROM appointments WHERE dealer_id = $1 AND dms_number = $2
"""
_Q_INTERVENTIONS = f"""
SELECT position, title, description, price, {_PROVENANCE}
FROM interventions WHERE dealer_id = $1 AND dms_number = $2 ORDER BY position
"""
_Q_VEHICLE = "SELECT * FROM vehicles WHERE dealer_id = $1 AND vehicle_key = $2"
_Q_PERSONS = """
SELECT * FROM persons
WHERE dealer_id = $1 AND person_id = ANY($2::text[]) ORDER BY person_id
"""
_Q_SEEN = """
SELECT event_id::text AS event_id, occurred_at, applied_at, source_topic, source_partition, source_offset
FROM applied_events WHERE dealer_id = $1 AND dms_number = $2 ORDER BY occurred_at, event_id
"""
_Q_KEY_OF_EVENT = """
SELECT dealer_id, dms_number FROM applied_events WHERE event_id = $1::uuid AND dealer_id IS NOT NULL
UNION ALL SELECT dealer_id, dms_number FROM appointments WHERE event_id = $1::uuid
UNION ALL SELECT dealer_id, dms_number FROM interventions WHERE event_id = $1::uuid
LIMIT 1
"""
_Q_REPLAYS = """
SELECT original_topic, original_partition, original_offset, dlq_topic, dlq_partition, dlq_offset, replay_count,
       replayed_partition, replayed_offset, replayed_at
FROM dlq_replays
WHERE (original_topic, original_partition, original_offset) IN
      (SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]))
"""
_Q_STORED_OFFSET = "SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3"


async def connect(dsn: str) -> asyncpg.Connection[Any]:
    try:
        return await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TransientError(f"database unreachable: {type(exc).__name__}") from None


async def resolve(conn: asyncpg.Connection[Any], subject: Subject) -> Subject:
    """The key of an event id, when PostgreSQL knows it (applied, or the writer of a stored row)."""
    if subject.key is not None or subject.event_id is None:
        return subject
    row = await conn.fetchrow(_Q_KEY_OF_EVENT, subject.event_id)
    if row is None:
        return subject
    return Subject(dealer=row["dealer_id"], dms=row["dms_number"], event_id=subject.event_id)


async def stored(conn: asyncpg.Connection[Any], dealer: str, dms: str, *, reveal: bool) -> dict[str, Any]:
    appointment = await conn.fetchrow(_Q_APPOINTMENT, dealer, dms)
    interventions = await conn.fetch(_Q_INTERVENTIONS, dealer, dms)
    vehicle = persons = None
    if appointment is not None and appointment["vehicle_key"] is not None:
        vehicle = await conn.fetchrow(_Q_VEHICLE, dealer, appointment["vehicle_key"])
    if appointment is not None:
        persons = await conn.fetch(_Q_PERSONS, dealer, list(appointment["person_ids"]))
    seen = await conn.fetch(_Q_SEEN, dealer, dms)
    winner = appointment["event_id"] if appointment is not None else None
    return {
        "appointment": None if appointment is None else row_view("appointments", appointment, reveal=reveal),
        "interventions": [row_view("interventions", r, reveal=reveal) for r in interventions],
        "vehicle": None if vehicle is None else row_view("vehicles", vehicle, reveal=reveal),
        "persons": [row_view("persons", r, reveal=reveal) for r in persons or []],
        "events_seen": [{**msgspec.to_builtins(dict(r.items())), "won": r["event_id"] == winner} for r in seen],
    }


async def replays(conn: asyncpg.Connection[Any], origins: Sequence[Origin]) -> dict[Origin, dict[str, Any]]:
    rows = await conn.fetch(_Q_REPLAYS, [o[0] for o in origins], [o[1] for o in origins], [o[2] for o in origins])
    return {(r[0], r[1], r[2]): msgspec.to_builtins(dict(r.items())) for r in rows}


# --- Kafka ------------------------------------------------------------------------------------------------------


async def letters_for(settings: config.Settings, subject: Subject) -> list[Letter]:
    """The letters whose record key is the subject's, or whose value holds its event id (bytes compared only)."""
    key = subject.key.encode() if subject.key else None
    keep = None
    if subject.event_id is not None:
        lower, upper = subject.event_id.encode(), subject.event_id.upper().encode()
        keep = lambda _k, v: v is not None and (lower in v or upper in v)  # noqa: E731
    if key is None and keep is None:
        return []
    filters = Filters(key=key)
    return [letter async for letter in read_letters(settings, filters, keep=keep, label="trace: dead letters")]


async def log_position(settings: config.Settings, key: bytes | None, partition: int | None) -> dict[str, Any]:
    """The event topic's partition for the key: its log end and the group's committed offset in Kafka. Known from a
    record (``partition``), or else where Java clients put the key, with ``librdkafka``: the same for the partition
    librdkafka's clients put it on, when that is another one."""
    topic = settings.kafka_topic
    consumer = consumer_for(settings, "trace")
    await consumer.start()
    try:
        await consumer._client.add_topic(topic)  # see inspection._partitions: no public call for one topic
        count = len(consumer.partitions_for_topic(topic) or ())
        wanted = _partitions_for(key, partition, count)
        if not wanted:
            return {"topic": topic}
        tps = [TopicPartition(topic, p) for p in wanted]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(**kafka_options(settings), client_id=f"{settings.kafka_client_id}-trace")
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.kafka_group_id, partitions=tps)
    finally:
        await admin.close()
    positions = [
        {"topic": topic, "partition": tp.partition, "log_end": ends[tp], "committed": _offset(committed, tp)}
        for tp in tps
    ]
    return positions[0] if len(positions) == 1 else {**positions[0], "librdkafka": positions[1]}


def _partitions_for(key: bytes | None, partition: int | None, count: int) -> list[int]:
    if partition is not None:
        return [partition]
    if key is None or not count:
        return []
    return list(dict.fromkeys((partition_of(key, count), librdkafka_partition_of(key, count))))


def _offset(committed: dict[TopicPartition, Any], tp: TopicPartition) -> int | None:
    meta = committed.get(tp)
    return meta.offset if meta is not None and meta.offset >= 0 else None


# --- the report -------------------------------------------------------------------------------------------------


def letter_entry(letter: Letter, replay: dict[str, Any] | None, later: list[Letter]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "letter": letter.coordinates,
        "original": origin_text(letter.origin) if letter.origin else None,
        "key": None if letter.key is None else letter.key.decode("utf-8", "backslashreplace"),
        "stage": letter.stage,
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "failed_at": letter.get("dlq.failed_at"),
        "replay_count": letter.replay_count,
        "replayed": None,
    }
    if replay is not None:
        to = (replay["original_topic"], replay["replayed_partition"], replay["replayed_offset"])
        again = [lt.coordinates for lt in later if lt.origin == to]
        entry["replayed"] = {
            "at": replay["replayed_at"],
            "to": origin_text(to),
            "outcome": f"failed again: letter {again[0]}" if again else "no letter since (applied, stale or duplicate)",
        }
    return entry


def consumer_view(position: dict[str, Any], stored_next: int | None, record_offset: int | None) -> dict[str, Any]:
    view = {**position, "stored_next_offset": stored_next}
    end, done = position.get("log_end"), stored_next if stored_next is not None else position.get("committed")
    view["lag"] = end - done if end is not None and done is not None else None
    if record_offset is not None and done is not None:
        view["record_offset"] = record_offset
        view["record_consumed"] = record_offset < done
    return view


def known(report: dict[str, Any]) -> bool:
    return bool(report["appointment"] or report["interventions"] or report["events_seen"] or report["dead_letters"])


_NOTHING_STORED: dict[str, Any] = {
    "appointment": None,
    "interventions": [],
    "vehicle": None,
    "persons": [],
    "events_seen": [],
}


async def _subject_and_letters(settings: config.Settings, subject: Subject) -> tuple[Subject, list[Letter]]:
    letters = await letters_for(settings, subject)
    if subject.key is not None:
        return subject, letters
    # Known only from a letter: its key names the appointment; read again for that key's other letters.
    keyed = next((lt.key for lt in letters if lt.key and b"/" in lt.key), None)
    if keyed is None:
        return subject, letters
    dealer, _, dms = keyed.decode("utf-8", "replace").partition("/")
    subject = Subject(dealer=dealer, dms=dms, event_id=subject.event_id)
    return subject, await letters_for(settings, subject)


async def build(settings: config.Settings, subject: Subject, *, reveal: bool) -> dict[str, Any]:
    conn = await connect(settings.database_url)
    try:
        subject, letters = await _subject_and_letters(settings, await resolve(conn, subject))
        report: dict[str, Any] = {"key": subject.key, "event_id": subject.event_id}
        if subject.dealer is None or subject.dms is None:
            report.update(_NOTHING_STORED)
        else:
            report.update(await stored(conn, subject.dealer, subject.dms, reveal=reveal))
        history = await replays(conn, [lt.origin for lt in letters if lt.origin])
        report["dead_letters"] = [letter_entry(lt, history.get(lt.origin or ("", -1, -1)), letters) for lt in letters]
        report["consumer"] = await _consumer(conn, settings, subject, report)
    finally:
        await conn.close()
    return report


def _source_offset(report: dict[str, Any]) -> tuple[int | None, int | None]:
    """(partition, offset) of the record that wrote the row, else of the newest letter's original."""
    row = report["appointment"]
    if row is not None and row.get("source_partition") is not None:
        return row["source_partition"], row["source_offset"]
    originals = [lt["original"] for lt in report["dead_letters"] if lt["original"]]
    if originals:
        _, partition, offset = originals[-1].rsplit("/", 2)
        return int(partition), int(offset)
    return None, None


async def _consumer(
    conn: asyncpg.Connection[Any], settings: config.Settings, subject: Subject, report: dict[str, Any]
) -> dict[str, Any]:
    partition, offset = _source_offset(report)
    key = subject.key.encode() if subject.key else None
    position = await log_position(settings, key, partition)
    if "partition" not in position:
        return position
    other = position.pop("librdkafka", None)
    view = await _view(conn, settings, position, offset)
    if other is not None:
        view["librdkafka"] = await _view(conn, settings, other, None)
    return view


async def _view(
    conn: asyncpg.Connection[Any], settings: config.Settings, position: dict[str, Any], offset: int | None
) -> dict[str, Any]:
    stored_next = await conn.fetchval(
        _Q_STORED_OFFSET, settings.kafka_group_id, settings.kafka_topic, position["partition"]
    )
    return consumer_view(position, stored_next, offset)


# --- rendering --------------------------------------------------------------------------------------------------


def _appointment_lines(report: dict[str, Any]) -> list[str]:
    row = report["appointment"]
    if row is None:
        return ["stored appointment: none"]
    state = f"tombstone (deleted at {row['deleted_at']})" if row["deleted"] else "live"
    lines = [
        f"stored appointment: {state}",
        f"  occurred_at {row['occurred_at']}, written by event {row['event_id']}"
        f" from {source_text(row) or 'an unrecorded source (before migration 004)'}, updated {row['updated_at']}",
    ]
    if not row["deleted"]:
        lines.append(
            f"  wo_number {row['wo_number']}, appointment_at {row['appointment_at']}, created_at {row['created_at']},"
            f" waiting_customer {row['waiting_customer']}, vehicle_key {row['vehicle_key']},"
            f" person_ids {row['person_ids']}"
        )
    lines.append(f"  notes {row['notes']}")
    return lines


def _detail_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"interventions: {len(report['interventions'])}"]
    lines += [
        f"  {i['position']}: {i['title']} (price {i['price']}, description {i['description']})"
        for i in report["interventions"]
    ]
    vehicle = report["vehicle"]
    if vehicle is not None:
        shown = ", ".join(f"{k} {vehicle[k]}" for k in ("vehicle_key", "make", "model", "license_plate", "vin"))
        lines.append(f"vehicle: {shown}, from {source_text(vehicle) or '-'}")
    lines.append(f"persons: {len(report['persons'])}")
    for p in report["persons"]:
        erased = f", erased at {p['erased_at']}" if p.get("erased_at") else ""
        lines.append(f"  {p['person_id']}: {p['first_name']} {p['last_name']}, {p['preferred_email']}{erased}")
    return lines


def _seen_lines(report: dict[str, Any]) -> list[str]:
    seen = report["events_seen"]
    lines = [f"events seen for this key (applied_events): {len(seen)}"]
    for e in seen:
        verdict = "won (wrote the stored row)" if e["won"] else "did not win (not newer than the row then stored)"
        lines.append(f"  {e['event_id']} occurred_at {e['occurred_at']} from {source_text(e) or '-'}: {verdict}")
    lines.append(
        "  not recorded: repeated deliveries of one event id (duplicates), events applied before migration 004"
        " or older than APPLIED_EVENT_RETENTION_DAYS"
    )
    return lines


def _letter_lines(report: dict[str, Any], dlq_topic: str) -> list[str]:
    lines = [f"dead letters in {dlq_topic}: {len(report['dead_letters'])}"]
    for lt in report["dead_letters"]:
        lines.append(f"  {lt['letter']} (original {lt['original']}), failed at {lt['failed_at']}")
        lines.append(f"    {lt['stage']} / {lt['error_class']}: {lt['error_message']}")
        replayed = lt["replayed"]
        if replayed is None:
            lines.append(f"    not replayed by dlq replay (replayed {lt['replay_count']} time(s) before it failed)")
        else:
            lines.append(f"    replayed at {replayed['at']} to {replayed['to']}: {replayed['outcome']}")
    return lines


def _consumer_lines(c: dict[str, Any]) -> list[str]:
    if "partition" not in c:
        return [f"consumer: {c['topic']} has no partition for this key (topic missing?)"]
    lines = [
        f"consumer: {c['topic']} partition {c['partition']}: log end {c['log_end']},"
        f" stored next offset {c['stored_next_offset']} (PostgreSQL), committed {c['committed']} (Kafka),"
        f" lag {c['lag']}"
    ]
    if "record_offset" in c:
        state = "consumed" if c["record_consumed"] else "not consumed yet"
        lines.append(f"  the record at offset {c['record_offset']}: {state}")
    other = c.get("librdkafka")
    if other is not None:
        lines[0] += " (where Java clients, publish and dlq replay put this key)"
        lines.append(
            f"  where librdkafka's clients (.NET, Python, Go, kcat) put it: partition {other['partition']}: log end"
            f" {other['log_end']}, stored next offset {other['stored_next_offset']} (PostgreSQL), committed"
            f" {other['committed']} (Kafka), lag {other['lag']}"
        )
    return lines


def render(report: dict[str, Any], dlq_topic: str) -> str:
    head = f"trace {report['key'] or '(key unknown)'}" + (f" event {report['event_id']}" if report["event_id"] else "")
    lines = [head, *_appointment_lines(report), *_detail_lines(report), *_seen_lines(report)]
    lines += [*_letter_lines(report, dlq_topic), *_consumer_lines(report["consumer"])]
    if not known(report):
        lines.append("nothing known: not stored, not seen, not dead-lettered")
    return "\n".join(lines)


def trace_command(args: argparse.Namespace) -> int:
    try:
        subject = subject_from_args(args)
    except ValueError as exc:
        print(f"carsys-ingest trace: {exc}", file=sys.stderr)
        return 2
    settings = config.from_env()
    report = asyncio.run(build(settings, subject, reveal=args.reveal))
    if args.json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n")
    else:
        print(render(report, settings.kafka_dlq_topic))
    if args.reveal:
        print("carsys-ingest trace: personal values revealed: do not paste them", file=sys.stderr)
    return EXIT_FOUND if known(report) else EXIT_NOTHING
