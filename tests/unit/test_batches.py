"""Undecodable record batches: locating them from aiokafka's own decoding, and the one line the worker prints.

The batches are real Kafka v2 record batches built and decoded by aiokafka's own code (the same classes the consumer
uses in ``getmany``), then damaged the ways a batch can be damaged: a flipped bit (CRC), an unknown codec id, a
payload its codec refuses. No I/O: the integration test does the same through a real broker.
"""

from __future__ import annotations

import struct

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from tests.batch_bytes import flip_bit, garbage_payload, unknown_codec
from worker.normalise.records import TOMBSTONE, prepare
from worker.runtime import batches

TP = TopicPartition("carsys.appointments", 3)
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def batch(codec: int, base_offset: int, count: int = 4) -> bytearray:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(count):
        builder.append(i, timestamp=1_700_000_000_000, key=b"k", value=b'{"n": %d}' % i * 30, headers=[])
    raw = bytearray(builder.build())
    raw[0:8] = struct.pack(">q", base_offset)
    return raw


def consume(*raw_batches: bytearray) -> tuple[list[int], BaseException | None]:
    """What the consumer's fetcher hands out from these batches, and what it raises."""
    records = PartitionRecords(TP, MemoryRecords(b"".join(raw_batches)), [], 0, None, None, True, READ_UNCOMMITTED)
    offsets: list[int] = []
    try:
        offsets.extend(r.offset for r in records)
    except Exception as exc:
        return offsets, exc
    return offsets, None


@pytest.mark.parametrize("codec", CODECS)
def test_every_kafka_codec_is_decoded(codec: str) -> None:
    offsets, error = consume(batch(CODECS[codec], 0), batch(CODECS[codec], 4))
    assert error is None
    assert offsets == list(range(8))


@pytest.mark.parametrize(
    ("codec", "damage", "cause"),
    [
        ("lz4", flip_bit, "CorruptRecordException"),
        ("zstd", unknown_codec, "UnsupportedCodecError"),
        ("snappy", garbage_payload, ""),
        ("gzip", garbage_payload, ""),
        ("none", flip_bit, "CorruptRecordException"),
    ],
)
def test_a_damaged_batch_is_located_with_its_partition_offsets_and_codec(codec: str, damage, cause: str) -> None:  # type: ignore[no-untyped-def]
    _, error = consume(batch(CODECS[codec], 0), damage(batch(CODECS[codec], 4, count=5)), batch(CODECS[codec], 9))
    assert error is not None
    bad = batches.locate(error)
    assert bad is not None
    expected_codec = "unknown codec id 6" if damage is unknown_codec else codec
    assert (bad.topic, bad.partition, bad.base_offset, bad.last_offset, bad.codec) == (
        TP.topic,
        3,
        4,
        8,
        expected_codec,
    )
    assert bad.cause.startswith(cause or type(error).__name__)


def test_an_error_that_did_not_come_from_decoding_is_not_located() -> None:
    with pytest.raises(ConnectionResetError) as caught:
        raise ConnectionResetError("peer went away")
    assert batches.locate(caught.value) is None


def test_the_line_names_cause_place_what_happens_and_what_to_do() -> None:
    _, error = consume(unknown_codec(batch(CODECS["lz4"], 1042, count=8)))
    assert error is not None
    bad = batches.locate(error)
    assert bad is not None
    line = batches.describe(bad)
    assert "\n" not in line
    assert "carsys.appointments/3 offsets 1042-1049" in line
    assert "UnsupportedCodecError" in line
    assert "not a server outage" in line
    assert "carsys-ingest skip --partition 3 --offset 1042" in line


def test_a_null_value_is_dead_lettered_as_a_tombstone() -> None:
    from tests.unit.test_runtime_parts import Record

    prepared = prepare(Record(None))
    assert not hasattr(prepared, "event")
    assert str(prepared.error) == TOMBSTONE
    assert "tombstone" in TOMBSTONE
    assert prepare(Record(b"")).error.args != (TOMBSTONE,)  # type: ignore[union-attr]


def test_a_command_meeting_a_bad_batch_says_so_instead_of_blaming_a_server(capsys: pytest.CaptureFixture[str]) -> None:
    from worker import cli

    _, error = consume(garbage_payload(batch(CODECS["zstd"], 17)))
    assert isinstance(error, Exception)
    assert cli._report(error) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "carsys.appointments/3 offsets 17-20 (codec zstd;" in err
    assert "unreachable" not in err
