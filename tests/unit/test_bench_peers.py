"""The peer benchmark's input (bench/peers/flat.py): what the Connect sink is fed must match its declared schema.

The peers themselves need large downloads and are never run by the tests (`make bench-peers` runs them).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from bench.peers import flat
from dev import samples

EVENTS = list(samples.stream(3, events=300))


def _envelope(event: dict[str, Any], **kwargs: bool) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(flat.connect_value(event, **kwargs))
    return decoded


@pytest.mark.parametrize("event", EVENTS[:60])
def test_every_payload_field_is_declared_and_required_ones_are_set(event: dict[str, Any]) -> None:
    envelope = _envelope(event)
    declared = {f["field"]: f for f in envelope["schema"]["fields"]}
    payload = envelope["payload"]
    assert set(payload) == set(declared)
    for name, value in payload.items():
        assert value is not None or declared[name]["optional"], name
        kind = {"string": str, "boolean": bool}[declared[name]["type"]]
        assert value is None or isinstance(value, kind), name


def test_the_row_is_the_events_appointment() -> None:
    for event in EVENTS:
        row = flat.appointment_row(event)
        assert (row["dealer_id"], row["dms_number"]) == (event["dealer_id"], event["appointment"]["dms_number"])
        assert row["deleted"] == (event["event_type"] != flat.UPSERTED)


def test_only_the_poison_schema_lets_the_key_be_null() -> None:
    optional = {f["field"]: f["optional"] for f in flat.schema(optional_keys=True)["fields"]}
    assert optional["dms_number"]
    assert not optional["dealer_id"]
    assert not {f["field"]: f["optional"] for f in flat.schema()["fields"]}["dms_number"]


def test_rows_count_what_the_four_tables_receive() -> None:
    kinds = {e["event_type"] for e in EVENTS}
    assert kinds == {flat.UPSERTED, "appointment.deleted"}
    for event in EVENTS:
        a = event["appointment"]
        expected = 1 if event["event_type"] != flat.UPSERTED else 2 + len(a["interventions"]) + len(a["persons"])
        assert flat.rows_of(event) == expected
