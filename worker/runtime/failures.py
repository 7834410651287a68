"""Translate the clients' own exceptions (aiokafka, asyncpg, OSError) into the closed error hierarchy.

At start-up an operator needs one line naming the server and the variable to fix, not a client's traceback. Each
translation says which server (``host:port``, never the DSN with its password) and which setting is involved.

Start-up waits for a server that does not answer yet (it may be starting next to us) for ``STARTUP_TIMEOUT_S`` and
then gives up with ``UnreachableError``; a refusal that waiting cannot change (a wrong password, a missing topic, a
taken port) ends start-up at once.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import structlog
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    for_code,
)

from worker.config import Settings
from worker.errors import AuthenticationError, DeploymentError, IngestError, TransientError, UnreachableError

log = structlog.get_logger(__name__)
T = TypeVar("T")

# asyncpg's refusals of the credentials themselves: 28P01 (password), 28000 (no such role, pg_hba.conf reject).
_PG_CREDENTIALS = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
# Worth waiting for: the server is starting, restarting, full, or not (yet) resolvable/listening.
_PG_NOT_YET = (OSError, TimeoutError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)
# Longest single connection attempt: a black-holed address must not use up the whole start-up budget in one go.
_ATTEMPT_S = 5.0


# ------------------------------------------------------------------------------------------------ PostgreSQL


def database_server(dsn: str) -> str:
    """``host:port`` of a PostgreSQL DSN (its first host), without user, password or database."""
    netloc = urlsplit(dsn).netloc.rsplit("@", 1)[-1].split(",")[0]
    try:
        parts = urlsplit(f"//{netloc}")
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:  # a port that is not a number: name what was written, still without credentials
        return netloc


def database_failure(exc: BaseException, dsn: str) -> IngestError | None:
    """The error an operator acts on for a failure to connect to PostgreSQL, or None (not a connection failure)."""
    server = database_server(dsn)
    if isinstance(exc, _PG_CREDENTIALS):
        return AuthenticationError(
            f"PostgreSQL at {server} refused the credentials in DATABASE_URL ({type(exc).__name__})"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        database = urlsplit(dsn).path.lstrip("/") or "(default)"
        return DeploymentError(f"database {database!r} does not exist at {server} (DATABASE_URL)")
    if isinstance(exc, _PG_NOT_YET):
        return UnreachableError(f"PostgreSQL at {server} (DATABASE_URL) is unreachable: {_reason(exc)}")
    return None


# ------------------------------------------------------------------------------------------------ Kafka


def kafka_unreachable(settings: Settings, exc: BaseException) -> UnreachableError:
    return UnreachableError(
        f"no Kafka broker of {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) answered: {_reason(exc)}"
    )


def topic_failure(topic: str, error_code: int, settings: Settings) -> DeploymentError | None:
    """A topic the worker needs, as the broker's metadata answered for it (None: present and describable)."""
    if error_code == 0:
        return None
    variable = "KAFKA_TOPIC" if topic == settings.kafka_topic else "KAFKA_DLQ_TOPIC"
    error = for_code(error_code)
    if error is UnknownTopicOrPartitionError:
        return DeploymentError(
            f"topic {topic} ({variable}) does not exist on {settings.kafka_bootstrap_servers};"
            " create it (carsys-ingest init) or fix the variable"
        )
    if error is TopicAuthorizationFailedError:
        return DeploymentError(f"not authorised for topic {topic} ({variable}); grant this principal access")
    return DeploymentError(f"topic {topic} ({variable}) is not usable: {error.__name__}")


def kafka_failure(exc: BaseException, settings: Settings) -> IngestError | None:
    """A refusal met while consuming that waiting cannot fix (authorisation), or None."""
    if isinstance(exc, TopicAuthorizationFailedError):
        return DeploymentError(
            f"not authorised to read topic {settings.kafka_topic} (KAFKA_TOPIC) or write the dead-letter topic"
            f" {settings.kafka_dlq_topic} (KAFKA_DLQ_TOPIC); grant this principal access"
        )
    if isinstance(exc, GroupAuthorizationFailedError):
        return DeploymentError(
            f"not authorised for consumer group {settings.kafka_group_id} (KAFKA_GROUP_ID); grant this principal access"
        )
    return None


def check_topics(answers: Iterable[tuple[int, str]], settings: Settings) -> None:
    """Raise DeploymentError for the first needed topic that the metadata answer reports missing or refused."""
    wanted = [settings.kafka_topic, settings.kafka_dlq_topic]
    codes = {topic: code for code, topic in answers}
    for topic in wanted:
        problem = topic_failure(topic, codes.get(topic, UnknownTopicOrPartitionError.errno), settings)
        if problem is not None:
            raise problem


# ------------------------------------------------------------------------------------------------ the HTTP port


def port_failure(exc: OSError, port: int) -> DeploymentError:
    if exc.errno == errno.EADDRINUSE:
        return DeploymentError(f"port {port} (METRICS_PORT) is already in use; choose another or free it")
    return DeploymentError(f"cannot listen on port {port} (METRICS_PORT): {_reason(exc)}")


# ------------------------------------------------------------------------------------------------ waiting at start


async def at_startup(
    connect: Callable[[], Awaitable[T]],
    translate: Callable[[BaseException], IngestError | None],
    *,
    budget_s: float,
    backoff_s: float = 0.25,
) -> T:
    """``connect()`` until it succeeds, a translated refusal ends it, or ``budget_s`` is used up. Each attempt is
    bounded too (a black-holed address): pass only connecting as ``connect``, not work that may take long.

    A ``TransientError`` translation is waited out (short, growing back-offs); the last one is raised when the budget
    is spent. Anything ``translate`` does not know is raised as it is (a bug, worth its traceback).
    """
    deadline = time.monotonic() + budget_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(connect(), timeout=max(0.1, min(_ATTEMPT_S, remaining)))
        except Exception as exc:  # sorted by translate; what it does not know is re-raised below
            error = translate(exc)
            if error is None:
                raise
            wait_s = min(backoff_s, deadline - time.monotonic())
            if not isinstance(error, TransientError) or wait_s <= 0:
                raise error from None
            log.warning("waiting for a server at start-up", reason=str(error), retry_in_s=round(wait_s, 3))
        await asyncio.sleep(wait_s)  # the last wait ends at the deadline: one more attempt uses the whole budget
        backoff_s = min(backoff_s * 2, 2.0)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, KafkaConnectionError | KafkaError):
        return type(exc).__name__
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def kafka_connect_failure(exc: BaseException, settings: Settings) -> IngestError | None:
    """A failure to reach the brokers at start-up (bootstrap, metadata), or None."""
    if isinstance(exc, KafkaError | OSError | TimeoutError):
        return kafka_unreachable(settings, exc)
    return None
