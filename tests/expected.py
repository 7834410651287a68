"""Checks shared by the integration tests: the tables against the model, and no personal data in logs."""

from __future__ import annotations

import json
import re
from typing import Any

import asyncpg

from dev import samples
from schemas.decoder import decode
from tests import tables
from worker.normalise.model import Person, Upsert
from worker.normalise.normaliser import normalise


async def assert_tables_match(dsn: str, events: list[dict[str, Any]]) -> None:
    """The four tables and the applied event ids equal tests/tables.py's model of ``events``, row for row."""
    conn = await asyncpg.connect(dsn)
    try:
        actual = await tables.read_tables(conn)
    finally:
        await conn.close()
    tables.assert_tables_equal(tables.expected_state(samples.encode(e) for e in events), actual)


PERSONAL = ("first_name", "last_name", "street", "postcode", "city", "email_private", "email_business",
            "phone_private", "phone_business", "mobile_private", "mobile_business", "preferred_email",
            "preferred_mobile")  # fmt: skip


def personal_values(events: list[dict[str, Any]]) -> set[str]:
    """Every name, address, email, phone, plate and VIN in the events, raw and normalised."""
    values: set[str] = set()
    for event in events:
        appointment = event["appointment"]
        for person in appointment.get("persons", ()):
            values |= {str(person.get(f)) for f in PERSONAL if person.get(f)}
        vehicle = appointment.get("vehicle") or {}
        values |= {vehicle[f] for f in ("license_plate", "vin") if vehicle.get(f)}
        normalised = normalise(decode(samples.encode(event)))
        if isinstance(normalised, Upsert):
            values |= _normalised_values(normalised)
    # Short or generic strings (a city like "Utrecht" is fine to match, "-" or "12" are not personal).
    return {v.strip() for v in values if len(re.sub(r"\W", "", v)) >= 6}


def _normalised_values(event: Upsert) -> set[str]:
    persons: tuple[Person, ...] = event.appointment.persons
    values = {str(getattr(p, f)) for p in persons for f in PERSONAL if getattr(p, f)}
    vehicle = event.appointment.vehicle
    if vehicle:
        values |= {v for v in (vehicle.license_plate, vehicle.license_plate_key, vehicle.vin) if v}
    return values


def assert_no_personal_data(text: str, events: list[dict[str, Any]]) -> None:
    leaked = sorted(v for v in personal_values(events) if v in text)
    assert not leaked, f"{len(leaked)} personal values found in logs/headers"


def assert_no_secrets(text: str, secrets: list[str]) -> None:
    """No password (nor its URL-encoded form) anywhere in ``text``: logs, output, headers, metrics."""
    from urllib.parse import quote

    leaked = [i for i, s in enumerate(secrets) if s in text or quote(s, safe="") in text]
    assert not leaked, f"secret(s) #{leaked} found in the output"  # the index, never the secret itself


def said(line: str) -> str:
    """What a line of the worker's stderr says: the ``event`` of a JSON log line, or the line itself."""
    try:
        return str(json.loads(line).get("event", ""))
    except (ValueError, AttributeError):
        return line


def operator_lines(stderr: str) -> list[str]:
    """The command line's last words (``carsys-ingest: ...``), whether logs are JSON or plain text."""
    return [text for text in map(said, stderr.splitlines()) if text.startswith("carsys-ingest:")]
