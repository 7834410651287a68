"""What Claire will store from an event, before publishing it: ``carsys-ingest normalize`` and ``schema``.

The thin stdin/stdout shell around the pure decoder and normaliser.
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from schemas.decoder import schema_text
from schemas.strict import findings
from worker.errors import ContractError, DecodeError, NormaliseError
from worker.normalise.normaliser import normalise, to_contract_shape
from worker.normalise.records import decode_value
from worker.ops.inputs import documents, read_input


def normalize_command(args: argparse.Namespace) -> int:
    """``carsys-ingest normalize [--strict] [FILE|-]``: print what Claire will store from each event; exit 1 on any
    error, and with ``--strict`` also on any field the contract does not define (the worker ignores those)."""
    try:
        data = read_input(args.file)
    except OSError as exc:
        print(f"carsys-ingest normalize: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    strict: bool = getattr(args, "strict", False)
    failed = sum(not _preview(where, value, strict=strict) for where, value in documents(data))
    return 1 if failed else 0


def _preview(where: str, value: bytes, *, strict: bool) -> bool:
    """Print one event as Claire will store it, or why not; whether it passed (with ``strict``: and has no unknown
    fields and no repaired forms)."""
    prefix = f"{where}: " if where else ""
    ok = True
    try:
        out = to_contract_shape(normalise(decode_value(value)))
    except (DecodeError, ContractError, NormaliseError) as exc:
        ok = False
        print(f"{prefix}{type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(msgspec.json.encode(out) + b"\n")
    # After the error: a misspelt required field explains the "required field is missing" above it.
    found = findings(value) if strict else []
    for line in found:
        print(f"{prefix}{line}", file=sys.stderr)
    return ok and not found


def schema_command(args: argparse.Namespace) -> int:
    """``carsys-ingest schema``: print the v1 JSON Schema."""
    sys.stdout.write(schema_text())
    return 0
