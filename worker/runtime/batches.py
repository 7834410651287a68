"""Record batches the Kafka client cannot decode: which one, and the one line an operator needs. Pure, no I/O.

aiokafka decompresses a batch (gzip, snappy, lz4, zstd; the last three through cramjam) and checks its CRC while
``getmany`` hands out records. A batch it cannot decode (CRC mismatch: corrupt on disk or in transit; an unknown codec
id; a payload the codec refuses) raises out of ``getmany`` with whatever the codec raised (``CorruptRecordException``,
``UnsupportedCodecError``, ``cramjam.DecompressionError``, ``zlib.error``, ...), naming neither the partition nor the
offset, and drops the good records fetched before it in the same response. Retrying cannot help and it is no server's
fault. ``locate`` finds the partition and the batch's offsets in the fetcher's frame that was decoding it.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

import msgspec

# Kafka's codec ids (the low 3 bits of a batch's attributes).
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

# The aiokafka generator that decodes the batches of one partition (aiokafka/consumer/fetcher.py).
_DECODING_FRAME = "_unpack_records"


class BadBatch(msgspec.Struct, frozen=True, kw_only=True):
    """A record batch that cannot be decoded: offsets ``base_offset`` to ``last_offset`` of one partition."""

    topic: str
    partition: int
    base_offset: int
    last_offset: int
    codec: str
    cause: str


def codec_name(attributes: int) -> str:
    codec = attributes & 0x07
    return CODECS.get(codec, f"unknown codec id {codec}")


def cause_of(exc: BaseException) -> str:
    """What went wrong, from the exception's class and message (codec messages name no record values)."""
    name = type(exc).__name__
    # aiokafka's errors read "[Error 2] CorruptRecordException: Invalid CRC - ..."; keep one class name.
    text = re.sub(r"^\[Error -?\d+\]\s*", "", " ".join(str(exc).split()))[:160]
    if not text or text.startswith(name):
        return text or name
    return f"{name}: {text}"


def locate(exc: BaseException) -> BadBatch | None:
    """The batch whose decoding raised ``exc`` inside ``getmany``; None when ``exc`` did not come from decoding."""
    frame = _decoding_frame(exc.__traceback__)
    if frame is None:
        return None
    tp, batch = frame.get("tp"), frame.get("next_batch")
    if tp is None or batch is None:
        return None
    base = int(batch.base_offset)
    last = base + int(getattr(batch, "last_offset_delta", 0))
    return BadBatch(
        topic=str(tp.topic),
        partition=int(tp.partition),
        base_offset=base,
        last_offset=last,
        codec=codec_name(int(getattr(batch, "attributes", 0))),
        cause=cause_of(exc),
    )


def _decoding_frame(tb: TracebackType | None) -> dict[str, Any] | None:
    while tb is not None:
        if tb.tb_frame.f_code.co_name == _DECODING_FRAME:
            return dict(tb.tb_frame.f_locals)
        tb = tb.tb_next
    return None


def describe(bad: BadBatch) -> str:
    """One line: the cause, where, what the worker does, what the operator does."""
    where = f"{bad.topic}/{bad.partition} offsets {bad.base_offset}-{bad.last_offset}"
    return (
        f"undecodable record batch at {where} (codec {bad.codec}; {bad.cause}): not a server outage, retrying cannot"
        f" help; partition {bad.partition} is held at offset {bad.base_offset}, the other partitions go on. Operator:"
        f" have the producer re-send those records if it can, then run `carsys-ingest skip --partition"
        f" {bad.partition} --offset {bad.base_offset}`"
        " (docs/operations.md: 'Runbook: a record batch that cannot be decoded')"
    )
