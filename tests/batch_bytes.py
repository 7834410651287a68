"""Damaging Kafka v2 record batches the ways a batch gets damaged, in memory or in a real broker's segment file.

A broker validates a batch when it is produced (CRC, and it decompresses compressed batches), so a damaged batch
cannot be produced through it; it can only get damaged afterwards (disk, a bug). The broker serves segment bytes as
they are on disk without checking them again, so editing a segment file of the test broker is how a consumer meets
a damaged batch for real.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka.record._crc32c import crc as crc32c

# v2 batch header: baseOffset(8) batchLength(4) leaderEpoch(4) magic(1) crc(4) attributes(2) ...; CRC covers 21..end
CRC_AT, ATTRIBUTES_AT, HEADER_BYTES = 17, 21, 61
Damage = Callable[[bytearray], bytearray]


def fix_crc(raw: bytearray) -> bytearray:
    raw[CRC_AT : CRC_AT + 4] = struct.pack(">I", crc32c(bytes(raw[ATTRIBUTES_AT:])))
    return raw


def flip_bit(raw: bytearray) -> bytearray:
    """Corrupt on disk or in transit: the CRC no longer matches."""
    raw[HEADER_BYTES + 3] ^= 0x10
    return raw


def unknown_codec(raw: bytearray) -> bytearray:
    """A codec id Kafka does not define (6), with a valid CRC."""
    attributes = struct.unpack(">h", raw[ATTRIBUTES_AT : ATTRIBUTES_AT + 2])[0]
    raw[ATTRIBUTES_AT : ATTRIBUTES_AT + 2] = struct.pack(">h", (attributes & ~0x07) | 6)
    return fix_crc(raw)


def garbage_payload(raw: bytearray) -> bytearray:
    """A payload its codec refuses, with a valid CRC."""
    raw[HEADER_BYTES:] = b"\x41" * (len(raw) - HEADER_BYTES)
    return fix_crc(raw)


def batches_in(data: bytes | bytearray) -> Iterator[tuple[int, int, int]]:
    """(position in the file, base offset, total bytes) of every batch in a segment."""
    position = 0
    while position + HEADER_BYTES <= len(data):
        base, length = struct.unpack(">qi", data[position : position + 12])
        yield position, base, 12 + length
        position += 12 + length


def damage_on_disk(log_dirs: list[Path], topic: str, partition: int, base_offset: int, damage: Damage) -> None:
    """Damage the batch starting at ``base_offset`` in the broker's segment file, in place (same length)."""
    segments = [s for d in log_dirs for s in (d / f"{topic}-{partition}").glob("*.log")]
    for segment in segments:
        data = segment.read_bytes()
        for position, base, size in batches_in(data):
            if base == base_offset:
                damaged = damage(bytearray(data[position : position + size]))
                assert len(damaged) == size
                with segment.open("r+b") as f:
                    f.seek(position)
                    f.write(damaged)
                return
    raise AssertionError(f"no batch at {topic}/{partition} offset {base_offset} in {segments}")
