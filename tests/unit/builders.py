"""Contract events for the normaliser's unit tests, built from just the fields a test cares about."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from schemas import contract


def upsert(**appointment: Any) -> contract.AppointmentUpserted:
    """An ``appointment.upserted`` of dealer ``d1``, DMS number ``1``, with these appointment fields on top."""
    body = {"dms_number": "1", "created_at": "2025-03-14T09:20:00+01:00", **appointment}
    return contract.AppointmentUpserted(
        event_id="3F2504E04F8911D39A0C0305E82C3301",
        schema_version=1,
        occurred_at=dt.datetime(2025, 3, 14, 9, 26, tzinfo=dt.UTC),
        dealer_id="d1",
        appointment=msgspec.convert(body, contract.Appointment),
    )
