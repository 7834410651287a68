"""The invalid examples in schemas/examples/invalid/: each carries, next to it (``<name>.reason.txt``), the dead-letter
headers the worker writes for it, and a standard JSON Schema validator points at the same field as the worker."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from schemas.decoder import json_schema
from worker.headers import header, letter_headers
from worker.normalise.records import Failure, prepare

ROOT = Path(__file__).resolve().parents[2]
INVALID_DIR = ROOT / "schemas" / "examples" / "invalid"
INVALID = sorted(INVALID_DIR.glob("*.json"))
SHOWN = ("dlq.stage", "dlq.error.class", "dlq.error.message")
VALIDATOR = jsonschema.Draft202012Validator(json_schema(), format_checker=jsonschema.FormatChecker())


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = "carsys.appointments"
    partition: int = 0
    offset: int = 7
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"d1/1"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _worker_reason(example: Path) -> str:
    """What the worker writes into the dead letter of this example, as the ``.reason.txt`` file shows it."""
    prepared = prepare(Record(example.read_bytes()))
    assert isinstance(prepared, Failure), f"{example.name} is accepted by the worker"
    headers = letter_headers(
        prepared.record, prepared.error, failed_at=dt.datetime(2025, 3, 15, tzinfo=dt.UTC), version="test"
    )
    return "".join(f"{name}: {header(headers, name)}\n" for name in SHOWN)


def test_every_file_in_invalid_is_an_example_or_its_reason() -> None:
    files = {p.name for p in INVALID_DIR.iterdir()}
    expected = {p.name for p in INVALID} | {p.with_suffix(".reason.txt").name for p in INVALID}
    assert files == expected


@pytest.mark.parametrize("example", INVALID, ids=lambda p: p.name)
def test_the_reason_next_to_each_example_is_what_the_worker_writes(example: Path) -> None:
    written = example.with_suffix(".reason.txt").read_text(encoding="utf-8")
    assert written == _worker_reason(example), f"update {example.with_suffix('.reason.txt').name}"


def _schema_path(error: jsonschema.ValidationError) -> str:
    # A missing property is reported at its parent object; the worker names the property itself.
    if error.validator == "required":
        required: list[str] = error.validator_value  # type: ignore[assignment]
        present: dict[str, Any] = error.instance  # type: ignore[assignment]
        missing = [name for name in required if name not in present]
        return f"{error.json_path}.{missing[0]}"
    return error.json_path


@pytest.mark.parametrize("example", INVALID, ids=lambda p: p.name)
def test_a_standard_validator_points_at_the_field_the_worker_names(example: Path) -> None:
    doc: Any = json.loads(example.read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(doc))
    assert error is not None, f"{example.name} is valid for the JSON Schema"
    worker_path = _worker_reason(example).split("dlq.error.message: ", 1)[1].split(": ", 1)[0]
    assert _schema_path(error) == worker_path


def test_format_checks_are_what_catch_an_impossible_date() -> None:
    # Why docs/contract.md asks validators to enable format checks: without them, 2025-02-30 passes.
    doc = json.loads((INVALID_DIR / "bad-registration-date.json").read_text(encoding="utf-8"))
    doc["appointment"]["vehicle"]["first_registration_date"] = "2025-02-30"
    assert jsonschema.Draft202012Validator(json_schema()).is_valid(doc)
    error = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(doc))
    assert error is not None
    assert (error.json_path, error.validator) == ("$.appointment.vehicle.first_registration_date", "format")


@pytest.mark.parametrize(
    ("created_at", "valid"),
    [
        ("2025-03-15T16:45:10", True),
        ("2025-03-15T16:45:10+01:00", True),
        ("2025-03-15T16:45:10.25Z", True),
        ("2025-13-15T16:45:10", False),
        ("2025-03-15T24:00:00", False),
        ("2025-02-30T10:00:00+01:00", False),  # only the format check, with an offset, knows February
    ],
)
def test_timestamps_with_and_without_an_offset(created_at: str, valid: bool) -> None:
    doc = json.loads((ROOT / "schemas" / "examples" / "upsert-minimal.json").read_text(encoding="utf-8"))
    doc["appointment"]["created_at"] = created_at
    assert VALIDATOR.is_valid(doc) == valid
