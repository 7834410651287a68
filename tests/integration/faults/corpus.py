"""The fault suite's input: a corpus of odd records (each with where it must end up) and generated streams."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dev import samples

BIG = 8 * 1024 * 1024  # records this large are fetched whole (a fetch brings one batch past its size bound)
KIND = "fault.kind"  # header naming the corpus kind of a record (kept in its dead letter, like any header)
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


# --- the corpus of odd records ----------------------------------------------------------------------------------


@dataclass
class Kind:
    """One kind of odd record: where it must end up (``stage`` of its dead letter, or None: stored)."""

    name: str
    value: bytes | None
    stage: str | None
    key: bytes | None = b"poison"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    # (table, key columns -> values, column, value): must be stored exactly so.
    verbatim: list[tuple[str, dict[str, str], str, Any]] = field(default_factory=list)

    def record(self) -> Record:
        return self.key, self.value, [(KIND, self.name.encode()), *self.headers]


def _template(seed: int = 77) -> dict[str, Any]:
    return next(e for e in samples.stream(seed=seed, events=50) if e["event_type"] == "appointment.upserted")


def _fresh(name: str, n: int, seed: int = 77) -> dict[str, Any]:
    """A valid upsert of its own appointment and persons, newer than any generated stream event."""
    event = json.loads(samples.encode(_template(seed)))
    event["event_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fault-corpus/{name}"))
    event["occurred_at"] = (dt.datetime(2030, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n)).isoformat()
    appointment = event["appointment"]
    appointment["dms_number"] = f"X-{name}"
    ids = {p["id"]: f"{name}-{i}" for i, p in enumerate(appointment["persons"])}
    for p in appointment["persons"]:
        p["id"] = ids[p["id"]]
    vehicle = appointment["vehicle"]
    for role in ("driver_id", "owner_id", "contractor_id"):
        if vehicle.get(role):
            vehicle[role] = ids.get(vehicle[role], vehicle[role])
    appointment["interventions"] = [{"title": "Grote beurt", "description": "Olie", "price": "289.00"}]
    return dict(event)


def _enc(event: dict[str, Any]) -> bytes:
    return samples.encode(event)


def _raw_price(event: dict[str, Any], literal: bytes) -> bytes:
    event["appointment"]["interventions"][0]["price"] = 987654321
    return _enc(event).replace(b"987654321", literal, 1)


def _with(name: str, n: int, change: Callable[[dict[str, Any]], Any]) -> bytes:
    event = _fresh(name, n)
    change(event)
    return _enc(event)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = event
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value

    return change


_DROP = object()


def corpus() -> list[Kind]:
    """At least 30 kinds of invalid record, each with its dead-letter stage, plus valid oddities stored verbatim."""
    kinds: list[Kind] = []

    def bad(name: str, stage: str, value: bytes | None, **kw: Any) -> None:
        kinds.append(Kind(name, value, stage, **kw))

    def n() -> int:
        return len(kinds)

    full = _enc(_fresh("template", 0))
    # decode: not UTF-8 JSON at all
    bad("invalid-json", "decode", b'{"event_id": ')
    bad("truncated-json", "decode", full[: len(full) // 2])
    bad("trailing-garbage", "decode", full + b" }")
    bad("invalid-utf8", "decode", full.replace(b'"model":"', b'"model":"\xff\xfe', 1))
    bad("overlong-utf8", "decode", full.replace(b'"model":"', b'"model":"\xc0\xaf', 1))
    bad("lone-surrogate-escape", "decode", full.replace(b'"model":"', b'"model":"\\ud800', 1))
    bad("utf16-encoded", "decode", full.decode().encode("utf-16"))
    bad("empty-value", "decode", b"")
    bad("null-value-tombstone-record", "decode", None)
    bad("byte-order-mark-twice", "decode", b"\xef\xbb\xbf\xef\xbb\xbf" + full)  # one is ignored (ok kinds below)
    bad("nan-literal", "decode", _raw_price(_fresh("nan-literal", n()), b"NaN"))
    bad("infinity-literal", "decode", _raw_price(_fresh("infinity-literal", n()), b"-Infinity"))
    bad("nul-byte", "decode", b"\x00")
    bad("deep-nesting", "decode", full[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}")
    bad("deep-nesting-objects", "decode", full[:-1] + b',"x":' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}")
    # 5 MB: above the broker's default message.max.bytes, so these topics are created with max.message.bytes raised.
    bad("five-megabytes", "decode", b'{"event_id": "' + b"x" * (5 * 1024 * 1024))
    bad("binary-headers", "decode", b"{oops", headers=[("bin", b"\x00\xff\xfe"), ("empty", b""), ("bin", b"dup")])
    # contract: JSON, but not a v1 event
    bad("json-array", "contract", b"[" + full + b"]")
    bad("json-number", "contract", b"42")
    bad("json-string", "contract", b'"appointment.upserted"')
    bad("json-null", "contract", b"null")
    bad("empty-object", "contract", b"{}")
    bad("missing-event-id", "contract", _with("missing-event-id", n(), _set("event_id", _DROP)))
    bad("missing-appointment", "contract", _with("missing-appointment", n(), _set("appointment", _DROP)))
    bad("dealer-id-boolean", "contract", _with("dealer-id-boolean", n(), _set("dealer_id", True)))
    bad("waiting-customer-string", "contract", _with("wc", n(), _set("appointment.waiting_customer", "misschien")))
    bad("unknown-event-type", "contract", _with("uet", n(), _set("event_type", "appointment.exploded")))
    bad("future-schema-version", "contract", _with("fsv", n(), _set("schema_version", 2)))
    # A number beyond float range is refused by the JSON parser itself, before any field is looked at.
    bad(
        "schema-version-1e400",
        "decode",
        _enc(_fresh("sv", n())).replace(b'"schema_version":1', b'"schema_version":1e400'),
    )
    bad(
        "huge-integer",
        "contract",
        _enc(_fresh("hi", n())).replace(b'"waiting_customer":', b'"waiting_customer":' + b"9" * 400 + b',"_":'),
    )
    bad("event-id-not-uuid", "contract", _with("eid", n(), _set("event_id", "not-a-uuid")))
    bad("occurred-at-without-offset", "contract", _with("oao", n(), _set("occurred_at", "2030-01-01T10:00:00")))
    bad("dealer-id-too-long", "contract", _with("dtl", n(), _set("dealer_id", "d" * 65)))
    bad("dealer-id-empty", "contract", _with("die", n(), _set("dealer_id", "")))
    bad("bad-date", "contract", _with("bd", n(), _set("appointment.vehicle.first_registration_date", "12/31/2020")))
    bad("price-nan-string", "contract", _with("pns", n(), _set("appointment.interventions.0.price", "NaN")))
    bad("price-infinity-string", "contract", _with("pis", n(), _set("appointment.interventions.0.price", "Infinity")))
    bad("interventions-not-array", "contract", _with("ina", n(), _set("appointment.interventions", {"title": "x"})))
    bad("person-without-id", "contract", _with("pwi", n(), _set("appointment.persons.0.id", _DROP)))
    bad("person-id-null", "contract", _with("pin", n(), _set("appointment.persons.0.id", None)))
    delete = {"event_id": str(uuid.uuid4()), "event_type": "appointment.deleted", "schema_version": 1}
    delete |= {"occurred_at": "2030-01-01T10:00:00+00:00", "dealer_id": "dealer-000"}
    bad("delete-without-dms-number", "contract", _enc({**delete, "appointment": {}}))
    # normalise: contract-valid, nothing storable
    bad("whitespace-dms-number", "normalise", _with("wdn", n(), _set("appointment.dms_number", "   ")))
    bad("whitespace-person-id", "normalise", _with("wpi", n(), _set("appointment.persons.0.id", " \t ")))

    def duplicate_person(event: dict[str, Any]) -> None:
        event["appointment"]["persons"].append({**event["appointment"]["persons"][0], "city": "Elders"})

    bad("duplicate-person-ids", "normalise", _with("dpi", n(), duplicate_person))
    bad("whitespace-dms-delete", "normalise", _enc({**delete, "appointment": {"dms_number": " "}}))
    bad("placeholder-created-at", "normalise", _with("pca", n(), _set("appointment.created_at", "0001-01-01T00:00:00")))
    bad("placeholder-occurred-at", "normalise", _with("poa", n(), _set("occurred_at", "9999-12-31T23:59:59Z")))
    # write: PostgreSQL refuses the value for good
    bad("price-overflow", "write", _with("po", n(), _set("appointment.interventions.0.price", 10**13)))
    bad("price-1e400", "write", _with("p1e400", n(), _set("appointment.interventions.0.price", "1e400")))
    bad("nul-char-in-text", "write", _with("ncit", n(), _set("appointment.interventions.0.description", "a\x00b")))
    rnd = random.Random(5)
    huge_key = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(20_000))
    bad("dms-number-too-big-for-index", "write", _with("dnt", n(), _set("appointment.dms_number", huge_key)))

    # valid: stored, and exactly as sent where the normaliser has nothing to clean
    def ok(
        name: str,
        event: dict[str, Any],
        verbatim: list[tuple[str, str, Any]],
        *,
        key: bytes | None = None,
        raw: bytes | None = None,
    ) -> None:
        appointment = {"dealer_id": event["dealer_id"], "dms_number": event["appointment"]["dms_number"]}
        checks = []
        for table, column, value in verbatim:
            where = dict(appointment)
            if table == "interventions":
                where["position"] = "0"
            if table == "persons":
                where = {"dealer_id": event["dealer_id"], "person_id": event["appointment"]["persons"][0]["id"]}
            checks.append((table, where, column, value))
        kinds.append(
            Kind(
                name,
                _enc(event) if raw is None else raw,
                None,
                key=key if key is not None else samples.key_of(event),
                verbatim=checks,
            )
        )

    sql = _fresh("sql-looking-strings", n())
    sql["appointment"]["dms_number"] = "1; DROP TABLE interventions; --"
    sql["appointment"]["wo_number"] = "WO1' OR '1'='1"
    sql["appointment"]["interventions"][0] |= {"title": "Robert'); DROP TABLE persons;--", "description": "$1 \\x00 %s"}
    sql["appointment"]["persons"][0] |= {"id": "P1'--", "last_name": "O'Brien\"; DELETE FROM persons; --"}
    sql["appointment"]["vehicle"]["driver_id"] = "P1'--"
    ok("sql-looking-strings", sql, [
        ("appointments", "wo_number", "WO1' OR '1'='1"),
        ("interventions", "title", "Robert'); DROP TABLE persons;--"),
        ("interventions", "description", "$1 \\x00 %s"),
        ("persons", "last_name", "O'Brien\"; DELETE FROM persons; --"),
    ])  # fmt: skip
    ctl = _fresh("control-characters", n())
    ctl["appointment"]["wo_number"] = "WO\x01\x02"
    ctl["appointment"]["interventions"][0]["description"] = "ctl\x01\x07\x1b[31m\x7fend"
    ok("control-characters", ctl, [
        ("appointments", "wo_number", "WO\x01\x02"),
        ("interventions", "description", "ctl\x01\x07\x1b[31m\x7fend"),
    ])  # fmt: skip
    uni = _fresh("unicode", n())
    text = "Ré\u0301paratie 🚗👨‍🔧 שלום مرحبا 修理 \u200d\ufeff"
    uni["appointment"]["interventions"][0]["description"] = text
    # Stored as written but for the invisible byte order mark (the joiners stay; "é" + U+0301 has no composed form).
    ok("unicode", uni, [("interventions", "description", "Ré\u0301paratie 🚗👨\u200d🔧 שלום مرحبا 修理 \u200d")])
    bom = _fresh("byte-order-mark", n())
    ok("byte-order-mark", bom, [("interventions", "title", "Grote beurt")], raw=b"\xef\xbb\xbf" + _enc(bom))
    framed = _fresh("confluent-wire-format", n())  # magic byte 0 and schema id 100 before the JSON
    ok("confluent-wire-format", framed, [("interventions", "title", "Grote beurt")], raw=b"\0\0\0\0d" + _enc(framed))
    quoted = _fresh("json-string-of-the-event", n())  # Spring's JsonSerializer handed a String of JSON
    ok(
        "json-string-of-the-event",
        quoted,
        [("interventions", "title", "Grote beurt")],
        raw=json.dumps(_enc(quoted).decode()).encode(),
    )
    dutch = _fresh("dutch-price", n())
    dutch["appointment"]["interventions"][0]["price"] = "€ 1.234,50"
    ok("dutch-price", dutch, [("interventions", "price", decimal.Decimal("1234.50"))])
    # How producers' serialisers write what the contract spells otherwise (schemas/repairs.py).
    forms = _fresh("producer-forms", n())
    forms["appointment"] |= {"wo_number": 4711, "waiting_customer": "J", "appointment_at": "3-1-2030 9:30"}
    forms["appointment"]["vehicle"] |= {"first_registration_date": 20190301, "apk_due_date": ""}
    forms["appointment"]["interventions"][0]["price"] = ""
    ok("producer-forms", forms, [
        ("appointments", "wo_number", "4711"),
        ("appointments", "waiting_customer", True),
        ("interventions", "price", None),
    ])  # fmt: skip
    nulls = _fresh("null-lists", n())
    nulls["appointment"] |= {"interventions": None, "persons": None, "waiting_customer": None}
    nulls["appointment"]["vehicle"] |= {"driver_id": None, "owner_id": None, "contractor_id": None}
    ok("null-lists", nulls, [("appointments", "waiting_customer", False), ("appointments", "person_ids", [])])
    big = _fresh("huge-string", n())
    big_text = "".join(rnd.choice("abcdefghij") for _ in range(500_000))
    big["appointment"]["interventions"][0]["description"] = big_text
    ok("huge-string", big, [("interventions", "description", big_text)])
    dup_value = _enc(_fresh("duplicate-json-keys", n()))
    dup_value = dup_value.replace(b'"wo_number":', b'"wo_number":"WO-FIRST","wo_number":', 1)
    dup_event = json.loads(dup_value)  # Python's json keeps the last one too
    dup_event["appointment"]["wo_number"] = "WO-LAST"
    dup_value = _enc(dup_event).replace(b'"wo_number":', b'"wo_number":"WO-FIRST","wo_number":', 1)
    kinds.append(Kind("duplicate-json-keys", dup_value, None, key=samples.key_of(dup_event), verbatim=[
        ("appointments", {"dealer_id": dup_event["dealer_id"], "dms_number": "X-duplicate-json-keys"},
         "wo_number", "WO-LAST"),
    ]))  # fmt: skip
    unknown = _fresh("unknown-fields", n())
    unknown |= {"future_field": {"nested": [1, 2, {"deep": None}]}, "trace": "abc"}
    unknown["appointment"]["colour"] = "red"
    ok("unknown-fields", unknown, [("interventions", "title", "Grote beurt")])
    ok("wrong-key", _fresh("wrong-key", n()), [("interventions", "price", 289)], key=b"not/the-right-key")
    null_key = _fresh("null-key", n())
    kinds.append(Kind("null-key", _enc(null_key), None, key=None))
    upper = _fresh("uppercase-undashed-event-id", n())
    upper["event_id"] = upper["event_id"].upper().replace("-", "")
    ok("uppercase-undashed-event-id", upper, [("appointments", "event_id", uuid.UUID(upper["event_id"]))])
    # Placeholder dates: null with a note, never -infinity/infinity; the model expects the nulls too.
    dates = _fresh("extreme-dates", n())
    dates["appointment"]["vehicle"] |= {"first_registration_date": "9999-12-31", "apk_due_date": "0001-01-01"}
    dates["appointment"]["appointment_at"] = "9999-12-30T23:59:59"
    ok("extreme-dates", dates, [("appointments", "appointment_at", None)])
    rounding = _fresh("price-rounding", n())
    rounding["appointment"]["interventions"] = [{"title": "a", "price": 1.005}, {"title": "b", "price": "0.004"}]
    ok("price-rounding", rounding, [("interventions", "price", decimal.Decimal("1.01"))])
    return kinds


# A few kinds sprinkled through every scenario's stream: outages must not add to, nor lose, their letters.
MIXED = ("invalid-json", "null-value-tombstone-record", "missing-event-id", "whitespace-dms-number", "price-overflow")


# --- streams ----------------------------------------------------------------------------------------------------


@dataclass
class Stream:
    records: list[Record]
    valid: list[bytes]  # the values the model is computed from (repeats allowed)
    stages: dict[str, str | None]  # corpus kind -> stage


def scenario_stream(seed: int, events: int, *, poison_every: int = 150) -> Stream:
    """Generated events plus exact replays, late older events and a few invalid records, interleaved."""
    rng = random.Random(seed)
    generated = list(samples.stream(seed=seed, events=events, dealers=4, appointments_per_dealer=max(50, events // 40)))
    kinds = {k.name: k for k in corpus() if k.name in MIXED}
    records: list[Record] = []
    valid: list[bytes] = []
    for i, event in enumerate(generated):
        value = samples.encode(event)
        records.append((samples.key_of(event), value, []))
        valid.append(value)
        if i and i % 37 == 0:
            # An exact replay of an earlier event: a no-op by its event id.
            old = rng.choice(records[: len(records) // 2 + 1])
            if old[2] == []:
                records.append(old)
        if i and i % 41 == 0:
            # A late, older event with its own id: stale for its appointment, maybe not for its persons.
            late = json.loads(samples.encode(rng.choice(generated[: i + 1])))
            late["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            late["occurred_at"] = (dt.datetime.fromisoformat(late["occurred_at"]) - dt.timedelta(hours=1)).isoformat()
            records.append((samples.key_of(late), samples.encode(late), []))
            valid.append(samples.encode(late))
        if i % poison_every == poison_every // 2:
            records.append(kinds[MIXED[(i // poison_every) % len(MIXED)]].record())
    return Stream(records, valid, {k.name: k.stage for k in kinds.values()})
