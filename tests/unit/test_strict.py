"""Strict mode: fields the v1 contract does not define are reported (``normalize --strict``, ``publish --strict``),
while the worker and the non-strict commands keep ignoring them (compatibility)."""

from __future__ import annotations

import argparse
import copy
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.decoder import decode
from schemas.strict import unknown_fields
from worker.ops.preview import normalize_command
from worker.ops.publisher import prepare

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "schemas" / "examples"
RICH: dict[str, Any] = json.loads((EXAMPLES / "upsert-rich.json").read_text(encoding="utf-8"))
MISSPELT = (EXAMPLES / "invalid" / "dms-number-misspelt.json").read_bytes()


def _encode(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_the_valid_examples_have_no_unknown_fields(path: Path) -> None:
    assert unknown_fields(path.read_bytes()) == []


def test_unknown_fields_everywhere_are_named_by_their_path() -> None:
    doc = copy.deepcopy(RICH)
    doc["source"] = "carsys-2"
    doc["appointment"]["wo_nummer"] = "WO-1"
    doc["appointment"]["vehicle"]["colour"] = "blauw"
    doc["appointment"]["persons"][2]["iban"] = "NL00BANK0123456789"
    doc["appointment"]["interventions"][1]["vat %"] = "21"
    assert sorted(unknown_fields(_encode(doc))) == [
        '$.appointment.interventions[1]["vat %"]',
        "$.appointment.persons[2].iban",
        "$.appointment.vehicle.colour",
        "$.appointment.wo_nummer",
        "$.source",
    ]
    decode(_encode(doc))  # and the decoder still ignores them


def test_unknown_fields_of_a_delete_are_those_of_the_delete() -> None:
    doc = {"event_type": "appointment.deleted", "appointment": {"dms_number": "1", "created_at": "x"}}
    assert unknown_fields(_encode(doc)) == ["$.appointment.created_at"]  # an upsert field, not a delete's


@pytest.mark.parametrize("value", [b"not json", b"[1, 2]", b'{"event_type": "appointment.moved", "x": 1}', b"[" * 5000])
def test_nothing_to_compare_with_is_no_unknown_field(value: bytes) -> None:
    assert unknown_fields(value) == []


NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
PLACES = st.sampled_from(["event", "appointment", "vehicle", "person", "intervention"])


@given(name=NAMES, place=PLACES)
def test_any_added_name_is_reported_exactly_once_at_its_place(name: str, place: str) -> None:
    doc = copy.deepcopy(RICH)
    a = doc["appointment"]
    target, path = {
        "event": (doc, "$"),
        "appointment": (a, "$.appointment"),
        "vehicle": (a["vehicle"], "$.appointment.vehicle"),
        "person": (a["persons"][1], "$.appointment.persons[1]"),
        "intervention": (a["interventions"][0], "$.appointment.interventions[0]"),
    }[place]
    known = name in target or (place == "event" and name == "event_type")
    target.setdefault(name, 0)
    found = unknown_fields(_encode(doc))
    if known:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith(path)
        assert found[0] != path


def _normalize(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], data: bytes, *, strict: bool
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code = normalize_command(argparse.Namespace(file="-", strict=strict))
    out, err = capsys.readouterr()
    return code, out, err


def test_normalize_strict_fails_on_a_misspelt_optional_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = copy.deepcopy(RICH)
    doc["appointment"]["wo_nummer"] = doc["appointment"].pop("wo_number")
    lines = _encode(RICH) + b"\n" + _encode(doc) + b"\n"
    assert _normalize(monkeypatch, capsys, lines, strict=False)[::2] == (0, "")
    code, out, err = _normalize(monkeypatch, capsys, lines, strict=True)
    assert code == 1
    assert len(out.splitlines()) == 2  # the event is still storable, and shown
    assert err == (
        "line 2: unknown field $.appointment.wo_nummer: not in the v1 contract, the worker ignores it (a typo?)\n"
    )


def test_normalize_strict_explains_a_missing_required_field_by_its_misspelling(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _normalize(monkeypatch, capsys, MISSPELT, strict=True)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "ContractError: $.appointment.dms_number: required field is missing",
        "unknown field $.appointment.dms_nummer: not in the v1 contract, the worker ignores it (a typo?)",
    ]


def test_publish_strict_refuses_unknown_fields_and_names_them() -> None:
    doc = copy.deepcopy(RICH)
    doc["appointment"]["vehicle"]["kenteken"] = "70-RP-JJ"
    assert prepare("line 1", _encode(doc)).error is None
    refused = prepare("line 1", _encode(doc), strict=True)
    assert refused.error == (
        "unknown field $.appointment.vehicle.kenteken: not in the v1 contract, the worker ignores it (a typo?)"
    )
    assert refused.key == b"autobedrijf-de-vries/2025-004711"
    assert prepare("line 1", _encode(RICH), strict=True).error is None


def test_unknown_fields_are_found_behind_a_byte_order_mark() -> None:
    doc = copy.deepcopy(RICH)
    doc["appointment"]["dms_nummer"] = "1"
    assert unknown_fields(b"\xef\xbb\xbf" + _encode(doc)) == ["$.appointment.dms_nummer"]


def test_strict_names_the_values_read_only_after_a_repair_one_line_per_kind(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = copy.deepcopy(RICH)
    doc["appointment"]["waiting_customer"] = "ja"
    for person in doc["appointment"]["persons"]:
        person["house_number"] = 12
    code, out, err = _normalize(monkeypatch, capsys, _encode(doc) + b"\n", strict=True)
    assert code == 1
    assert len(out.splitlines()) == 1  # stored, and shown
    assert err.splitlines() == [
        "not the contract's form, read after a repair: "
        "$.appointment.waiting_customer: expected a boolean, got a string",
        "not the contract's form, read after a repair: "
        "$.appointment.persons[0].house_number: expected a string or null, got an integer",
    ]
    assert _normalize(monkeypatch, capsys, _encode(doc) + b"\n", strict=False)[::2] == (0, "")
    assert prepare("line 1", _encode(doc), strict=True).error is not None
    assert prepare("line 1", _encode(RICH), strict=True).error is None
