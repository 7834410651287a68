"""The Carsys event contract, v1: msgspec Structs for exactly what goes over the wire.

One Kafka record is one event. The key is ``"{dealer_id}/{dms_number}"`` so that all events of one appointment
keep their order on one partition. Unknown fields are ignored (forward compatibility); everything else here
is enforced by ``schemas.decoder.decode`` and published as ``schemas/carsys-event.v1.schema.json``.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Annotated, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1

# Strict on the wire, lenient in the worker: msgspec also accepts e.g. surrounding spaces in a decimal string,
# the published schema asks producers for the plain form.
DECIMAL_PATTERN: Final = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
# The ranges are in the pattern because a timestamp without an offset (Europe/Amsterdam local time) has no JSON
# Schema format: `date-time` is RFC 3339's, which requires the offset. With an offset, `format` checks the calendar.
_DATE_TIME: Final = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
)
_OFFSET: Final = r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
_TIMESTAMP_PATTERN: Final = _DATE_TIME + _OFFSET + "?$"
_OFFSET_TIMESTAMP_PATTERN: Final = _DATE_TIME + _OFFSET + "$"

# The tenant key, and the first half of the record key "{dealer_id}/{dms_number}": ASCII letters and digits, and
# after the first character also '.', '_', '-' and ':'. Never '/' (the key would be ambiguous: "a/b" + "/" + "c" and
# "a" + "/" + "b/c"), whitespace inside or control characters (look-alike tenants; log lines), nor non-ASCII letters
# (the same-looking id in two Unicode forms would be two tenants). Case is kept: ids are opaque. Surrounding spaces,
# tabs and line breaks (fixed-width DMS exports) are accepted, and trimmed by the normaliser; whitespace only is not.
DEALER_ID: Final = r"[A-Za-z0-9][A-Za-z0-9._:-]*"
DEALER_ID_PADDING: Final = " \t\r\n"
_PADDING: Final = r"[ \t\r\n]*"  # DEALER_ID_PADDING, as a regex for both Python and the JSON Schema (ECMA-262)
_DEALER_ID_PATTERN: Final = f"^{_PADDING}{DEALER_ID}{_PADDING}$"
DealerId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=_DEALER_ID_PATTERN,
        description=(
            "The Carsys dealer (tenant): letters, digits and . _ - : (beginning with a letter or digit). "
            "Surrounding whitespace is trimmed."
        ),
    ),
]
EventId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
        description="UUID, unique per event; replaying the same event changes nothing.",
    ),
]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# occurred_at orders changes, so it must carry its offset; the appointment's own timestamps come from DMS
# screens and may be local (Europe/Amsterdam) time.
OffsetTimestamp = Annotated[
    dt.datetime,
    msgspec.Meta(
        tz=True,
        description="RFC 3339 timestamp with offset.",
        extra_json_schema={"pattern": _OFFSET_TIMESTAMP_PATTERN},
    ),
]
Timestamp = Annotated[
    dt.datetime,
    msgspec.Meta(
        description="RFC 3339 timestamp; without an offset it is Europe/Amsterdam local time.",
        extra_json_schema={
            "pattern": _TIMESTAMP_PATTERN,
            "if": {"pattern": _OFFSET + "$"},
            "then": {"format": "date-time"},
        },
    ),
]
# A price arrives as a JSON number or a decimal string; msgspec reads both straight into Decimal, never via
# float. msgspec publishes a Decimal as a string; schemas.decoder.json_schema widens it to number-or-string.
Price = Annotated[
    decimal.Decimal,
    msgspec.Meta(
        description="Price in euros: a JSON number or a decimal string.",
        extra_json_schema={"pattern": DECIMAL_PATTERN},
    ),
]


class Intervention(msgspec.Struct, frozen=True, gc=False):
    """A work item (interventie): title and description, price in euros."""

    title: str
    description: str | None = None
    price: Price | None = None


class Vehicle(msgspec.Struct, frozen=True, gc=False):
    """The vehicle (voertuig). The role ids refer to persons of this event or of an earlier one."""

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


class Person(msgspec.Struct, frozen=True, gc=False):
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


class Appointment(msgspec.Struct, frozen=True, gc=False):
    """An appointment (afspraak) as it is now in the DMS."""

    dms_number: NonEmpty
    created_at: Timestamp
    wo_number: str | None = None
    appointment_at: Timestamp | None = None
    waiting_customer: bool = False
    interventions: tuple[Intervention, ...] = ()
    vehicle: Vehicle | None = None
    persons: tuple[Person, ...] = ()


class DeletedAppointment(msgspec.Struct, frozen=True, gc=False):
    """The appointment was cancelled or removed in the DMS."""

    dms_number: NonEmpty


class _Event(msgspec.Struct, frozen=True, gc=False, tag_field="event_type"):
    event_id: EventId
    schema_version: Literal[1]
    occurred_at: OffsetTimestamp
    dealer_id: DealerId


class AppointmentUpserted(_Event, frozen=True, tag="appointment.upserted"):
    """The appointment was created or changed: the full current state."""

    appointment: Appointment


class AppointmentDeleted(_Event, frozen=True, tag="appointment.deleted"):
    """The appointment was cancelled or removed."""

    appointment: DeletedAppointment


Event = AppointmentUpserted | AppointmentDeleted


# The record key as a pattern (Python and ECMA-262 alike), for the AsyncAPI document and for consumers that check keys:
# a trimmed dealer id, the first '/', a trimmed non-empty DMS number (which may itself hold '/').
KEY_PATTERN: Final = rf"^{DEALER_ID}/\S(?:[\s\S]*\S)?$"


def key_for(dealer_id: str, dms_number: str) -> bytes:
    """The Kafka key of an appointment's events: all of them land on one partition, in order."""
    # The worker knows an appointment by its trimmed ids, so " 42" and "42" must share a partition too.
    return f"{dealer_id.strip(DEALER_ID_PADDING)}/{dms_number.strip()}".encode()


def record_key(event: Event) -> bytes:
    return key_for(event.dealer_id, event.appointment.dms_number)
