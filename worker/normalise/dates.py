"""Date rules: placeholder dates, and timestamps that PostgreSQL stores exactly as ``normalize`` shows them. Pure.

DMSes fill a date field they have no value for with a placeholder, the way users type ``onbekend`` in a text field:
the calendar's ends (.NET's ``default(DateTime)`` is 0001-01-01, "never" is 9999-12-31, 2999-12-31 or 2099-12-31),
or the zero date of the tool that exported the data (1899-12-30 in Delphi and OLE, 1899-12-31 and 1900-01-01 as
Excel's day 0 and day 1, 1753-01-01 in SQL Server). None of these is a real first registration date (the first car
dates from 1886), APK due date (at most a few years ahead) or appointment timestamp, so every date outside
``EARLIEST..LATEST`` is a placeholder, whatever the field.

The window also keeps every stored value exact: the database driver (asyncpg) writes ``date.min``/``date.max`` and
timestamps at UTC 0001-01-01T00:00 / 9999-12-31T23:59:59.999999 as ``-infinity``/``infinity``, and cannot convert a
timestamp whose UTC instant falls outside Python's years 1-9999 at all. Inside the window neither can happen.
"""

from __future__ import annotations

import datetime as dt
from typing import Final, TypeVar

from worker.normalise.text import NO_FIXES, PLACEHOLDER, Fixes

EARLIEST: Final = dt.date(1900, 1, 2)
LATEST: Final = dt.date(2098, 12, 31)
WINDOW: Final = f"{EARLIEST.isoformat()}..{LATEST.isoformat()}"

_MINUTE: Final = dt.timedelta(minutes=1)

D = TypeVar("D", bound=dt.date)


def is_placeholder(day: dt.date) -> bool:
    """Whether a date (for a timestamp: its date as written, in its own offset) is a placeholder."""
    if isinstance(day, dt.datetime):
        day = day.date()
    return not EARLIEST <= day <= LATEST


def clean_date(value: D | None) -> tuple[D | None, Fixes]:
    """An optional date or timestamp: a placeholder becomes null, with the text rules' placeholder note."""
    if value is None or not is_placeholder(value):
        return value, NO_FIXES
    return None, (PLACEHOLDER,)


def whole_minute_offset(value: dt.datetime) -> dt.datetime:
    """The same instant with an offset RFC 3339 can write: whole minutes.

    Amsterdam's mean time, in force until 1937, was +00:19:32; msgspec writes it rounded to +00:20, so ``normalize``
    would show an instant 28 seconds off the stored one. Such a timestamp is given in UTC instead.
    """
    offset = value.utcoffset()
    if offset is None or not offset % _MINUTE:
        return value
    return value.astimezone(dt.UTC)
