"""Test harness: one real Kafka broker and one real PostgreSQL server per pytest run, isolated per test module.

The stack is started once (dev/stack.py) unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL point at servers already.
Each test module gets its own database and its own topic names, so modules run in any order and never see each
other's data. Unit tests (tests/unit) never touch the stack: it starts lazily, on the first fixture that needs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import settings

from dev import stack as devstack

# Properties are about values, not speed: a per-example deadline only turns a loaded machine into a failed run.
settings.register_profile("carsys", deadline=None)
settings.load_profile("carsys")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--large", action="store_true", help="run the larger fault-injection scenarios too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The larger runs are not part of the default suite at all (deselected, not skipped): opt in with --large.
    if config.getoption("--large"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


@pytest.fixture(scope="session")
def local_stack() -> Iterator[devstack.Stack]:
    stack = devstack.up(f"test-{os.getpid()}", fast=True)
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_stack: devstack.Stack) -> str:
    return local_stack.kafka_bootstrap


@pytest.fixture(scope="session")
def pg_admin_dsn(local_stack: devstack.Stack) -> str:
    # The maintenance database of whatever server DATABASE_URL names: new databases are created from it.
    return with_database(local_stack.database_url, "postgres")


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def _slug(node: pytest.Item | pytest.Module | pytest.Collector) -> str:
    return re.sub(r"[^a-z0-9]+", "_", Path(str(node.path)).stem.lower())[:30]


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def database_url(pg_admin_dsn: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for this test module."""
    name = f"t_{_slug(request.node)}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_database(pg_admin_dsn, name))
    return with_database(pg_admin_dsn, name)


@pytest.fixture
def fresh_database_url(pg_admin_dsn: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for this one test (for tests that count rows)."""
    name = f"t_{_slug(request.node)}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_database(pg_admin_dsn, name))
    return with_database(pg_admin_dsn, name)


TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    return f"{_slug(request.node)}.{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def create_topic(kafka_bootstrap: str) -> TopicFactory:
    """Creates a topic explicitly (auto-create is off on the broker) and returns its name."""

    async def create(
        name: str | None = None, *, partitions: int = 1, config: dict[str, str] | None = None, dlq: bool = False
    ) -> str:
        """``dlq``: also ``<name>.dlq`` (one partition), as the worker's dead letters need."""
        topic = name or f"t.{uuid.uuid4().hex[:12]}"
        topics = [NewTopic(topic, num_partitions=partitions, replication_factor=1, topic_configs=config or {})]
        if dlq:
            topics.append(NewTopic(f"{topic}.dlq", num_partitions=1, replication_factor=1))
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics(topics)
        finally:
            await admin.close()
        return topic

    return create
