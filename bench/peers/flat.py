"""What the peers are fed, from the same corpus as the worker: pure functions, no I/O.

The Debezium JDBC sink writes one row per record into one table; it cannot explode an event into four tables. So
the Connect peer gets each event pre-flattened into its appointment row, as a JsonConverter record with its schema
(``value.converter.schemas.enable=true``), values raw (no normalising), keyed like the original. Quix Streams reads
the original events (bench/peers/quix_app.py does its own flattening, into the four tables).
"""

from __future__ import annotations

from typing import Any

import msgspec

UPSERTED = "appointment.upserted"
Row = dict[str, Any]

# Connect's JSON schema of the flat appointment row: (field, type, optional).
FIELDS = (
    ("dealer_id", "string", False),
    ("dms_number", "string", False),
    ("event_id", "string", False),
    ("event_type", "string", False),
    ("occurred_at", "string", False),
    ("deleted", "boolean", False),
    ("wo_number", "string", True),
    ("appointment_at", "string", True),
    ("created_at", "string", True),
    ("waiting_customer", "boolean", True),
    ("vehicle_key", "string", True),
    ("person_ids", "string", True),
)


def schema(optional_keys: bool = False) -> Row:
    """The record's schema; ``optional_keys`` lets a key field be null (a poison record that passes conversion)."""
    return {
        "type": "struct",
        "name": "carsys.appointment_row",
        "optional": False,
        "fields": [
            {"field": name, "type": kind, "optional": optional or (optional_keys and name == "dms_number")}
            for name, kind, optional in FIELDS
        ],
    }


def appointment_row(event: Row) -> Row:
    """The event's appointment as one flat row, values as they came; a deletion is a row marked deleted."""
    a = event["appointment"]
    row: Row = dict.fromkeys(name for name, _, _ in FIELDS)
    row |= {
        "dealer_id": event["dealer_id"],
        "dms_number": a["dms_number"],
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "occurred_at": event["occurred_at"],
        "deleted": event["event_type"] != UPSERTED,
    }
    if event["event_type"] == UPSERTED:
        vehicle = a["vehicle"]
        row |= {k: a.get(k) for k in ("wo_number", "appointment_at", "created_at", "waiting_customer")}
        row["vehicle_key"] = vehicle.get("vin") or vehicle.get("license_plate")
        row["person_ids"] = ",".join(p["id"] for p in a["persons"])
    return row


def connect_value(event: Row, *, optional_keys: bool = False) -> bytes:
    """The JsonConverter envelope of the event's flat row."""
    return msgspec.json.encode({"schema": schema(optional_keys), "payload": appointment_row(event)})


def rows_of(event: Row) -> int:
    """Rows an event carries into the four tables: its appointment, interventions, vehicle and persons."""
    if event["event_type"] != UPSERTED:
        return 1
    a = event["appointment"]
    return 2 + len(a["interventions"]) + len(a["persons"])
