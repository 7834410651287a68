"""The versioning policy of docs/contract.md, as far as code can hold it: v1 only grows (no field removed, nothing
newly required), and an event of a later version is a contract dead letter today, with a reason that says so,
which `dlq replay --stage contract` can replay once a worker that reads it is deployed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from schemas.decoder import json_schema
from worker.normalise.records import Failure, prepare
from worker.ops.letters import Letter
from worker.ops.replay import verdict

ROOT = Path(__file__).resolve().parents[2]
V2_REASON = "$.schema_version: unsupported schema version (this worker reads version 1)"

# v1 as released: every definition's fields (which may grow) and its required ones (which may not).
V1_FIELDS: dict[str, set[str]] = {
    "AppointmentUpserted": {"event_type", "event_id", "schema_version", "occurred_at", "dealer_id", "appointment"},
    "AppointmentDeleted": {"event_type", "event_id", "schema_version", "occurred_at", "dealer_id", "appointment"},
    "Appointment": {
        "dms_number",
        "created_at",
        "wo_number",
        "appointment_at",
        "waiting_customer",
        "interventions",
        "vehicle",
        "persons",
    },
    "DeletedAppointment": {"dms_number"},
    "Intervention": {"title", "description", "price"},
    "Vehicle": {
        "make",
        "model",
        "license_plate",
        "vin",
        "fuel",
        "first_registration_date",
        "apk_due_date",
        "driver_id",
        "owner_id",
        "contractor_id",
    },
    "Person": {
        "id",
        "company_name",
        "title",
        "first_name",
        "last_name",
        "street",
        "house_number",
        "postcode",
        "city",
        "email_private",
        "phone_private",
        "mobile_private",
        "email_business",
        "phone_business",
        "mobile_business",
    },
}
V1_REQUIRED: dict[str, set[str]] = {
    "AppointmentUpserted": {"event_type", "event_id", "schema_version", "occurred_at", "dealer_id", "appointment"},
    "AppointmentDeleted": {"event_type", "event_id", "schema_version", "occurred_at", "dealer_id", "appointment"},
    "Appointment": {"dms_number", "created_at"},
    "DeletedAppointment": {"dms_number"},
    "Intervention": {"title"},
    "Vehicle": set(),
    "Person": {"id"},
}


@pytest.mark.parametrize("name", sorted(V1_FIELDS))
def test_v1_only_grows(name: str) -> None:
    definition = json_schema()["$defs"][name]
    assert V1_FIELDS[name] <= set(definition["properties"]), "removing or renaming a field is a v2 change"
    assert set(definition["required"]) == V1_REQUIRED[name], "a newly required field is a v2 change"


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = "carsys.appointments"
    partition: int = 1
    offset: int = 9
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"d1/1"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _v2_events() -> list[dict[str, Any]]:
    v1 = json.loads((ROOT / "schemas" / "examples" / "upsert-rich.json").read_text(encoding="utf-8"))
    reshaped = {
        "event_id": v1["event_id"],
        "event_type": "appointment.rescheduled",
        "schema_version": 2,
        "occurred_at": v1["occurred_at"],
        "tenant": {"dealer_id": v1["dealer_id"]},
        "data": {"dms_number": "1", "appointment_at": "2025-03-20T09:00:00+01:00"},
    }
    return [{**v1, "schema_version": 2}, reshaped, {"schema_version": 2}]


@pytest.mark.parametrize("event", _v2_events(), ids=["v1-shaped", "reshaped", "version-only"])
def test_a_v2_event_is_a_contract_dead_letter_today_whatever_its_shape(event: dict[str, Any]) -> None:
    prepared = prepare(Record(json.dumps(event).encode()))
    assert isinstance(prepared, Failure)
    assert (prepared.error.stage, type(prepared.error).__name__) == ("contract", "ContractError")
    assert str(prepared.error) == V2_REASON


def test_before_the_upgrade_a_replay_dry_run_says_it_would_fail_again_and_why() -> None:
    value = json.dumps(_v2_events()[1]).encode()
    origin = (("dlq.original.topic", b"carsys.appointments"), ("dlq.original.partition", b"1"))
    letter = Letter(
        topic="carsys.appointments.dlq",
        partition=0,
        offset=3,
        timestamp=1_700_000_000_000,
        key=b"d1/1",
        value=value,
        headers=(*origin, ("dlq.original.offset", b"9"), ("dlq.stage", b"contract")),
    )
    found = verdict(letter)
    assert (found.would, found.stage, found.reason) == ("fail-again", "contract", V2_REASON)
