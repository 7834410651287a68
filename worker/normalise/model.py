"""The canonical (normalised) model: what the normaliser produces and the store writes.

Pure data. Field names follow the contract (schemas.contract) plus the derived fields Claire relies on.
"""

from __future__ import annotations

import datetime as dt
import decimal

import msgspec


class Note(msgspec.Struct, frozen=True, gc=False):
    """What normalisation changed or rejected in one field. Never carries the value itself (AVG/GDPR)."""

    field: str
    rule: str
    action: str


class Person(msgspec.Struct, frozen=True, gc=False):
    id: str
    company_name: str | None = None
    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    street: str | None = None
    house_number: str | None = None
    house_number_addition: str | None = None
    postcode: str | None = None
    city: str | None = None
    email_private: str | None = None
    phone_private: str | None = None
    mobile_private: str | None = None
    email_business: str | None = None
    phone_business: str | None = None
    mobile_business: str | None = None
    preferred_email: str | None = None
    preferred_mobile: str | None = None
    notes: tuple[Note, ...] = ()


class Vehicle(msgspec.Struct, frozen=True, gc=False):
    # vehicle_key identifies the vehicle within a dealer: "vin:<VIN>" when the VIN is valid, else
    # "plate:<license_plate_key>"; None when neither exists (the vehicle is then not stored).
    vehicle_key: str | None = None
    make: str | None = None
    model: str | None = None
    license_plate: str | None = None
    license_plate_key: str | None = None
    vin: str | None = None
    fuel: str | None = None
    first_registration_date: dt.date | None = None
    apk_due_date: dt.date | None = None
    driver_id: str | None = None
    owner_id: str | None = None
    contractor_id: str | None = None
    notes: tuple[Note, ...] = ()


class Intervention(msgspec.Struct, frozen=True, gc=False):
    title: str
    description: str | None = None
    price: decimal.Decimal | None = None


class Appointment(msgspec.Struct, frozen=True, gc=False):
    dms_number: str
    created_at: dt.datetime  # always timezone-aware after normalisation
    wo_number: str | None = None
    appointment_at: dt.datetime | None = None
    waiting_customer: bool = False
    interventions: tuple[Intervention, ...] = ()
    vehicle: Vehicle | None = None
    persons: tuple[Person, ...] = ()
    notes: tuple[Note, ...] = ()


class Upsert(msgspec.Struct, frozen=True, gc=False, tag_field="event_type", tag="appointment.upserted"):
    event_id: str  # canonical lowercase UUID with dashes
    occurred_at: dt.datetime  # timezone-aware
    dealer_id: str
    appointment: Appointment


class Delete(msgspec.Struct, frozen=True, gc=False, tag_field="event_type", tag="appointment.deleted"):
    event_id: str
    occurred_at: dt.datetime
    dealer_id: str
    dms_number: str


NormalisedEvent = Upsert | Delete


def dms_number_of(event: NormalisedEvent) -> str:
    """The appointment an event is about, within its dealer."""
    return event.dms_number if isinstance(event, Delete) else event.appointment.dms_number
