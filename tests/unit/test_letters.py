"""The pure parts of the dead-letter tooling: filters, de-duplication, summary, redaction, replay plan and headers,
publish keys, erasure matching."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

import msgspec
import pytest

from dev import samples
from worker.ops.erasure import Target, holds
from worker.ops.inputs import documents
from worker.ops.letters import Filters, Letter, Range, parse_range, payload_view, redact, select, summarise, unique
from worker.ops.publisher import fallback_key, prepare
from worker.ops.replay import pace, plan, replay_headers, verdict

EVENT = next(e for e in samples.stream(seed=5, events=20) if e["event_type"] == "appointment.upserted")


def letter(
    offset: int = 0,
    *,
    origin: tuple[str, int, int] | None = ("carsys", 0, 10),
    stage: str = "contract",
    error_class: str = "ContractError",
    failed_at: str = "2026-01-02T03:04:05.000+00:00",
    replays: int = 0,
    key: bytes | None = b"dealer-001/100001",
    value: bytes | None = b"{}",
    extra: tuple[tuple[str, bytes], ...] = (("traceparent", b"00-ab-01"),),
) -> Letter:
    headers: list[tuple[str, bytes]] = list(extra)
    if origin:
        headers += [
            ("dlq.original.topic", origin[0].encode()),
            ("dlq.original.partition", str(origin[1]).encode()),
            ("dlq.original.offset", str(origin[2]).encode()),
        ]
    headers += [
        ("dlq.stage", stage.encode()),
        ("dlq.error.class", error_class.encode()),
        ("dlq.error.message", b"$.x: reason"),
        ("dlq.failed_at", failed_at.encode()),
        ("dlq.replay.count", str(replays).encode()),
    ]
    return Letter(
        topic="carsys.dlq", partition=0, offset=offset, timestamp=0, key=key, value=value, headers=tuple(headers)
    )


def args(**kw: Any) -> argparse.Namespace:
    base = dict(stage=None, error_class=None, dealer=None, since=None, until=None, partition=None, offset=None)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize(
    ("text", "expected"), [("5", Range(5, 5)), ("0-2", Range(0, 2)), ("100-", Range(100, None)), (" 7-7 ", Range(7, 7))]
)
def test_parse_range(text: str, expected: Range) -> None:
    assert parse_range(text, "--offset") == expected


@pytest.mark.parametrize("text", ["", "a", "3-1", "-1", "1-x"])
def test_parse_range_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--offset"):
        parse_range(text, "--offset")


def test_filters_select_by_attributes_time_and_position() -> None:
    letters = [
        letter(0, stage="decode", error_class="DecodeError", failed_at="2026-01-01T00:00:00Z"),
        letter(1, failed_at="2026-01-02T00:00:00Z"),
        letter(2, key=b"dealer-002/1", failed_at="2026-01-03T00:00:00Z"),
        letter(3, failed_at="not a time"),
    ]

    def offsets(**kw: Any) -> list[int]:
        return [x.offset for x in select(letters, Filters.from_args(args(**kw)))]

    assert offsets() == [0, 1, 2, 3]
    assert offsets(stage="contract") == [1, 2, 3]
    assert offsets(error_class="DecodeError") == [0]
    assert offsets(dealer="dealer-002") == [2]
    assert offsets(since="2026-01-02T00:00:00Z") == [1, 2]  # a letter without a time never matches a time filter
    assert offsets(until="2026-01-02T00:00:00+00:00") == [0]
    assert offsets(since="2026-01-02T01:00:00+01:00", until="2026-01-03") == [1]
    assert offsets(offset="1-2") == [1, 2]
    assert offsets(partition="1") == []
    with pytest.raises(ValueError, match="--since"):
        Filters.from_args(args(since="yesterday"))


def test_unique_keeps_the_first_letter_per_original_record() -> None:
    letters = [
        letter(0),
        letter(1),
        letter(2, origin=("carsys", 0, 11)),
        letter(3, origin=None),
        letter(4, origin=None),
    ]
    kept, duplicates = unique(letters)
    assert [x.offset for x in kept] == [0, 2, 3, 4]  # letters without origin are identified by themselves
    assert duplicates == 1


def test_summary_counts_unique_records() -> None:
    letters = [
        letter(0),
        letter(1),  # duplicate of 0
        letter(2, origin=("carsys", 1, 5), stage="write", error_class="WriteRejected", replays=1, key=None),
        letter(3, origin=("carsys", 1, 6), failed_at="2025-12-31T23:00:00Z"),
    ]
    s = summarise(letters, {("carsys", 1, 5)})
    assert (s.letters, s.unique, s.duplicates) == (4, 3, 1)
    assert s.by_stage == {"contract": 2, "write": 1}
    assert s.by_error_class == {"ContractError": 2, "WriteRejected": 1}
    assert s.by_dealer == {"dealer-001": 2, "(no key)": 1}
    assert s.oldest_failure == "2025-12-31T23:00:00+00:00"
    assert s.newest_failure == "2026-01-02T03:04:05+00:00"
    assert (s.replayed, s.failed_after_replay) == (1, 1)
    assert summarise(letters, None).replayed is None


def test_redact_keeps_shape_and_envelope_masks_values() -> None:
    shown = redact(msgspec.json.decode(samples.encode(EVENT)))
    assert shown["event_id"] == EVENT["event_id"]
    assert shown["dealer_id"] == EVENT["dealer_id"]
    assert shown["appointment"]["dms_number"] == EVENT["appointment"]["dms_number"]
    person = shown["appointment"]["persons"][0]
    assert person["last_name"] == "<string>"
    assert person["id"] == "<string>"
    assert shown["appointment"]["waiting_customer"] == "<boolean>"
    assert redact({"dealer_id": "x" * 65, "n": 1.5, "e": "", "z": None}) == {
        "dealer_id": "<string>",
        "n": "<number>",
        "e": "<empty string>",
        "z": None,
    }
    text = msgspec.json.encode(shown).decode()
    for person in EVENT["appointment"]["persons"]:
        assert person["last_name"] not in text


def test_payload_view_of_non_json_and_null() -> None:
    assert payload_view(b"\xff{not json", reveal=False) == "<10 bytes, not JSON>"
    assert payload_view(None, reveal=False) == "<no value (null record)>"
    assert payload_view(b'{"a": "b"}', reveal=True) == {"a": "b"}


def test_replay_headers_keep_originals_and_add_provenance() -> None:
    item = letter(7, replays=2, extra=(("traceparent", b"t"), ("replay.of", b"old/0/1"), ("replay.at", b"old")))
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert replay_headers(item, ("carsys", 0, 10), now) == [
        ("traceparent", b"t"),
        ("dlq.replay.count", b"3"),
        ("replay.of", b"carsys/0/10"),
        ("replay.at", b"2026-03-01T12:00:00.000+00:00"),
    ]


def test_plan_skips_replayed_duplicates_loop_guarded_and_originless() -> None:
    letters = [
        letter(0),
        letter(1),  # duplicate
        letter(2, origin=("carsys", 0, 11)),  # already replayed
        letter(3, origin=("carsys", 0, 12), replays=3),  # loop guard
        letter(4, origin=None),
        letter(5, origin=("carsys", 0, 13)),
    ]
    p = plan(letters, {("carsys", 0, 11)}, max_replays=3, force=False, limit=None)
    assert [x.offset for x in p.to_replay] == [0, 5]
    assert (p.already_replayed, p.duplicates) == (1, 1)
    assert [x.offset for x in p.refused] == [3]
    assert [x.offset for x in p.no_origin] == [4]
    forced = plan(letters, {("carsys", 0, 11)}, max_replays=3, force=True, limit=2)
    assert [x.offset for x in forced.to_replay] == [0, 3]


def test_verdict_uses_the_current_code() -> None:
    assert verdict(letter(0, value=samples.encode(EVENT))).would == "succeed"
    broken = verdict(letter(0, value=b"[]"))
    assert (broken.would, broken.stage, broken.error_class) == ("fail-again", "contract", "ContractError")


def test_pace_spreads_sends_over_time() -> None:
    assert pace(0, 10, started=100.0, now=100.0) == 0
    assert pace(20, 10, started=100.0, now=101.0) == pytest.approx(1.0)
    assert pace(5, 10, started=100.0, now=101.0) == 0


def test_publish_documents_keys_and_reasons() -> None:
    value = samples.encode(EVENT)
    assert documents(value) == [("", value)]
    assert documents(value + b"\n\n" + value) == [("line 1", value), ("line 3", value)]
    # A document saved by a Windows editor: a byte order mark, then JSON over several lines.
    pretty = json.dumps(EVENT, indent=2).encode()
    assert documents(b"\xef\xbb\xbf" + pretty + b"\r\n") == [("", pretty)]
    good = prepare("", value)
    assert (good.key, good.error) == (samples.key_of(EVENT), None)
    bad = prepare("line 2", samples.encode({**EVENT, "schema_version": 2}))
    assert bad.key == samples.key_of(EVENT)
    assert bad.error is not None
    assert bad.error.startswith("ContractError: $.schema_version")
    assert fallback_key(b"[]") is None


def test_erasure_matches_letters_by_id_or_normalised_contact_data() -> None:
    person = EVENT["appointment"]["persons"][0]
    held = letter(0, key=samples.key_of(EVENT), value=samples.encode({**EVENT, "schema_version": 2}))
    dealer = EVENT["dealer_id"]
    assert holds(held, Target(dealer=dealer, ids={person["id"]}, emails=set(), phones=set())) == "yes"
    assert holds(held, Target(dealer="other", ids={person["id"]}, emails=set(), phones=set())) is None
    assert holds(held, Target(dealer=dealer, ids={"P-none"}, emails={"x@example.nl"}, phones={"+31600000000"})) is None
    raw = b'{"persons": [{"id": "P1"' + b"\xff"
    assert holds(letter(0, value=raw), Target(dealer=dealer, ids={"P1"}, emails=set(), phones=set())) == "possibly"
    with_contact = {**EVENT, "appointment": {**EVENT["appointment"], "persons": [
        {"id": "X", "email_private": " Jan.Jansen@Example.NL", "mobile_private": "06-12345678"}]}}  # fmt: skip
    held = letter(0, key=samples.key_of(EVENT), value=samples.encode(with_contact))
    assert holds(held, Target(dealer=dealer, ids=set(), emails={"jan.jansen@example.nl"}, phones=set())) == "yes"
    assert holds(held, Target(dealer=dealer, ids=set(), emails=set(), phones={"+31612345678"})) == "yes"
