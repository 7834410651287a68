"""carsys-ingest erase (AVG/GDPR) against PostgreSQL filled by a real worker, with a dead letter holding the person."""

from __future__ import annotations

import asyncio
import copy
import io
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from dev import samples
from dev.db import fetch, fetchval
from dev.kafka import produce, read_all
from dev.process import WorkerProcess, worker_env
from dev.waiting import eventually
from tests.conftest import TopicFactory
from worker import cli

pytestmark = pytest.mark.timeout(240)

# Invented, and unlike anything dev.samples generates, so a hit anywhere can only come from these persons.
ERASED_BY_EMAIL = {
    "id": "P-ERASE-1",
    "title": "mevrouw",
    "first_name": "Wilhelmina",
    "last_name": "Zwartkruis-Oosterhout",
    "street": "Zonnebloemhof",
    "house_number": "17 bis",
    "postcode": "8911 xq",
    "city": "LEEUWARDEN",
    "email_private": "  W.Zwartkruis@Example.NL ",
    "phone_private": "058-2134567",
    "mobile_private": "06-39847561",
    "mobile_business": "+31 6 48291736",
}
ERASED_BY_PHONE = {
    "id": "P-ERASE-2",
    "first_name": "Reinoud",
    "last_name": "Klaverblad",
    "mobile_private": "0031 6 1234 5678",
}
ERASED_BY_ID = {"id": "P-ERASE-3", "last_name": "Heemskerkstra", "email_business": "inkoop@heemskerkstra.example"}
# What must not be anywhere afterwards: raw and normalised forms.
TRACES = [
    "P-ERASE-1", "Wilhelmina", "Zwartkruis", "Zonnebloemhof", "8911", "Leeuwarden", "LEEUWARDEN",
    "w.zwartkruis@example.nl", "2134567", "39847561", "48291736",
    "P-ERASE-2", "Reinoud", "Klaverblad", "+31612345678", "P-ERASE-3", "Heemskerkstra",
]  # fmt: skip
# As they arrived: only the source snapshots (sql/005) hold these forms, the rows hold them normalised.
RAW = ["W.Zwartkruis@Example.NL", "058-2134567", "06-39847561", "8911 xq", "0031 6 1234 5678"]


# Free text holding the person: e-mail and phone as typed, the full name; and a last name alone (only reported).
FULL_DESCRIPTION = "Klant W.Zwartkruis@Example.NL belt op 06-39 84 75 61; mevr wilhelmina zwartkruis-oosterhout wacht"
LAST_NAME_DESCRIPTION = "Sleutel afgeven aan Zwartkruis-Oosterhout bij de balie"


def with_description(event: dict[str, Any], description: str) -> dict[str, Any]:
    event["appointment"]["interventions"][0]["description"] = description
    return event


def with_person(event: dict[str, Any], person: dict[str, Any], role: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["event_id"] = str(uuid.uuid4())
    event["appointment"]["persons"] = [*event["appointment"]["persons"], person]
    event["appointment"]["vehicle"][role] = person["id"]
    return event


def stream() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    upserts = [
        e
        for e in samples.stream(seed=71, events=80)
        if e["event_type"] == "appointment.upserted" and e["dealer_id"] == "dealer-000" and e["appointment"]["vehicle"]
    ]
    # One event per appointment and per vehicle, so every injected role link is the newest of its row.
    base: list[dict[str, Any]] = []
    appointments: set[str] = set()
    vehicles: set[str] = set()
    for e in upserts:
        number, vin = e["appointment"]["dms_number"], e["appointment"]["vehicle"]["vin"].replace(" ", "")
        if number not in appointments and vin not in vehicles:
            base.append(e)
            appointments.add(number)
            vehicles.add(vin)
    mine = [
        with_description(with_person(base[0], ERASED_BY_EMAIL, "driver_id"), FULL_DESCRIPTION),
        with_description(with_person(base[1], ERASED_BY_EMAIL, "owner_id"), LAST_NAME_DESCRIPTION),
        with_person(base[2], ERASED_BY_PHONE, "contractor_id"),
        with_person(base[3], ERASED_BY_ID, "owner_id"),
    ]
    future = {**with_person(base[4], ERASED_BY_EMAIL, "driver_id"), "schema_version": 2}
    return [*base[5:], *mine], future


async def dump_all_tables(dsn: str) -> str:
    tables = await fetch(dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    parts = []
    for row in tables:
        name = row["table_name"]
        parts.append(str(await fetchval(dsn, f'SELECT string_agg(t::text, chr(10)) FROM "{name}" t')))
    return "\n".join(parts)


async def erase(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *args: str,
    code: int = 0,
) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["erase", "--dealer", "dealer-000", *args]) == code
    out, err = capsys.readouterr()
    leaked = [t for t in TRACES[1:] if t in out + err and not t.startswith("P-ERASE")]
    assert not leaked, "personal data in the erase output"
    return out


async def test_erase_leaves_no_trace_and_lists_dead_letters(
    kafka_bootstrap: str,
    fresh_database_url: str,
    create_topic: TopicFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=2, dlq=True)
    events, future = stream()
    await produce(kafka_bootstrap, topic, [(samples.key_of(e), samples.encode(e)) for e in [*events, future]])
    env = worker_env(bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        await eventually(lambda: _applied(fresh_database_url, len(events)), timeout_s=90)
        await eventually(lambda: _letters(kafka_bootstrap, f"{topic}.dlq", 1))
    finally:
        assert worker.stop() == 0
    before = await dump_all_tables(fresh_database_url)
    assert all(t in before for t in ("Zwartkruis", "w.zwartkruis@example.nl", "+31612345678", "Heemskerkstra"))
    assert all(t in before for t in RAW), "the scan below must see the source snapshots"
    persons_before = await fetchval(fresh_database_url, "SELECT count(*) FROM persons")

    # Not on a terminal and no --yes: refused, nothing changed.
    await erase(monkeypatch, capsys, env, "--email", " W.ZWARTKRUIS@example.nl", code=2)
    # On a terminal the operator is shown the preview and asked; anything but "yes" erases nothing.
    monkeypatch.setattr(sys, "stdin", Terminal("no\n"))
    out = await erase(monkeypatch, capsys, env, "--email", " W.ZWARTKRUIS@example.nl", code=1)
    assert "would erase (dry run: nothing changed)" in out
    assert "type 'yes' to go ahead" in out
    assert await dump_all_tables(fresh_database_url) == before
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # not a terminal again
    # A dry run reports exactly what the erasure will do, and changes nothing.
    out = await erase(monkeypatch, capsys, env, "--email", " W.ZWARTKRUIS@example.nl", "--dry-run")
    assert "would erase (dry run: nothing changed) from PostgreSQL, dealer dealer-000, person id(s): P-ERASE-1" in out
    assert "persons erased (kept as tombstones without personal data): 1" in out
    assert "(scrubbed): 1" in out
    assert "holding only the last name (reported, not changed): 1" in out
    assert f"dead letters in {topic}.dlq still holding the person: 1" in out
    assert "their coordinates: the same command with --list" in out
    assert await dump_all_tables(fresh_database_url) == before

    out = await erase(monkeypatch, capsys, env, "--email", " W.ZWARTKRUIS@example.nl", "--yes", "--list")
    assert "erased from PostgreSQL, dealer dealer-000, person id(s): P-ERASE-1" in out
    assert "persons erased (kept as tombstones without personal data): 1" in out
    assert "vehicle links cleared: driver 1, owner 1, contractor 0" in out
    assert "appointment links cleared: 2" in out
    assert f"dead letters in {topic}.dlq still holding the person: 1" in out
    assert f"{topic}.dlq/0/0 (yes)" in out
    scrubbed = mine_number(events, FULL_DESCRIPTION)
    assert f"    {scrubbed}/0: email, full_name, phone" in out
    assert f"    {mine_number(events, LAST_NAME_DESCRIPTION)}/0: last_name" in out
    descriptions = {r[0] for r in await fetch(fresh_database_url, "SELECT description FROM interventions")}
    assert "Klant [erased] belt op [erased]; mevr [erased] wacht" in descriptions
    # A last name alone stays until an operator decides (here: it is the data subject; the operator clears it).
    assert LAST_NAME_DESCRIPTION in descriptions
    await fetch(
        fresh_database_url, "UPDATE interventions SET description = NULL WHERE description = $1", LAST_NAME_DESCRIPTION
    )

    out = await erase(monkeypatch, capsys, env, "--phone", "+31 6 12345678", "--yes")
    assert "person id(s): P-ERASE-2" in out
    assert "vehicle links cleared: driver 0, owner 0, contractor 1" in out
    assert "still holding the person: 0" in out
    out = await erase(monkeypatch, capsys, env, "--person-id", "P-ERASE-3", "--yes")
    assert "persons erased (kept as tombstones without personal data): 1" in out

    after = await dump_all_tables(fresh_database_url)
    assert [t for t in TRACES if t in after and not t.startswith("P-ERASE")] == []
    assert [t for t in RAW if t in after] == []
    # No snapshot keeps the person either: theirs are cleared, and no vehicle's links to them (which renormalise
    # would otherwise restore). Only the persons' own tombstones keep the id.
    erased_ids = ["P-ERASE-1", "P-ERASE-2", "P-ERASE-3"]
    snapshots = await fetch(fresh_database_url, "SELECT source::text AS s FROM persons WHERE erased_at IS NOT NULL")
    assert [r["s"] for r in snapshots] == [None, None, None]
    for table in ("persons", "vehicles", "appointments", "interventions"):
        text = str(await fetchval(fresh_database_url, f"SELECT string_agg(t::text, chr(10)) FROM {table} t"))
        assert [i for i in erased_ids if i in text and table != "persons"] == [], table
    # An upgrade later: every row is re-normalised from its snapshot, and nothing of the person comes back.
    for table in ("persons", "vehicles", "appointments"):
        await fetchval(fresh_database_url, f"UPDATE {table} SET normaliser_version = 0 WHERE normaliser_version > 0")
    out = await renormalise(monkeypatch, capsys, env)
    assert "vehicles: 0 read" not in out
    assert [t for t in TRACES + RAW if t in await dump_all_tables(fresh_database_url) and t not in erased_ids] == []
    linked = "SELECT count(*) FROM vehicles WHERE driver_id LIKE 'P-ERASE%' OR owner_id LIKE 'P-ERASE%'"
    assert await fetchval(fresh_database_url, linked) == 0
    # The rows stay as tombstones (the DMS's pseudonymous id, no personal data) so that nothing older revives them.
    assert await fetchval(fresh_database_url, "SELECT count(*) FROM persons") == persons_before
    tombstones = await fetch(fresh_database_url, "SELECT person_id FROM persons WHERE erased_at IS NOT NULL")
    assert sorted(r["person_id"] for r in tombstones) == ["P-ERASE-1", "P-ERASE-2", "P-ERASE-3"]

    # Every event is delivered again (a consumer-group reset): the erased persons do not come back.
    again = {**env, "KAFKA_GROUP_ID": f"{topic}-reset"}
    await fetchval(fresh_database_url, "DELETE FROM applied_events")
    worker = WorkerProcess(again, tmp_path / "worker-again.log").start()
    try:
        await eventually(lambda: _applied(fresh_database_url, len(events)), timeout_s=90)
    finally:
        assert worker.stop() == 0
    assert [t for t in TRACES if t in await dump_all_tables(fresh_database_url) and not t.startswith("P-ERASE")] == []
    # Everything else stays: appointments and vehicles keep their rows, only the links went.
    assert await fetchval(fresh_database_url, "SELECT count(*) FROM appointments") == len(events)

    # Nobody matched: said, and exit 1 (a typo in an id must not look like a done erasure).
    for dry in ([], ["--dry-run"]):
        out = await erase(monkeypatch, capsys, env, "--person-id", "P-NOBODY", "--yes", *dry, code=1)
        assert "persons erased (kept as tombstones without personal data): 0" in out
        assert "still holding the person: 0" in out


async def renormalise(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert await asyncio.to_thread(cli.main, ["renormalise"]) == 0
    out: str = capsys.readouterr().out
    return out


async def test_erase_refuses_what_does_not_normalise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kafka_bootstrap: str, database_url: str
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["erase", "--dealer", "d", "--email", "not-an-address"]) == 2
    assert "--email is not an e-mail address" in capsys.readouterr().err
    assert cli.main(["erase", "--dealer", "d", "--phone", "onbekend"]) == 2


class Terminal(io.StringIO):
    """Standard input as a terminal with the operator's answer typed in."""

    def isatty(self) -> bool:
        return True


def mine_number(events: list[dict[str, Any]], description: str) -> str:
    return next(
        str(e["appointment"]["dms_number"])
        for e in events
        if e["appointment"]["interventions"][0].get("description") == description
    )


async def _applied(dsn: str, n: int) -> bool:
    try:
        return int(await fetchval(dsn, "SELECT count(*) FROM applied_events")) == n
    except Exception:
        return False


async def _letters(bootstrap: str, topic: str, n: int) -> bool:
    return len(await read_all(bootstrap, topic)) >= n
