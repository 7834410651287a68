"""schemas/asyncapi.yaml: generated from the code (so it cannot drift), valid for the official AsyncAPI 3.0.0 JSON
Schema, and saying what the worker does: the payload schema judges events as the v1 JSON Schema does, the record keys
the worker asks for match the key pattern, the dead-letter headers it writes match the dead-letter message.

`make asyncapi` (run by .ci/run) also validates the document with the official parser, and checks that the copy of
the official JSON Schema used here is the pinned npm package's (@asyncapi/specs).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dev import asyncapi
from schemas.contract import KEY_PATTERN, key_for
from schemas.decoder import json_schema
from worker.errors import ContractError, DecodeError, NormaliseError, PermanentError, WriteRejected
from worker.headers import MEANINGS, VALUE_OMITTED, letter_headers

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_PATH = ROOT / "schemas" / "asyncapi.yaml"
OFFICIAL = ROOT / "dev" / "asyncapi-tools" / "asyncapi-3.0.0.schema.json"
DOCUMENT: dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
EXAMPLES = sorted((ROOT / "schemas" / "examples").glob("*.json")) + sorted(
    (ROOT / "schemas" / "examples" / "invalid").glob("*.json")
)
FORMATS = jsonschema.FormatChecker()


def _validator_for(component: Any) -> jsonschema.Draft7Validator:
    """A draft-07 validator (what an AsyncAPI 3.0 Schema Object is) for a part of the document, refs resolved in it."""
    root = {"allOf": [component], "components": DOCUMENT["components"]}
    return jsonschema.Draft7Validator(root, format_checker=FORMATS)


def test_the_checked_in_document_is_generated_from_the_code() -> None:
    assert DOCUMENT_PATH.read_text(encoding="utf-8") == asyncapi.text(), (
        "regenerate: .venv/bin/python -m dev.asyncapi > schemas/asyncapi.yaml"
    )


def test_the_document_is_valid_for_the_official_asyncapi_3_0_0_schema() -> None:
    official = json.loads(OFFICIAL.read_text(encoding="utf-8"))
    errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(official).iter_errors(DOCUMENT)]
    assert errors == []


def test_the_official_schema_refuses_a_broken_document() -> None:
    # The check can fail: an operation without its channel, a header schema of an unknown type.
    official = jsonschema.Draft7Validator(json.loads(OFFICIAL.read_text(encoding="utf-8")))
    broken = json.loads(json.dumps(DOCUMENT))
    del broken["operations"]["receiveAppointmentEvents"]["channel"]
    assert not official.is_valid(broken)
    broken = json.loads(json.dumps(DOCUMENT))
    broken["components"]["messages"]["deadLetter"]["headers"]["type"] = "objekt"
    assert not official.is_valid(broken)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_payload_schema_judges_every_example_as_the_json_schema_does(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    payload = DOCUMENT["components"]["messages"]["appointmentEvent"]["payload"]
    published = jsonschema.Draft202012Validator(json_schema(), format_checker=FORMATS)
    assert _validator_for(payload).is_valid(doc) == published.is_valid(doc)


def test_the_message_examples_are_valid_events() -> None:
    message = DOCUMENT["components"]["messages"]["appointmentEvent"]
    validator = _validator_for(message["payload"])
    assert len(message["examples"]) == 3
    for example in message["examples"]:
        validator.validate(example["payload"])


DEALER_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
PADDING = st.text(" \t\r\n", max_size=2)


@given(dealer=DEALER_IDS, dms=st.text(min_size=1, max_size=20).filter(str.strip), pad=PADDING)
def test_every_key_the_contract_asks_for_matches_the_key_pattern(dealer: str, dms: str, pad: str) -> None:
    key = key_for(pad + dealer + pad, f" {dms} ").decode()
    assert re.fullmatch(KEY_PATTERN, key)


@pytest.mark.parametrize("key", ["dealer-x/2025-004711", "d1/1", "Dealer_X.2/A/7", "carsys:12/WO 7"])
def test_keys_as_producers_send_them(key: str) -> None:
    assert re.fullmatch(KEY_PATTERN, key)
    assert _validator_for(_key_schema()).is_valid(key)


@pytest.mark.parametrize("key", ["", "d1", "d1/", "d1/ 1", " d1/1", "d1/1 ", "/1", "dealer x/1", "-d/1"])
def test_keys_that_are_not_the_contracts(key: str) -> None:
    assert not _validator_for(_key_schema()).is_valid(key)


def _key_schema() -> Any:
    return DOCUMENT["components"]["messages"]["appointmentEvent"]["bindings"]["kafka"]["key"]


@dataclass(frozen=True)
class Record:
    value: bytes | None = b"{}"
    topic: str = "carsys.appointments"
    partition: int = 3
    offset: int = 1042
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"d1/1"
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("traceparent", b"00-ab-01")])


ERRORS: list[PermanentError] = [
    DecodeError("not valid JSON (input data was truncated)"),
    ContractError("$.event_id: expected a UUID"),
    NormaliseError("$.appointment.created_at: placeholder timestamp"),
    WriteRejected("value too long (SQLSTATE 22001)", "22001"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_the_headers_the_worker_writes_are_the_dead_letter_messages(error: PermanentError) -> None:
    written = letter_headers(Record(), error, failed_at=dt.datetime.now(dt.UTC), version="0.1.0")
    as_object = {name: value.decode() for name, value in written}
    letter = _validator_for(DOCUMENT["components"]["messages"]["deadLetter"]["headers"])
    letter.validate(as_object)
    assert {name for name in as_object if name.startswith("dlq.")} == set(MEANINGS) - {VALUE_OMITTED}


def test_a_letter_header_of_an_unknown_stage_is_refused() -> None:
    written = letter_headers(Record(), ERRORS[1], failed_at=dt.datetime.now(dt.UTC), version="0.1.0")
    as_object = {name: value.decode() for name, value in written} | {"dlq.stage": "parse"}
    assert not _validator_for(DOCUMENT["components"]["messages"]["deadLetter"]["headers"]).is_valid(as_object)
