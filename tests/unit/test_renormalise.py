"""The pure parts of source snapshots and renormalise: encoding, row building, change attribution, the report."""

from __future__ import annotations

import datetime as dt
import decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from schemas import contract
from worker.normalise.normaliser import normalise
from worker.normalise.version import NORMALISER_VERSION
from worker.ops.renormalise import Tally, changes, report
from worker.runtime.tables import PERSONS, VEHICLES, Rows, appointment_source, encode_source

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
TEXT = st.one_of(st.none(), st.text(max_size=20))


@given(st.builds(contract.Person, id=st.text(min_size=1, max_size=8), first_name=TEXT, email_private=TEXT, city=TEXT))
def test_a_person_snapshot_decodes_to_what_arrived(person: contract.Person) -> None:
    decoded = msgspec.json.decode(encode_source(person), type=contract.Person)
    if any("\x00" in (v or "") for v in msgspec.structs.astuple(person)):
        assert not any("\x00" in (v or "") for v in msgspec.structs.astuple(decoded))  # U+0000 kept as U+FFFD
    else:
        assert decoded == person


def test_nul_is_kept_as_a_replacement_character_only_in_the_snapshot() -> None:
    snapshot = encode_source(contract.Person(id="p", first_name="Jan\x00Geheim"))
    assert "\\u0000" not in snapshot
    assert msgspec.json.decode(snapshot)["first_name"] == "Jan\ufffdGeheim"


def _event() -> contract.AppointmentUpserted:
    return contract.AppointmentUpserted(
        event_id="6f1c1c2e-7d3c-4b7a-9a51-0d6e2f0c9a11",
        schema_version=1,
        occurred_at=T0,
        dealer_id=" dealer-1 ",
        appointment=contract.Appointment(
            dms_number="42",
            created_at=dt.datetime(2026, 2, 1, 10, 0),  # local time, as Carsys sends it
            interventions=(contract.Intervention("APK", price=decimal.Decimal("45.5")),),
            vehicle=contract.Vehicle(license_plate="12-abc-3", driver_id=" P2 "),
            persons=(
                contract.Person(id="P1", email_private=" Jan@Example.NL "),
                contract.Person(id="P2", mobile_private="06-12345678"),
            ),
        ),
    )


def test_each_row_gets_its_own_part_of_the_event_as_it_arrived() -> None:
    source = _event()
    rows = Rows()
    rows.add(normalise(source), source)
    names = [c[0] for c in PERSONS.columns]
    for row in rows.persons():
        pid = row[names.index("person_id")]
        snapshot = msgspec.json.decode(row[names.index("source")], type=contract.Person)
        assert snapshot == next(p for p in source.appointment.persons if p.id == pid)
        assert row[names.index("normaliser_version")] == NORMALISER_VERSION
    (vrow,) = rows.vehicles()
    vehicle = msgspec.json.decode(vrow[[c[0] for c in VEHICLES.columns].index("source")], type=contract.Vehicle)
    assert vehicle.driver_id == " P2 "  # the link as it arrived
    assert vehicle == source.appointment.vehicle
    (arow,) = rows.appointments()
    appointment = msgspec.json.decode(appointment_source(source.appointment), type=contract.Appointment)
    assert appointment.persons == ()  # the persons have rows (and snapshots) of their own: erasure stays exact
    assert appointment.vehicle is None
    assert appointment.interventions == source.appointment.interventions
    assert appointment.created_at == source.appointment.created_at  # still without an offset
    assert appointment_source(source.appointment) in arow


def test_a_changed_field_is_counted_under_the_rules_noted_for_it_by_either_version() -> None:
    old = {"email_private": None, "preferred_email": None, "city": "Utrecht"}
    new = {"email_private": "jan@example.nl", "preferred_email": "jan@example.nl", "city": "Utrecht"}
    old_notes = [{"field": "email_private", "rule": "email", "action": "rejected"}]
    found = changes(old, new, old_notes, [])
    assert found == [("email_private", "email"), ("preferred_email", "email")]  # derived from email_*
    assert changes(new, new, old_notes, old_notes) == []


def test_a_change_of_notes_alone_is_counted_by_the_note() -> None:
    same = {"city": "Utrecht"}
    old_notes = [{"field": "city", "rule": "case", "action": "title_cased"}]
    assert changes(same, same, old_notes, []) == [("city", "case (note only)")]
    assert changes(same, same, [], old_notes) == [("city", "case (note only)")]


def test_the_report_holds_counts_fields_and_rules() -> None:
    tally = Tally(read=10, changed=2, unchanged=7, superseded=1, skipped={"refused": 1})
    tally.changes[("email_private", "email")] = 2
    text = report({"persons": tally}, dry_run=False, version=3)
    assert "normaliser version 3" in text
    assert "persons: 10 read, changed 2, unchanged 7, superseded by a newer event 1, left alone: refused 1" in text
    assert "  email_private (email): 2" in text
    assert "would change 2" in report({"persons": tally}, dry_run=True, version=3)
