"""Logging: structlog, JSON lines when stderr is not a terminal (what log shippers want), pretty otherwise.

Personal data never reaches a log line by construction (we log coordinates, ids and error classes, not values);
``scrub`` is the belt to those braces: any event key that names a personal field is masked before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PERSONAL_KEYS = frozenset(
    {
        "first_name", "last_name", "name", "company_name", "street", "house_number", "postcode", "city",
        "email", "email_private", "email_business", "phone", "phone_private", "phone_business",
        "mobile", "mobile_private", "mobile_business", "license_plate", "license_plate_key", "vin",
        "value", "payload", "key",
    }
)  # fmt: skip


def scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for field in PERSONAL_KEYS.intersection(event):
        event[field] = "[redacted]"
    return event


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub,
    ]
    if json_lines:
        processors.append(structlog.processors.dict_tracebacks)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # aiokafka and asyncpg log through the standard library: keep their warnings, in the same stream.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
