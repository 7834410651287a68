"""The harness itself: a record produced to the real broker is consumed back by a consumer group."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from tests.conftest import TopicFactory


async def test_produced_record_is_consumed_back_by_a_group(kafka_bootstrap: str, create_topic: TopicFactory) -> None:
    topic = await create_topic(partitions=3)
    value = uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=b"dealer-1/42")
    finally:
        await producer.stop()

    group = f"harness-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        got = []
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=500)
            got += [r for records in batch.values() for r in records]
            if got:
                break
        assert [(r.key, r.value, r.partition, r.offset) for r in got] == [(b"dealer-1/42", value, meta.partition, 0)]
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, meta.partition))
    finally:
        await consumer.stop()
    assert committed == 1


async def test_topics_are_not_auto_created(kafka_bootstrap: str) -> None:
    # Topics are created explicitly (by `carsys-ingest init`); a typo in KAFKA_TOPIC must not invent a topic.
    missing = f"missing.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=2000)
    await producer.start()
    try:
        with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
            await producer.send_and_wait(missing, b"x")
        metadata = await producer.client.fetch_all_metadata()
    finally:
        await producer.stop()
    assert missing not in metadata.topics()
