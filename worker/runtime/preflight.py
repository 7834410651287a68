"""Start-up checks that a deployment gives the worker what it needs, before it joins its group: the brokers answer,
and the source and dead-letter topics exist and may be described by this principal.

A topic that is missing is a deployment error (exit 3), not something to wait out: the worker would otherwise join,
get nothing, and look healthy for ever (the source topic), or stall a partition at its first bad record (the
dead-letter topic). Read and write rights are enforced by the broker at the first fetch and the first letter; a refusal
there ends the worker the same way (``failures.kafka_failure``).
"""

from __future__ import annotations

import functools
from typing import Any

import structlog
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataRequest

from worker.config import Settings
from worker.runtime import failures
from worker.runtime.kafka import kafka_options

log = structlog.get_logger(__name__)


async def check_kafka(settings: Settings) -> None:
    """Raise UnreachableError (no broker answered within STARTUP_TIMEOUT_S) or DeploymentError (a topic missing or
    refused)."""
    client = AIOKafkaClient(**kafka_options(settings), client_id=f"{settings.kafka_client_id}-preflight")
    translate = functools.partial(failures.kafka_connect_failure, settings=settings)
    try:
        bootstrap = functools.partial(_bootstrap, client, settings)
        await failures.at_startup(bootstrap, translate, budget_s=settings.startup_timeout_s)
        topics = [settings.kafka_topic, settings.kafka_dlq_topic]
        response = await failures.at_startup(
            functools.partial(_metadata, client, topics), translate, budget_s=settings.startup_timeout_s
        )
        failures.check_topics(((entry[0], entry[1]) for entry in response.topics), settings)
    finally:
        await client.close()
    log.info("topics present", topic=settings.kafka_topic, dlq_topic=settings.kafka_dlq_topic)


async def _bootstrap(client: AIOKafkaClient, settings: Settings) -> None:
    try:
        await client.bootstrap()
    except KafkaConnectionError:
        # aiokafka says only "Unable to bootstrap": a refused login or an untrusted certificate is not worth waiting
        # out, so a secured set-up is asked once more, directly, for the cause.
        if settings.kafka_security_protocol != "PLAINTEXT":
            refusal = await failures.probe_kafka_refusal(settings)
            if refusal is not None:
                raise refusal from None
        raise


async def _metadata(client: AIOKafkaClient, topics: list[str]) -> Any:
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker in the cluster metadata")
    # Never auto-create: a broker with auto.create.topics.enable would otherwise hide a misspelt KAFKA_TOPIC.
    return await client.send(node, MetadataRequest(topics, allow_auto_topic_creation=False))
