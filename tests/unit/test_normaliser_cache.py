"""The snapshot caches of the normaliser return exactly what the uncached rules compute (differential tests)."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dev import samples
from schemas import contract
from schemas.decoder import decode
from tests.unit import real_world_corpus as corpus
from tests.unit.builders import upsert
from worker.errors import NormaliseError
from worker.normalise import model, normaliser
from worker.normalise.normaliser import FAST, UNCACHED, cache_info, clear_caches, normalise
from worker.runtime import tables

PERSON_FIELDS = [f for f in contract.Person.__struct_fields__ if f != "id"]
# Values that exercise every rule: real-world phones and e-mails, placeholders, whitespace, nothing.
VALUES = st.sampled_from(
    [row[1] for row in corpus.PHONES[:40]]
    + [row[0] for row in corpus.EMAILS[:40]]
    + ["", " ", "-", "n.v.t.", "Jan", " de Vries ", "1234ab", "12a", "AMSTERDAM", "Dhr.", "Garage Zuid B.V."]
)
PERSON = st.builds(
    lambda pid, values: {"id": pid, **values},
    st.sampled_from(["P1", "P2", " P3 "]),
    st.fixed_dictionaries({}, optional={field: st.none() | VALUES for field in PERSON_FIELDS}),
)


def _both(event: contract.Event) -> None:
    assert normalise(event, FAST) == normalise(event, UNCACHED)


@settings(max_examples=300)
@given(st.lists(st.lists(PERSON, min_size=1, max_size=3, unique_by=lambda p: p["id"].strip()), min_size=1))
def test_cached_persons_equal_the_rules_across_repeated_and_changed_snapshots(
    events: list[list[dict[str, object]]],
) -> None:
    # The cache is not cleared between examples: entries made by earlier examples must never leak into later ones.
    for persons in events:
        _both(upsert(persons=persons))


def test_a_realistic_stream_hits_the_cache_and_changes_nothing() -> None:
    clear_caches()
    events = samples.stream(seed=5, events=1500, person_change_ratio=samples.REALISTIC_PERSON_CHANGE_RATIO)
    for raw in events:
        _both(decode(msgspec.json.encode(raw)))
    info = cache_info()
    assert info["persons"]["hits"] > 4 * info["persons"]["misses"]
    assert info["vehicles"]["hits"] > 4 * info["vehicles"]["misses"]


def test_a_person_changed_in_one_field_is_normalised_anew() -> None:
    person = {"id": "P1", "mobile_private": "06-12345678"}
    first = normalise(upsert(persons=[person]), FAST)
    second = normalise(upsert(persons=[{**person, "mobile_private": "06-87654321"}]), FAST)
    assert isinstance(first, model.Upsert)
    assert isinstance(second, model.Upsert)
    assert first.appointment.persons[0].mobile_private == "+31612345678"
    assert second.appointment.persons[0].mobile_private == "+31687654321"


def test_an_empty_id_names_its_position_even_when_cached_before() -> None:
    person = {"id": "P1", "first_name": "Jan"}
    normalise(upsert(persons=[person]), FAST)
    with pytest.raises(NormaliseError, match=r"persons\[1\]\.id"):
        normalise(upsert(persons=[person, {"id": "  ", "first_name": "Jan"}]), FAST)


def test_the_caches_are_sized_by_the_setting_and_can_be_turned_off() -> None:
    event = contract.AppointmentUpserted(
        event_id="3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        schema_version=1,
        occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        dealer_id="d",
        appointment=contract.Appointment(
            dms_number="A", created_at=dt.datetime(2026, 1, 1), persons=(contract.Person(id="p", city="utrecht"),)
        ),
    )
    try:
        normaliser.configure_caches(0)
        tables.configure_caches(0)
        for _ in range(3):
            rows = tables.Rows()
            rows.add(normaliser.normalise(event), event)
            rows.persons()
        assert normaliser.cache_info()["persons"] == {"hits": 0, "misses": 3, "size": 0}
        normaliser.configure_caches(10)
        tables.configure_caches(10)
        for _ in range(3):
            rows = tables.Rows()
            rows.add(normaliser.normalise(event), event)
            (row,) = rows.persons()
        assert normaliser.cache_info()["persons"] == {"hits": 2, "misses": 1, "size": 1}
        assert row[[c[0] for c in tables.PERSONS.columns].index("city")] == "Utrecht"
    finally:
        normaliser.configure_caches(normaliser.PERSON_CACHE_SIZE)
        tables.configure_caches(tables.PART_CACHE_SIZE)
