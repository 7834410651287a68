"""What Claire will store from an event, before publishing it: ``carsys-ingest normalize`` and ``schema``.

The thin stdin/stdout shell around the pure decoder and normaliser.
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from schemas.decoder import schema_text
from worker.errors import ContractError, DecodeError, NormaliseError
from worker.normalise.normaliser import normalise, to_contract_shape
from worker.normalise.records import decode_value
from worker.ops.inputs import documents, read_input


def normalize_command(args: argparse.Namespace) -> int:
    """``carsys-ingest normalize [FILE|-]``: print what Claire will store from each event; exit 1 on any error."""
    try:
        data = read_input(args.file)
    except OSError as exc:
        print(f"carsys-ingest normalize: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    failed = 0
    for where, value in documents(data):
        try:
            out = to_contract_shape(normalise(decode_value(value)))
        except (DecodeError, ContractError, NormaliseError) as exc:
            failed += 1
            print(f"{where}{': ' if where else ''}{type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        sys.stdout.buffer.write(msgspec.json.encode(out) + b"\n")
    return 1 if failed else 0


def schema_command(args: argparse.Namespace) -> int:
    """``carsys-ingest schema``: print the v1 JSON Schema."""
    sys.stdout.write(schema_text())
    return 0
