"""The composition root: the one place that reads the settings, builds the clients and wires them together.

``carsys-ingest run`` -> ``run_command``; ``carsys-ingest init`` -> ``init_command``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from worker import config
from worker.errors import TransientError
from worker.headers import MAX_LETTER_BYTES
from worker.runtime import failures, logs, migrations, retry
from worker.runtime.consumer import Consumer
from worker.runtime.deadletters import DeadLetterProducer
from worker.runtime.health import Health, HealthServer
from worker.runtime.kafka import consumer_options, kafka_options, producer_options
from worker.runtime.metrics import Metrics
from worker.runtime.store import Store

log = structlog.get_logger(__name__)
T = TypeVar("T")


_UNREACHABLE = (OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)


async def _when_database_answers(connect: Callable[[], Awaitable[T]], dsn: str = "") -> T:
    """``connect()``, retried with the retry policy while the database is still starting or unreachable."""
    async for attempt in retry.policy(attempts=30, deadline_s=120, max_backoff_s=5):
        with attempt:
            try:
                return await connect()
            except ssl.SSLError as exc:  # an OSError, but a certificate does not get trusted by waiting
                raise (failures.database_tls_refusal(exc, dsn) or exc) from None
            except _UNREACHABLE as exc:
                raise TransientError(f"database unreachable: {type(exc).__name__}") from None
    raise AssertionError("unreachable: the retry policy re-raises")


async def open_pool(settings: config.Settings) -> asyncpg.Pool:
    return await _when_database_answers(
        lambda: asyncpg.create_pool(
            settings.database_url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            command_timeout=settings.retry_attempt_timeout_s,
        ),
        settings.database_url,
    )


@contextlib.asynccontextmanager
async def _started(*clients: Any) -> AsyncIterator[None]:
    try:
        for client in clients:
            await client.start()
        yield
    finally:
        # Every one: a client that failed to start, or never got to, must still be closed (aiokafka warns otherwise).
        for client in reversed(clients):
            with contextlib.suppress(Exception):
                await client.stop()


async def run(settings: config.Settings) -> None:
    await _schema_ready(settings)
    pool = await open_pool(settings)
    metrics, health = Metrics(), Health(stall_timeout_s=settings.health_stall_timeout_s)
    store = Store(
        pool,
        group_id=settings.kafka_group_id,
        retention_days=settings.applied_event_retention_days,
        # One attempt per call: the consumer's own retry loop waits with its partitions paused and still polling.
        retrying=lambda: retry.policy(attempts=1),
    )
    kafka = AIOKafkaConsumer(**consumer_options(settings))
    producer = AIOKafkaProducer(
        **kafka_options(settings),
        client_id=f"{settings.kafka_client_id}-dlq",
        **producer_options(settings.kafka_dlq_compression),
    )
    consumer = Consumer(
        kafka=kafka,
        store=store,
        dead_letters=DeadLetterProducer(producer, settings.kafka_dlq_topic),
        settings=settings,
        metrics=metrics,
        health=health,
    )

    async def refresh() -> None:
        metrics.pool_size.set(pool.get_size())
        metrics.pool_in_use.set(pool.get_size() - pool.get_idle_size())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(store.ping(), timeout=2)
            health.db_ok()

    server = HealthServer(health, metrics, refresh=refresh)
    try:
        if settings.metrics_port:
            await server.start(settings.metrics_port)
        async with _started(producer, kafka):
            consumer.subscribe()
            log.info("consuming", topic=settings.kafka_topic, group=settings.kafka_group_id)
            await _run_until_signal(consumer, settings.shutdown_timeout_s)
    finally:
        await server.stop()
        await pool.close()
    log.info("stopped")


async def _run_until_signal(consumer: Consumer, shutdown_timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    task = asyncio.create_task(consumer.run())
    waiter = asyncio.create_task(signalled.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # the loop only ends on its own by raising
        return
    log.info("shutting down", timeout_s=shutdown_timeout_s)
    consumer.stop()
    try:
        # The in-flight batch finishes (or is abandoned: an open transaction rolls back), then we leave the group.
        await asyncio.wait_for(task, timeout=shutdown_timeout_s)
    except TimeoutError:
        log.warning("shutdown timeout: in-flight batch cancelled, nothing of it committed")


async def _schema_ready(settings: config.Settings) -> None:
    if settings.migrate_on_start:
        await _migrate_with_retry(settings.database_url)
    else:
        # The runtime role: never DDL, only the read-only check that the owner has migrated.
        await _when_database_answers(lambda: migrations.check_current(settings.database_url), settings.database_url)
        log.info("schema current", migrate_on_start=False)


async def _migrate_with_retry(dsn: str) -> None:
    applied = await _when_database_answers(lambda: migrations.migrate(dsn), dsn)
    log.info("migrations", applied=applied)


def run_command(args: argparse.Namespace) -> int:
    settings = config.from_env()
    logs.configure(settings.log_level, settings.log_format)
    asyncio.run(run(settings))
    return 0


async def create_topics(
    settings: config.Settings, *, partitions: int, dlq_retention_days: int, replication: int
) -> None:
    """Create the event topic and its dead-letter topic; existing topics are left as they are."""
    retention_ms = str(dlq_retention_days * 24 * 3600 * 1000)
    topics = [
        NewTopic(settings.kafka_topic, num_partitions=partitions, replication_factor=replication),
        NewTopic(
            settings.kafka_dlq_topic,
            num_partitions=1,
            replication_factor=replication,
            topic_configs={
                "retention.ms": retention_ms,
                "cleanup.policy": "delete",
                # The broker's default (~1 MB) would refuse the letter of a larger record: the partition would stall.
                "max.message.bytes": str(MAX_LETTER_BYTES),
            },
        ),
    ]
    admin = AIOKafkaAdminClient(**kafka_options(settings), client_id=f"{settings.kafka_client_id}-init")
    await admin.start()
    try:
        for topic in topics:
            try:
                await admin.create_topics([topic])
                log.info("topic created", topic=topic.name, partitions=topic.num_partitions)
            except TopicAlreadyExistsError:
                log.info("topic exists", topic=topic.name)
    finally:
        await admin.close()


def init_command(args: argparse.Namespace) -> int:
    settings = config.from_env()
    logs.configure(settings.log_level, settings.log_format)

    async def init() -> None:
        await create_topics(
            settings,
            partitions=args.partitions,
            dlq_retention_days=args.dlq_retention_days,
            replication=args.replication_factor,
        )
        await _migrate_with_retry(settings.database_url)

    asyncio.run(init())
    return 0
