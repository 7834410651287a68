"""``carsys-ingest erase``: an AVG/GDPR data-subject request for one person of one dealer.

Who: ``--person-id``, or every person of the dealer whose e-mail (``--email``) or phone number (``--phone``) is the
given one *after normalisation with the normaliser's own functions*, so "  Jan.Jansen@Example.NL " finds the stored
"jan.jansen@example.nl" and "06-12345678" finds "+31612345678".

What, in one transaction, in the store's lock order (persons, vehicles, appointments):
- ``persons``: every personal column, the notes and the source snapshot (sql/005) are cleared and the row becomes
  a tombstone (``erased_at``, and ``occurred_at`` moved to the moment of erasure), so that no older event can write
  the person back: the store only overwrites a row with a newer event (see sql/003_person_erasure.sql). It is the
  only table holding names, addresses, e-mails and phones (``notes`` hold field names and rules, never values;
  ``interventions`` describe work, not people; each row's snapshot holds only that row's part of the event, so
  appointment snapshots hold no persons).
- ``vehicles``: driver / owner / contractor links to the person are cleared, in the row and in its source snapshot
  (which would otherwise bring them back on ``renormalise``); the vehicle stays.
- ``appointments``: the person's id is removed from ``person_ids``; the appointment stays.
- ``interventions``: descriptions are free text and may hold the person. Every description of the dealer is
  searched for the person's e-mails and phone numbers (normalised) and names as stored (worker/ops/freetext.py);
  an e-mail, a phone number or the full name is replaced by ``[erased]``, a last name alone is only reported.

``--dry-run`` runs the same statements and rolls them back, so its counts are the real ones. Without ``--yes`` a
terminal is asked to confirm after such a preview; anything else (a pipe, a job) is refused. Nothing matched (no
person, link, description or letter) exits 1.

A person whose snapshot holds the e-mail or number while the row does not (an older rule dropped it) is found by
``--email`` / ``--phone`` all the same.

Then the dead-letter topic is scanned for letters whose payload still holds the person (same dealer and person id,
e-mail or phone, compared normalised); only their coordinates are printed. They expire with the topic's retention
(``carsys-ingest init --dlq-retention-days``, 30 by default); replaying one changes nothing (it is older than the
tombstone) unless it is newer than the erasure. Their number is printed, their coordinates with ``--list``.

The output names person ids (the DMS's pseudonymous keys, needed to erase at the source too), never values.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import asyncpg
import msgspec

from worker import config
from worker.errors import TransientError
from worker.normalise.emails import normalise_email, read_email
from worker.normalise.phones import normalise_phone, read_phones
from worker.ops.freetext import Needles, find, scrub
from worker.ops.inspection import read_letters
from worker.ops.letters import Filters, Letter

EMAIL_FIELDS = ("email_private", "email_business", "preferred_email")
PHONE_FIELDS = ("phone_private", "mobile_private", "phone_business", "mobile_business", "preferred_mobile")
_RAW_EMAIL_FIELDS = ("email_private", "email_business")
_RAW_PHONE_FIELDS = ("phone_private", "mobile_private", "phone_business", "mobile_business")


class Target(msgspec.Struct, kw_only=True):
    """Who to find: a dealer, and the person ids, normalised e-mails and E.164 numbers that identify them."""

    dealer: str
    ids: set[str]
    emails: set[str]
    phones: set[str]

    def widened(self, rows: Iterable[asyncpg.Record]) -> Target:
        """The target plus the ids and contact data of the rows found: letters are matched on all of them."""
        rows = list(rows)
        return Target(
            dealer=self.dealer,
            ids=self.ids | {r["person_id"] for r in rows},
            emails=self.emails | {r[f] for r in rows for f in EMAIL_FIELDS if r[f]},
            phones=self.phones | {r[f] for r in rows for f in PHONE_FIELDS if r[f]},
        )


def target_from_args(args: argparse.Namespace) -> Target:
    """Raises ValueError (value-free message) when the e-mail or phone number does not normalise."""
    emails: set[str] = set()
    phones: set[str] = set()
    if args.email is not None:
        email, _ = normalise_email(args.email)
        if email is None:
            raise ValueError("--email is not an e-mail address the normaliser accepts")
        emails.add(email)
    if args.phone is not None:
        phone = normalise_phone(args.phone).e164
        if phone is None:
            raise ValueError("--phone is not a phone number the normaliser accepts")
        phones.add(phone)
    return Target(dealer=args.dealer, ids={args.person_id} if args.person_id else set(), emails=emails, phones=phones)


# --- which dead letters hold the person (pure) ----------------------------------------------------------------


def _person_matches(person: dict[str, Any], target: Target) -> bool:
    if isinstance(pid := person.get("id"), str) and pid in target.ids:
        return True
    # A field may hold two addresses or numbers ("jan@x.nl; piet@y.nl"): either one is the person's.
    raw_emails = [v for f in _RAW_EMAIL_FIELDS if isinstance(v := person.get(f), str)]
    raw_phones = [v for f in _RAW_PHONE_FIELDS if isinstance(v := person.get(f), str)]
    emails = {a for v in raw_emails for a in read_email(v)[::2]}
    phones = {n.e164 for v in raw_phones for n in read_phones(v) if n is not None}
    return bool(emails & target.emails) or bool(phones & target.phones)


def _persons(document: dict[str, Any]) -> list[dict[str, Any]]:
    appointment = document.get("appointment")
    persons = appointment.get("persons") if isinstance(appointment, dict) else None
    return [p for p in persons if isinstance(p, dict)] if isinstance(persons, list) else []


def _mentions(value: bytes, target: Target) -> bool:
    # Not JSON (or not an object): look for the identifiers in the bytes; a hit is reported as a possible match.
    lowered = value.lower()
    return any(f'"{i}"'.encode() in value for i in target.ids) or any(e.encode() in lowered for e in target.emails)


def holds(letter: Letter, target: Target) -> str | None:
    """``"yes"`` when the letter's payload holds the person, ``"possibly"`` for an undecodable one, else None."""
    if not letter.value:
        return None
    try:
        document = msgspec.json.decode(letter.value)
    except msgspec.DecodeError:
        document = None
    if not isinstance(document, dict):
        return "possibly" if _mentions(letter.value, target) else None
    if target.dealer not in (document.get("dealer_id"), letter.dealer):
        return None
    return "yes" if any(_person_matches(p, target) for p in _persons(document)) else None


# --- the database ---------------------------------------------------------------------------------------------

_FIND = f"""
SELECT person_id, first_name, last_name, {", ".join(EMAIL_FIELDS + PHONE_FIELDS)} FROM persons
WHERE dealer_id = $1
  AND (person_id = ANY($2::text[])
       OR ARRAY[{", ".join(EMAIL_FIELDS)}] && $3::text[]
       OR ARRAY[{", ".join(PHONE_FIELDS)}] && $4::text[])
ORDER BY person_id
FOR UPDATE
"""

_PERSONAL_COLUMNS = (
    "company_name", "title", "first_name", "last_name", "street", "house_number", "house_number_addition",
    "postcode", "city", *EMAIL_FIELDS, *PHONE_FIELDS,
)  # fmt: skip

# The nil event id marks the tombstone's last writer as the erasure itself, not an event.
_ERASE_PERSONS = f"""
UPDATE persons
SET {", ".join(f"{c} = NULL" for c in _PERSONAL_COLUMNS)}, notes = '[]', source = NULL, normaliser_version = NULL,
    erased_at = now(),
    occurred_at = greatest(occurred_at, now()), event_id = '00000000-0000-0000-0000-000000000000', updated_at = now(),
    source_topic = NULL, source_partition = NULL, source_offset = NULL
WHERE dealer_id = $1 AND person_id = ANY($2::text[])
"""

# The vehicle's snapshot (sql/005) holds the link as it arrived (clean_id trims it): cleared too, or renormalise
# would bring the link back.
_LINKED = "({role} = ANY($2::text[]) OR btrim(source->>'{role}', E' \\t\\r\\n') = ANY($2::text[]))"
_ROLES = ("driver_id", "owner_id", "contractor_id")

_CLEAR_ROLE = f"""
UPDATE vehicles
SET {{role}} = NULL, source = jsonb_set(source::jsonb, '{{{{{{role}}}}}}', 'null')::json, updated_at = now()
WHERE dealer_id = $1 AND {_LINKED}
"""

_LOCK_VEHICLES = f"""
SELECT 1 FROM vehicles
WHERE dealer_id = $1 AND ({" OR ".join(_LINKED.format(role=role) for role in _ROLES)})
ORDER BY vehicle_key FOR UPDATE
"""

# Persons whose snapshot holds the e-mail or number while their row does not (an older rule dropped it).
_SNAPSHOTS = "SELECT person_id, source::text AS source FROM persons WHERE dealer_id = $1 AND source IS NOT NULL"

_CLEAR_APPOINTMENTS = """
UPDATE appointments
SET person_ids = ARRAY(SELECT p FROM unnest(person_ids) AS p WHERE NOT p = ANY($2::text[])), updated_at = now()
WHERE (dealer_id, dms_number) IN (
    SELECT dealer_id, dms_number FROM appointments
    WHERE dealer_id = $1 AND person_ids && $2::text[] ORDER BY dms_number FOR UPDATE)
"""


_DESCRIPTIONS = """
SELECT dms_number, position, description FROM interventions
WHERE dealer_id = $1 AND description IS NOT NULL
ORDER BY dms_number, position FOR UPDATE
"""
_SCRUB = "UPDATE interventions SET description = $4 WHERE dealer_id = $1 AND dms_number = $2 AND position = $3"


class Described(msgspec.Struct, frozen=True):
    """An intervention description holding the person: where, what was found (kinds, never values), scrubbed?"""

    dms_number: str
    position: int
    kinds: tuple[str, ...]
    scrubbed: bool


class Erased(msgspec.Struct, kw_only=True):
    person_ids: list[str]
    persons: int
    vehicle_links: dict[str, int]
    appointment_links: int
    descriptions: list[Described] = msgspec.field(default_factory=list)
    appointment_snapshots: int = 0

    @property
    def matched(self) -> bool:
        links = sum(self.vehicle_links.values()) + self.appointment_links
        return bool(self.persons or links or self.descriptions or self.appointment_snapshots)


def _count(status: str) -> int:
    return int(status.split()[-1])


async def _snapshot_matches(conn: asyncpg.Connection[Any], target: Target) -> Target:
    """The target plus the persons whose source snapshot holds the e-mail or number, compared normalised."""
    if not target.emails and not target.phones:
        return target
    found = {
        r["person_id"]
        for r in await conn.fetch(_SNAPSHOTS, target.dealer)
        if _person_matches(msgspec.json.decode(r["source"]), target)
    }
    return Target(dealer=target.dealer, ids=target.ids | found, emails=target.emails, phones=target.phones)


def needles(target: Target, rows: Iterable[asyncpg.Record]) -> Needles:
    return Needles(
        emails=frozenset(target.emails),
        phones=frozenset(target.phones),
        names=frozenset((r["first_name"] or "", r["last_name"] or "") for r in rows),
    )


async def _descriptions(conn: asyncpg.Connection[Any], dealer: str, wanted: Needles) -> list[Described]:
    found: list[Described] = []
    scrubbed: list[tuple[str, str, int, str]] = []
    for r in await conn.fetch(_DESCRIPTIONS, dealer):
        hits = find(r["description"], wanted)
        if not hits:
            continue
        clean = scrub(r["description"], hits)
        kinds = tuple(sorted({h.kind for h in hits}))
        found.append(Described(r["dms_number"], r["position"], kinds, clean != r["description"]))
        if clean != r["description"]:
            scrubbed.append((dealer, r["dms_number"], r["position"], clean))
    if scrubbed:
        await conn.executemany(_SCRUB, scrubbed)
    return found


class _RolledBack(Exception):
    """Leaves the transaction of a dry run, undoing everything it did."""

    def __init__(self, result: tuple[Erased, Target]) -> None:
        super().__init__("dry run")
        self.result = result


_APPOINTMENT_SNAPSHOTS = "SELECT dms_number, source FROM appointments WHERE dealer_id = $1 AND source IS NOT NULL"
_DROP_SNAPSHOTS = "UPDATE appointments SET source = NULL WHERE dealer_id = $1 AND dms_number = ANY($2::text[])"


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


async def _appointment_snapshots(conn: asyncpg.Connection[Any], dealer: str, wanted: Needles) -> int:
    """An appointment's source snapshot keeps its interventions' free text as Carsys sent it. One that holds the
    person in any way (a last name alone too: nobody reviews an archive) is dropped; the row stays, it can only no
    longer be re-normalised. Returns how many were dropped."""
    hits = sorted(
        r["dms_number"]
        for r in await conn.fetch(_APPOINTMENT_SNAPSHOTS, dealer)
        if any(find(text, wanted) for text in _texts(msgspec.json.decode(r["source"])))
    )
    if hits:
        await conn.execute(_DROP_SNAPSHOTS, dealer, hits)
    return len(hits)


async def _erase_in(conn: asyncpg.Connection[Any], target: Target) -> tuple[Erased, Target]:
    target = await _snapshot_matches(conn, target)
    rows = await conn.fetch(_FIND, target.dealer, sorted(target.ids), sorted(target.emails), sorted(target.phones))
    wide = target.widened(rows)
    ids = sorted(wide.ids)
    persons = _count(await conn.execute(_ERASE_PERSONS, target.dealer, ids))
    await conn.execute(_LOCK_VEHICLES, target.dealer, ids)
    links = {role: _count(await conn.execute(_CLEAR_ROLE.format(role=role), target.dealer, ids)) for role in _ROLES}
    appointments = _count(await conn.execute(_CLEAR_APPOINTMENTS, target.dealer, ids))
    wanted = needles(wide, rows)
    snapshots = await _appointment_snapshots(conn, target.dealer, wanted)
    # Last, in the store's lock order (interventions after appointments).
    described = await _descriptions(conn, target.dealer, wanted)
    erased = Erased(
        person_ids=ids,
        persons=persons,
        vehicle_links=links,
        appointment_links=appointments,
        descriptions=described,
        appointment_snapshots=snapshots,
    )
    return erased, wide


async def erase(conn: asyncpg.Connection[Any], target: Target, *, dry_run: bool = False) -> tuple[Erased, Target]:
    try:
        async with conn.transaction():
            result = await _erase_in(conn, target)
            if dry_run:
                raise _RolledBack(result)
    except _RolledBack as rolled_back:
        return rolled_back.result
    return result


# --- the command ----------------------------------------------------------------------------------------------


async def letters_holding(settings: config.Settings, target: Target) -> list[tuple[Letter, str]]:
    found: list[tuple[Letter, str]] = []
    async for letter in read_letters(settings, Filters()):
        verdict = holds(letter, target)
        if verdict:
            found.append((letter, verdict))
    return found


async def run_erase(
    settings: config.Settings, target: Target, *, dry_run: bool
) -> tuple[Erased, list[tuple[Letter, str]]]:
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TransientError(f"database unreachable: {type(exc).__name__}") from None
    try:
        erased, wide = await erase(conn, target, dry_run=dry_run)
    finally:
        await conn.close()
    return erased, await letters_holding(settings, wide)


def _description_lines(erased: Erased, *, listed: bool) -> list[str]:
    scrubbed = [d for d in erased.descriptions if d.scrubbed]
    reported = [d for d in erased.descriptions if not d.scrubbed]
    lines = [
        f"  intervention descriptions holding the person's e-mail, phone or full name (scrubbed): {len(scrubbed)}",
        f"  intervention descriptions holding only the last name (reported, not changed): {len(reported)}",
        f"  appointment source snapshots whose free text held the person (dropped): {erased.appointment_snapshots}",
    ]
    if listed:
        lines += [f"    {d.dms_number}/{d.position}: {', '.join(d.kinds)}" for d in erased.descriptions]
    return lines


def render(
    dealer: str, erased: Erased, letters: list[tuple[Letter, str]], dlq_topic: str, *, dry_run: bool, listed: bool
) -> str:
    who = ", ".join(erased.person_ids) or "nobody matched"
    links = ", ".join(f"{role.removesuffix('_id')} {n}" for role, n in erased.vehicle_links.items())
    verb = "would erase (dry run: nothing changed)" if dry_run else "erased"
    lines = [
        f"{verb} from PostgreSQL, dealer {dealer}, person id(s): {who}",
        f"  persons erased (kept as tombstones without personal data): {erased.persons}",
        f"  vehicle links cleared: {links}",
        f"  appointment links cleared: {erased.appointment_links}",
        *_description_lines(erased, listed=listed),
        f"dead letters in {dlq_topic} still holding the person: {len(letters)}",
    ]
    if listed:
        lines += [f"  {letter.coordinates} ({verdict})" for letter, verdict in letters]
    elif letters:
        lines.append("  their coordinates: the same command with --list")
    if letters:
        lines.append("  they expire with the dead-letter retention; a replay changes nothing (older than the erasure)")
    lines.append("the source topic keeps the original events until its own retention; erase at the DMS too")
    return "\n".join(lines)


def _confirmed(args: argparse.Namespace, settings: config.Settings, target: Target) -> bool | None:
    """True to go ahead; False when the operator said no; None when nobody can be asked (not a terminal)."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        return None
    preview, _ = asyncio.run(run_erase_preview(settings, target))
    print(render(args.dealer, preview, [], settings.kafka_dlq_topic, dry_run=True, listed=args.list))
    if not preview.matched:
        return True  # nothing to confirm: the run below reports it and exits 1
    answer = input("erase this person's data? type 'yes' to go ahead: ")
    return answer.strip().lower() == "yes"


async def run_erase_preview(settings: config.Settings, target: Target) -> tuple[Erased, Target]:
    """The database part of a dry run (no dead-letter scan), for the confirmation."""
    try:
        conn = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise TransientError(f"database unreachable: {type(exc).__name__}") from None
    try:
        return await erase(conn, target, dry_run=True)
    finally:
        await conn.close()


def erase_command(args: argparse.Namespace) -> int:
    settings = config.from_env()
    try:
        target = target_from_args(args)
    except ValueError as exc:
        print(f"carsys-ingest erase: {exc}", file=sys.stderr)
        return 2
    if not args.dry_run:
        go = _confirmed(args, settings, target)
        if go is None:
            print("carsys-ingest erase: not a terminal: pass --yes to erase (or --dry-run to see)", file=sys.stderr)
            return 2
        if not go:
            print("carsys-ingest erase: nothing erased", file=sys.stderr)
            return 1
    erased, letters = asyncio.run(run_erase(settings, target, dry_run=args.dry_run))
    print(render(args.dealer, erased, letters, settings.kafka_dlq_topic, dry_run=args.dry_run, listed=args.list))
    if not erased.matched and not letters:
        print("carsys-ingest erase: nothing matched", file=sys.stderr)
        return 1
    return 0
