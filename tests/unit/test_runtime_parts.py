"""Pure parts of the runtime: preparing records, dead-letter headers, the retry policy, log scrubbing."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

import pytest
import structlog

from dev import samples
from worker.errors import ContractError, DecodeError, PermanentError, TransientError
from worker.headers import letter_headers, replay_count
from worker.normalise.model import Upsert
from worker.normalise.records import Failure, Item, prepare, split
from worker.runtime import logs, retry


@dataclass(frozen=True)
class Record:
    value: bytes | None
    topic: str = "carsys.appointments"
    partition: int = 2
    offset: int = 41
    timestamp: int = 1_700_000_000_000
    key: bytes | None = b"dealer-001/100001"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


EVENT = next(samples.stream(seed=3, events=1, delete_ratio=0))


def test_a_valid_record_becomes_an_item_with_its_coordinates() -> None:
    prepared = prepare(Record(samples.encode(EVENT)))
    assert isinstance(prepared, Item)
    assert isinstance(prepared.event, Upsert)
    assert (prepared.offset.topic, prepared.offset.partition, prepared.offset.offset) == ("carsys.appointments", 2, 41)


@pytest.mark.parametrize(
    ("value", "error"),
    [(None, DecodeError), (b"", DecodeError), (b"\xff", DecodeError), (b"[1]", ContractError), (b"{}", ContractError)],
)
def test_bad_records_become_failures_with_their_stage(value: bytes | None, error: type[PermanentError]) -> None:
    prepared = prepare(Record(value))
    assert isinstance(prepared, Failure)
    assert type(prepared.error) is error


def test_split_keeps_order_and_loses_nothing() -> None:
    records = [Record(samples.encode(EVENT), offset=i) if i % 3 else Record(b"nope", offset=i) for i in range(9)]
    items, failures = split(records)
    assert [i.offset.offset for i in items] == [1, 2, 4, 5, 7, 8]
    assert [f.record.offset for f in failures] == [0, 3, 6]


def test_letter_headers_keep_the_originals_and_say_why() -> None:
    record = Record(b"x", headers=[("traceparent", b"00-1"), ("dlq.stage", b"old"), ("dlq.replay.count", b"2")])
    at = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    headers = letter_headers(record, ContractError("$.dealer_id: required field is missing"), failed_at=at, version="9")
    as_dict = dict(headers)
    assert headers[0] == ("traceparent", b"00-1")
    assert [k for k, _ in headers].count("dlq.stage") == 1
    assert as_dict["dlq.stage"] == b"contract"
    assert as_dict["dlq.error.class"] == b"ContractError"
    assert as_dict["dlq.error.message"] == b"$.dealer_id: required field is missing"
    assert as_dict["dlq.original.partition"] == b"2"
    assert as_dict["dlq.original.offset"] == b"41"
    assert as_dict["dlq.original.timestamp"] == b"1700000000000"
    assert as_dict["dlq.failed_at"] == b"2026-11-26T12:00:00.000+00:00"
    assert replay_count(headers) == 2  # carried over: the replay tool increments it, the worker keeps it


class Failing:
    """Counts the attempts of a retry policy whose every attempt raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def run(self, policy: object) -> None:
        async for attempt in policy:  # type: ignore[attr-defined]
            with attempt:
                self.calls += 1
                raise self.error


async def test_retry_policy_retries_transient_errors_with_growing_jittered_waits() -> None:
    waits: list[float] = []

    async def record_sleep(seconds: float) -> None:
        waits.append(seconds)

    failing = Failing(TransientError("database down"))
    policy = retry.policy(attempts=6, deadline_s=60, initial_backoff_s=0.1, max_backoff_s=1.0, sleep=record_sleep)
    with pytest.raises(TransientError):
        await failing.run(policy)
    assert failing.calls == 6
    assert len(waits) == 5
    assert all(0 <= w <= 1.0 for w in waits)
    assert len(set(waits)) > 1, "waits must be jittered"


async def test_retry_policy_never_retries_a_permanent_error() -> None:
    failing = Failing(ContractError("$.x: bad"))
    with pytest.raises(ContractError):
        await failing.run(retry.policy(attempts=5))
    assert failing.calls == 1


async def test_retry_policy_stops_at_its_deadline() -> None:
    started = time.monotonic()
    failing = Failing(TransientError("still down"))
    with pytest.raises(TransientError):
        await failing.run(retry.policy(attempts=10_000, deadline_s=0.5, initial_backoff_s=0.05, max_backoff_s=0.1))
    assert time.monotonic() - started < 5
    assert 2 <= failing.calls < 10_000


def test_log_lines_are_json_and_personal_keys_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    structlog.get_logger("t").info("hello", partition=3, email="jan@example.nl", license_plate="70-RP-JJ")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "hello"
    assert line["partition"] == 3
    assert line["email"] == "[redacted]"
    assert line["license_plate"] == "[redacted]"
    assert "jan@example.nl" not in json.dumps(line)


def test_debug_lines_are_filtered_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    structlog.get_logger("t").debug("noise")
    assert "noise" not in capsys.readouterr().err
