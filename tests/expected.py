"""What the database must hold after a stream of raw events: a model computed without the worker's code paths."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from schemas.decoder import decode
from worker import samples
from worker.model import Person, Upsert
from worker.normaliser import normalise


def _order(event: dict[str, Any]) -> tuple[dt.datetime, str]:
    return dt.datetime.fromisoformat(event["occurred_at"]), str(uuid.UUID(event["event_id"]))


def newest_appointments(events: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, bool]]:
    """(dealer_id, dms_number) -> (event_id, deleted) of the newest event per appointment."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        key = (event["dealer_id"], event["appointment"]["dms_number"])
        if key not in newest or _order(event) > _order(newest[key]):
            newest[key] = event
    return {key: (str(uuid.UUID(e["event_id"])), e["event_type"] == "appointment.deleted") for key, e in newest.items()}


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
