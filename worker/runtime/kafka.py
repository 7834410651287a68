"""Kafka client options shared by every client of the worker and the tools: one place for connection security,
the consumer's group settings and the producers' acknowledgement rules."""

from __future__ import annotations

import ssl
from typing import Any

from worker import config
from worker.headers import MAX_LETTER_BYTES


def kafka_options(settings: config.Settings) -> dict[str, Any]:
    """Connection options shared by every Kafka client (consumer, producers, admin, tools)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options


def consumer_options(settings: config.Settings) -> dict[str, Any]:
    return {
        **kafka_options(settings),
        "group_id": settings.kafka_group_id,
        "client_id": settings.kafka_client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # A producer's aborted transactions are never applied (Kafka clients default to read_uncommitted). An open
        # transaction holds its partitions back until it ends (the producer's transaction.timeout.ms at most).
        "isolation_level": "read_committed",
        # A retry cycle happens between two polls; the group must not evict us during it.
        "max_poll_interval_ms": int(max(300.0, settings.retry_attempt_timeout_s * 3) * 1000),
        # Kafka's default. Not a bound on a record's size: a record batch larger than this is fetched alone. What a
        # fetch brings stays in memory until handed out: 8 MiB per partition cost a draining replica ~50 MiB of RSS,
        # 4 MiB ~26 MiB for ~3% more events/s; that memory buys more as snapshot cache (docs/benchmarks.md).
        "max_partition_fetch_bytes": 1024 * 1024,
        "fetch_max_bytes": 64 * 1024 * 1024,
        # A fetch waits at the broker until data arrives, and no other fetch goes to that broker meanwhile: records
        # of a partition left out of it (its previous records were still being handed out) wait up to this long.
        # 500 ms (aiokafka's default) showed in the latency tail; idle, 50 ms is 20 small requests a second.
        "fetch_max_wait_ms": 50,
    }


def producer_options(compression: str = "none") -> dict[str, Any]:
    # A letter is acknowledged by all in-sync replicas, exactly once per send, before the source offset moves.
    return {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_request_size": MAX_LETTER_BYTES,
        "compression_type": None if compression == "none" else compression,
    }
