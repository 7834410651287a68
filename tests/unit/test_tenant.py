"""Tenant ids (issue 10, part 3): dealer ids are trimmed, and a record key that is not the event's is noticed.

The contract side (which characters, schema and decoder agreeing) is in test_contract.py; the worker counting a
mismatching key through /metrics is tests/integration/test_worker.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.contract import DEALER_ID_PADDING, key_for
from schemas.decoder import decode
from worker.normalise.model import Delete, NormalisedEvent, Upsert
from worker.normalise.normaliser import normalise
from worker.normalise.records import key_mismatch, key_mismatches, split


@dataclass(frozen=True)
class Record:
    value: bytes | None
    key: bytes | None
    offset: int = 0
    topic: str = "carsys.appointments"
    partition: int = 0
    timestamp: int = 1_700_000_000_000
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _value(dealer_id: str = "dealer-x", dms_number: str = "42", *, deleted: bool = False) -> bytes:
    doc: dict[str, Any] = {
        "event_id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "event_type": "appointment.deleted" if deleted else "appointment.upserted",
        "schema_version": 1,
        "occurred_at": "2025-03-14T09:26:00+01:00",
        "dealer_id": dealer_id,
        "appointment": {"dms_number": dms_number}
        if deleted
        else {"dms_number": dms_number, "created_at": "2025-03-14T09:20:00+01:00"},
    }
    return json.dumps(doc).encode()


def _event(dealer_id: str = "dealer-x", dms_number: str = "42", *, deleted: bool = False) -> NormalisedEvent:
    return normalise(decode(_value(dealer_id, dms_number, deleted=deleted)))


@pytest.mark.parametrize("deleted", [False, True])
@pytest.mark.parametrize("dealer_id", [" dealer-x ", "\tdealer-x", "dealer-x\r\n", "dealer-x"])
def test_a_padded_dealer_id_is_the_same_tenant(dealer_id: str, deleted: bool) -> None:
    event = _event(dealer_id, deleted=deleted)
    assert isinstance(event, Delete if deleted else Upsert)
    assert event.dealer_id == "dealer-x"
    assert key_for(dealer_id, " 42 ") == b"dealer-x/42"


@given(
    pad_left=st.text(st.sampled_from(DEALER_ID_PADDING), max_size=3),
    pad_right=st.text(st.sampled_from(DEALER_ID_PADDING), max_size=3),
    core=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,40}\Z"),
)
def test_trimming_leaves_the_core_and_the_canonical_key_always_agrees(pad_left: str, pad_right: str, core: str) -> None:
    event = _event(pad_left + core + pad_right)
    assert event.dealer_id == core
    assert key_mismatch(key_for(pad_left + core + pad_right, "42"), event) is None


@pytest.mark.parametrize("deleted", [False, True])
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"dealer-x/42", None),
        (None, "missing"),
        (b"", "dealer_id"),
        (b"dealer-y/42", "dealer_id"),
        (b" dealer-x /42", "dealer_id"),  # a producer keying by the untrimmed id: still worth knowing
        (b"dealer-x", "dms_number"),  # no separator: the dealer part agrees, the number is missing
        (b"dealer-x/43", "dms_number"),
        (b"dealer-x/ 42", "dms_number"),
        (b"dealer-x/42/", "dms_number"),
        (b"\xff/42", "dealer_id"),
    ],
)
def test_key_mismatch_names_the_part_that_disagrees(key: bytes | None, expected: str | None, deleted: bool) -> None:
    assert key_mismatch(key, _event(" dealer-x", " 42 ", deleted=deleted)) == expected


def test_key_mismatches_pairs_records_and_items_by_offset_and_skips_failures() -> None:
    records = [
        Record(_value(), b"dealer-x/42", offset=0),
        Record(b"not json", None, offset=1),  # dead-lettered: no event to compare with
        Record(_value(dms_number="7"), b"dealer-x/42", offset=2),
        Record(_value(), None, offset=3),
        Record(_value("dealer-y"), b"dealer-x/42", offset=4, partition=1),
    ]
    items, failures = split(records)
    assert [f.record.offset for f in failures] == [1]
    found = key_mismatches(records, items)
    assert [(item.offset.partition, item.offset.offset, part) for item, part in found] == [
        (0, 2, "dms_number"),
        (0, 3, "missing"),
        (1, 4, "dealer_id"),
    ]
