"""Realistic, seeded Carsys events: for the demo, the tests, the benchmarks and the DMS producer's own testing.

Values are as messy as real DMS exports (phone numbers with text around them, placeholders, upper-case cities,
plates without dashes). Persons and vehicles are shared across appointments of a dealer, appointments get updates
and deletions, and ``occurred_at`` grows per appointment, so a stream has a well-defined newest state.
All names, numbers and addresses are invented.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec

from schemas.contract import key_for

FIRST = ["Jan", "Anna", "Pieter", "Fatima", "Sanne", "Mohamed", "Lotte", "Kees", "Emma", "Daan", "Sophie", "Bram"]
LAST = ["de Vries", "Jansen", "Bakker", "van Dijk", "El Amrani", "Visser", "Smit", "Meijer", "de Boer", "Mulder"]
COMPANIES = [None, None, None, "Leasemaatschappij Noord B.V.", "Garage Zuid", "Autoverhuur Centrum", "LeasePlan"]
TITLES = ["de heer", "Dhr.", "mevrouw", "Mw.", "mevr", None, "-", "Mr.", "dr."]
STREETS = ["Kerkstraat", "Dorpsstraat", "Stationsweg", "Molenweg", "Schoolstraat", "Industrieweg"]
HOUSE_NUMBERS = ["12", "12a", "7-3", "101 bis", "4 B", "88", "1", "230"]
POSTCODES = ["1234ab", "1234 AB", "9711 LM", "3011AA", "5611 ZZ", "1000", "0123 AB", "1234 SS", "n.v.t."]
CITIES = ["AMSTERDAM", "'S-HERTOGENBOSCH", "den haag", "Utrecht", "EINDHOVEN", "groningen", "Brussel"]
MOBILES = [
    "06-{n8}",
    "+31 6 {n8}",
    "0031 6{n8}",
    "06 {n8} (werk)",
    "+32 470 {n6}",
    "0000000000",
    "-",
    "",
    "06{n8}",
]
PHONES = ["020-{n7}", "010 {n7}", "+31 30 {n7}", "06-{n8}", "onbekend", "033-{n7} toestel 12"]
EMAILS = [
    "{f}.{l}@example.nl",
    "  {F}.{L}@Example.NL ",
    "{f}@voorbeeld.be",
    "n.v.t.",
    "{f}@@example.nl",
    "{f}@münchen.de",
]
FUELS = ["Benzine", "Diesel", "Elektriciteit", "elektrisch", "Hybride", "LPG", "aardgas", "Waterstof", "petrol", "?"]
MAKES = [("Volkswagen", "Golf"), ("Toyota", "Yaris"), ("Kia", "Niro"), ("Peugeot", "208"), ("Tesla", "Model 3")]
PLATES = ["{d2}{L2}{L2}", "{d1}-{L3}-{d2}", "{L3}{d2}{L1}", "{L2}-{d3}-{L1}", "{d2}-{L2}-{L2}"]
PLATE_LETTERS = "BDFGHJKLNPRSTVXZ"  # Dutch plates avoid vowels and look-alikes
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
INTERVENTIONS = [
    ("APK keuring", None, "49.95"),
    ("Grote beurt", "Inclusief olie en filters", "289.00"),
    ("Remblokken voor", "Vervangen", 145.5),
    ("Banden wisselen", None, None),
    ("Airco service", "Bijvullen koudemiddel", "99"),
]


class _Rng:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def digits(self, n: int) -> str:
        return "".join(self.r.choice("0123456789") for _ in range(n))

    def letters(self, n: int) -> str:
        return "".join(self.r.choice(PLATE_LETTERS) for _ in range(n))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def pick(self, options: list[Any]) -> Any:
        return self.r.choice(options)


def _fill(rng: _Rng, template: str, first: str = "", last: str = "") -> str:
    slug = last.lower().replace(" ", "")
    return template.format(
        n8=rng.digits(8), n7=rng.digits(7), n6=rng.digits(6), f=first.lower(), l=slug, F=first, L=slug.upper()
    )


def person(rng: _Rng, person_id: str) -> dict[str, Any]:
    first, last = rng.pick(FIRST), rng.pick(LAST)
    return {
        "id": person_id,
        "company_name": rng.pick(COMPANIES),
        "title": rng.pick(TITLES),
        "first_name": f" {first} " if rng.r.random() < 0.2 else first,
        "last_name": last,
        "street": rng.pick(STREETS),
        "house_number": rng.pick(HOUSE_NUMBERS),
        "postcode": rng.pick(POSTCODES),
        "city": rng.pick(CITIES),
        "email_private": _fill(rng, rng.pick(EMAILS), first, last),
        "phone_private": _fill(rng, rng.pick(PHONES)),
        "mobile_private": _fill(rng, rng.pick(MOBILES)),
        "email_business": _fill(rng, rng.pick(EMAILS), first, last) if rng.r.random() < 0.5 else None,
        "phone_business": _fill(rng, rng.pick(PHONES)) if rng.r.random() < 0.5 else None,
        "mobile_business": _fill(rng, rng.pick(MOBILES)) if rng.r.random() < 0.5 else None,
    }


def vehicle(rng: _Rng, driver: str, owner: str, contractor: str | None) -> dict[str, Any]:
    make, model = rng.pick(MAKES)
    plate = rng.pick(PLATES).format(
        d1=rng.digits(1), d2=rng.digits(2), d3=rng.digits(3), L1=rng.letters(1), L2=rng.letters(2), L3=rng.letters(3)
    )
    vin = "".join(rng.r.choice(VIN_CHARS) for _ in range(17))
    first_reg = dt.date(2010, 1, 1) + dt.timedelta(days=rng.r.randrange(5000))
    return {
        "make": make.upper() if rng.r.random() < 0.3 else make,
        "model": model,
        "license_plate": plate.lower() if rng.r.random() < 0.3 else plate,
        "vin": f"{vin[:3]} {vin[3:9]} {vin[9:]}" if rng.r.random() < 0.2 else vin,
        "fuel": rng.pick(FUELS),
        "first_registration_date": first_reg.isoformat(),
        "apk_due_date": (first_reg + dt.timedelta(days=4 * 365)).isoformat(),
        "driver_id": driver,
        "owner_id": owner,
        "contractor_id": contractor,
    }


class _Dealer:
    """A dealer's shared world: persons and vehicles reused across its appointments."""

    def __init__(self, rng: _Rng, dealer_id: str, n_persons: int, n_vehicles: int) -> None:
        self.id = dealer_id
        self.person_ids = [f"P{rng.digits(6)}" for _ in range(n_persons)]
        # The DMS's current record of each person, sent again with every appointment the person belongs to.
        self.persons: dict[str, dict[str, Any]] = {}
        self.vehicles = []
        for _ in range(n_vehicles):
            driver, owner = rng.pick(self.person_ids), rng.pick(self.person_ids)
            contractor = rng.pick(self.person_ids) if rng.r.random() < 0.3 else None
            self.vehicles.append(vehicle(rng, driver, owner, contractor))


def _snapshot(rng: _Rng, dealer: _Dealer, person_id: str, change_ratio: float) -> dict[str, Any]:
    """The person as this event sends it: a new record with probability ``change_ratio`` (1.0: every event sends a
    fresh one, the most conflicts for the fault suite), else the DMS's current record, byte-identical."""
    if change_ratio >= 1.0 or person_id not in dealer.persons or rng.r.random() < change_ratio:
        dealer.persons[person_id] = person(rng, person_id)
    return dealer.persons[person_id]


def upsert(
    rng: _Rng, dealer: _Dealer, dms_number: str, occurred_at: dt.datetime, person_change_ratio: float = 1.0
) -> dict[str, Any]:
    veh = rng.pick(dealer.vehicles)
    role_ids = sorted({i for i in (veh["driver_id"], veh["owner_id"], veh["contractor_id"]) if i})
    created = occurred_at - dt.timedelta(days=rng.r.randrange(1, 30))
    return {
        "event_id": rng.uuid(),
        "event_type": "appointment.upserted",
        "schema_version": 1,
        "occurred_at": occurred_at.isoformat(),
        "dealer_id": dealer.id,
        "appointment": {
            "dms_number": dms_number,
            "wo_number": f"WO{rng.digits(6)}" if rng.r.random() < 0.8 else None,
            # Carsys sends local times without an offset; the contract reads them as Europe/Amsterdam.
            "appointment_at": (occurred_at + dt.timedelta(days=3)).replace(tzinfo=None, microsecond=0).isoformat(),
            "created_at": created.isoformat(),
            "waiting_customer": rng.r.random() < 0.3,
            "interventions": [
                {"title": t, "description": d, "price": p}
                for t, d, p in rng.r.sample(INTERVENTIONS, rng.r.randrange(1, 4))
            ],
            "vehicle": veh,
            "persons": [_snapshot(rng, dealer, pid, person_change_ratio) for pid in role_ids],
        },
    }


def delete(rng: _Rng, dealer: _Dealer, dms_number: str, occurred_at: dt.datetime) -> dict[str, Any]:
    return {
        "event_id": rng.uuid(),
        "event_type": "appointment.deleted",
        "schema_version": 1,
        "occurred_at": occurred_at.isoformat(),
        "dealer_id": dealer.id,
        "appointment": {"dms_number": dms_number},
    }


def stream(
    seed: int = 1,
    *,
    events: int = 1000,
    dealers: int = 3,
    appointments_per_dealer: int = 100,
    persons_per_dealer: int = 60,
    vehicles_per_dealer: int = 40,
    delete_ratio: float = 0.05,
    person_change_ratio: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """``events`` events over ``dealers`` dealers; each appointment's ``occurred_at`` strictly grows.

    ``person_change_ratio``: how often an event carries a changed record of a person rather than the one sent
    before. 1.0 (the default, what the tests use) makes every person record new; Carsys' real push sends the
    same snapshot again and again, which the benchmarks model with ``REALISTIC_PERSON_CHANGE_RATIO``."""
    rng = _Rng(seed)
    world = [_Dealer(rng, f"dealer-{d:03d}", persons_per_dealer, vehicles_per_dealer) for d in range(dealers)]
    clock = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
    for n in range(events):
        dealer = rng.pick(world)
        dms_number = f"{100000 + rng.r.randrange(appointments_per_dealer)}"
        occurred_at = clock + dt.timedelta(seconds=n)
        if rng.r.random() < delete_ratio:
            yield delete(rng, dealer, dms_number, occurred_at)
        else:
            yield upsert(rng, dealer, dms_number, occurred_at, person_change_ratio)


# An assumption, not a measurement: a person's DMS record (address, numbers, e-mail) changes between two pushes of an
# appointment that carries it in about one event in fifty; vehicles never change (they are fixed per dealer here).
REALISTIC_PERSON_CHANGE_RATIO = 0.02


def key_of(event: dict[str, Any]) -> bytes:
    """The contract's record key of a raw event."""
    return key_for(event["dealer_id"], event["appointment"]["dms_number"])


def encode(event: dict[str, Any]) -> bytes:
    return msgspec.json.encode(event)
