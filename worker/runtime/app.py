"""The composition root: the one place that reads the settings, builds the clients and wires them together.

``carsys-ingest run`` -> ``run_command``; ``carsys-ingest init`` -> ``init_command``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import signal
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from worker import config
from worker.headers import MAX_LETTER_BYTES
from worker.normalise import normaliser
from worker.runtime import failures, logs, migrations, preflight, retry, tables
from worker.runtime.consumer import Consumer
from worker.runtime.deadletters import DeadLetterProducer
from worker.runtime.health import Health, HealthServer
from worker.runtime.kafka import consumer_options, kafka_options, producer_options
from worker.runtime.metrics import Metrics
from worker.runtime.store import Store

log = structlog.get_logger(__name__)


# Lag, pool gauges, the database check and topic presence are refreshed this often even when nobody scrapes, so that
# readiness and the gauges never rest on a stale answer (and on every scrape or probe as well).
_REFRESH_S = 5.0
_REFRESH_TIMEOUT_S = 2.0

# The cyclic garbage collector took ~30% of the worker's CPU at the default thresholds (measured with gc.callbacks,
# docs/benchmarks.md#garbage-collection): a batch allocates some 100,000 container objects that reference counting
# frees, yet every 700 net allocations started a collection walking everything alive. The young generation is now
# collected after 50,000 net allocations and the objects made at start-up are left out of every collection;
# reference cycles are still collected, a little later.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a released connection gets instead of asyncpg's reset query (a round trip per batch, ~0.2 ms): the
    store's connections hold no session state to undo (no SET, LISTEN, cursor or session-level advisory lock; its
    temporary staging tables are meant to stay). An open transaction is still ended by asyncpg first."""


async def open_pool(settings: config.Settings) -> asyncpg.Pool:
    """The pool, once PostgreSQL answers (waited for up to ``STARTUP_TIMEOUT_S``)."""
    return await failures.at_startup(
        lambda: asyncpg.create_pool(
            settings.database_url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            command_timeout=settings.retry_attempt_timeout_s,
            reset=_keep_session,
        ),
        functools.partial(failures.database_failure, dsn=settings.database_url),
        budget_s=settings.startup_timeout_s,
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


class _Live:
    """What exists of the worker so far: the refresh (a timer, and each scrape) uses what is there, as start-up builds
    it in steps."""

    def __init__(self, settings: config.Settings, metrics: Metrics, health: Health) -> None:
        self.settings, self.metrics, self.health = settings, metrics, health
        self.pool: asyncpg.Pool | None = None
        self.store: Store | None = None
        self.consumer: Consumer | None = None

    async def refresh(self) -> None:
        if self.pool is not None:
            self.metrics.pool_size.set(self.pool.get_size())
            self.metrics.pool_in_use.set(self.pool.get_size() - self.pool.get_idle_size())
        if self.store is not None and await self._quietly("database check", self.store.ping()):
            self.health.db_ok()
        if self.consumer is not None:
            self.health.topics_ok = self.consumer.topic_known()
            await self._quietly("lag refresh", self.consumer.refresh_lag())

    async def _quietly(self, what: str, step: Awaitable[None]) -> bool:
        try:
            await asyncio.wait_for(step, timeout=_REFRESH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the gauges keep their last values; the loop reports real failures
            log.debug(f"{what} failed", error_class=type(exc).__name__)
            return False
        return True

    async def every(self, seconds: float) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(seconds)


async def run(settings: config.Settings) -> None:
    normaliser.configure_caches(settings.snapshot_cache_entries)
    tables.configure_caches(settings.snapshot_cache_entries)
    metrics, health = Metrics(), Health(stall_timeout_s=settings.health_stall_timeout_s)
    metrics.follow_readiness(health.ready)
    live = _Live(settings, metrics, health)
    server = HealthServer(health, metrics, refresh=live.refresh)
    # First, so that probes answer during start-up: /healthz 200, /readyz 503 until the worker consumes.
    if settings.metrics_port:
        await server.start(settings.metrics_port)
    try:
        await _start_and_consume(settings, live)
    finally:
        await server.stop()
    log.info("stopped")


async def _start_and_consume(settings: config.Settings, live: _Live) -> None:
    await _schema_ready(settings)
    live.health.beat()
    live.pool = await open_pool(settings)
    live.health.db_ok()  # it just answered; the refresh keeps this fresh from now on
    try:
        live.store = Store(
            live.pool,
            group_id=settings.kafka_group_id,
            retention_days=settings.applied_event_retention_days,
            # One attempt per call: the consumer's own retry loop waits with its partitions paused and still polling.
            retrying=lambda: retry.policy(attempts=1),
        )
        await preflight.check_kafka(settings)
        live.health.topics_ok = True
        live.health.beat()
        await _consume(settings, live, live.store)
    finally:
        await live.pool.close()


async def _consume(settings: config.Settings, live: _Live, store: Store) -> None:
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
        metrics=live.metrics,
        health=live.health,
    )
    async with _started(producer, kafka):
        consumer.subscribe()
        live.consumer = consumer
        log.info("consuming", topic=settings.kafka_topic, group=settings.kafka_group_id)
        refresher = asyncio.create_task(live.every(_REFRESH_S))
        try:
            await _run_until_signal(consumer, settings.shutdown_timeout_s)
        except KafkaError as exc:
            refusal = failures.kafka_failure(exc, settings)
            if refusal is None:
                raise
            raise refusal from None
        finally:
            refresher.cancel()
            live.consumer = None


async def _run_until_signal(consumer: Consumer, shutdown_timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    tune_gc()  # after start-up: its objects live as long as the process
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
        await _migrate_with_retry(settings.database_url, settings.startup_timeout_s)
        return
    # The runtime role: never DDL, only the read-only check that the owner has migrated.
    await _database_answers(settings.database_url, settings.startup_timeout_s)
    await migrations.check_current(settings.database_url)
    log.info("schema current", migrate_on_start=False)


async def _database_answers(dsn: str, budget_s: float) -> None:
    """Once PostgreSQL answers (waited for up to ``budget_s``); a refusal (credentials, TLS) ends start-up at once."""
    translate = functools.partial(failures.database_failure, dsn=dsn)
    probe = await failures.at_startup(lambda: asyncpg.connect(dsn), translate, budget_s=budget_s)
    await probe.close()


async def _migrate_with_retry(dsn: str, budget_s: float) -> None:
    """Migrate once PostgreSQL answers. Only connecting is bounded: applying a migration, or waiting for another
    replica's, takes what it takes."""
    await _database_answers(dsn, budget_s)
    applied = await migrations.migrate(dsn)
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
        await _migrate_with_retry(settings.database_url, settings.startup_timeout_s)

    asyncio.run(init())
    return 0
