"""The Carsys event contract, v1: msgspec Structs for exactly what goes over the wire.

One Kafka record is one event. The key is ``"{dealer_id}/{dms_number}"`` so that all events of one appointment
keep their order on one partition.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Annotated, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1

DealerId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
EventId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Intervention(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A work item (interventie): title and description, price in euros."""

    title: str
    description: str | None = None
    price: decimal.Decimal | None = None


class Vehicle(msgspec.Struct, frozen=True):
    make: str | None = None
    model: str | None = None
    license_plate: str | None = None
    vin: str | None = None
    fuel: str | None = None
    first_registration_date: dt.date | None = None
    apk_due_date: dt.date | None = None
    driver_id: str | None = None
    owner_id: str | None = None
    contractor_id: str | None = None


class Person(msgspec.Struct, frozen=True):
    """A driver, owner or contract holder (bestuurder / eigenaar / contractant)."""

    id: NonEmpty
    company_name: str | None = None
    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    street: str | None = None
    house_number: str | None = None
    postcode: str | None = None
    city: str | None = None
    email_private: str | None = None
    phone_private: str | None = None
    mobile_private: str | None = None
    email_business: str | None = None
    phone_business: str | None = None
    mobile_business: str | None = None


class Appointment(msgspec.Struct, frozen=True):
    dms_number: NonEmpty
    created_at: dt.datetime
    wo_number: str | None = None
    appointment_at: dt.datetime | None = None
    waiting_customer: bool = False
    interventions: tuple[Intervention, ...] = ()
    vehicle: Vehicle | None = None
    persons: tuple[Person, ...] = ()


class DeletedAppointment(msgspec.Struct, frozen=True):
    dms_number: NonEmpty


class _Event(msgspec.Struct, frozen=True, tag_field="event_type"):
    event_id: EventId
    schema_version: int
    occurred_at: dt.datetime
    dealer_id: DealerId


class AppointmentUpserted(_Event, frozen=True, tag="appointment.upserted"):
    appointment: Appointment


class AppointmentDeleted(_Event, frozen=True, tag="appointment.deleted"):
    appointment: DeletedAppointment


Event = AppointmentUpserted | AppointmentDeleted


def record_key(event: Event) -> bytes:
    """The Kafka key of an event: all events of one appointment land on one partition, in order."""
    return f"{event.dealer_id}/{event.appointment.dms_number}".encode()
