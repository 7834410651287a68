"""Events as a producer hands them to the command line: one JSON document or NDJSON, from a file or stdin."""

from __future__ import annotations

import sys

import msgspec

from schemas.decoder import without_bom


def documents(data: bytes) -> list[tuple[str, bytes]]:
    """``(where, value)`` per event, bytes as given; ``where`` ("line 3", or "" for a single document) prefixes
    error lines."""
    data = without_bom(data)  # a file saved by a Windows editor
    stripped = data.strip()
    if not stripped:
        return []
    try:
        msgspec.json.decode(stripped)
    except msgspec.DecodeError:
        return [(f"line {n}", line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]
    return [("", stripped)]


def read_input(path: str) -> bytes:
    """The bytes of ``path``; ``-`` reads stdin."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()
