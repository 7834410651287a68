"""Logging: structlog, JSON lines when stderr is not a terminal (what log shippers want), pretty otherwise.

The standard library's logging (aiokafka, asyncpg, asyncio, warnings) goes through the same processors and renderer
(structlog's ``ProcessorFormatter``), so every line is one JSON object, a traceback included (as the ``exception``
field, never as multi-line text).

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


# A traceback as a structured field; without the frames' local variables, which can hold personal values.
_TRACEBACK_FIELD = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (not when logging was configured): a test harness or a
    tool that swaps it still gets the lines, and no line goes to a stream closed since."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR: Any = _Stderr()
_handler: logging.Handler | None = None
_json_lines = False
_debug = False


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    global _json_lines, _debug
    _json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    _debug = level.upper() == "DEBUG"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if _json_lines else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        scrub,
    ]
    tracebacks: list[structlog.typing.Processor] = [_TRACEBACK_FIELD] if _json_lines else []
    structlog.configure(
        processors=[*shared, *tracebacks, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tracebacks, renderer],
        )
    )


def _route_stdlib(formatter: logging.Formatter) -> None:
    """aiokafka and asyncpg log through the standard library: keep their warnings, rendered like ours."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(_STDERR)
    _handler.setFormatter(formatter)
    root.addHandler(_handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # ResourceWarning & co. as log lines too, not bare text


def json_lines() -> bool:
    """Whether ``configure`` chose JSON lines (the CLI then writes its last word as one too)."""
    return _json_lines


def debug() -> bool:
    return _debug
