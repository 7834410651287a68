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
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar
from urllib.parse import urlsplit

import asyncpg
import structlog
from aiokafka.conn import create_conn
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    UnsupportedSaslMechanismError,
    for_code,
)

from worker.config import Settings, from_env
from worker.errors import AuthenticationError, DeploymentError, IngestError, TransientError, UnreachableError
from worker.runtime.kafka import kafka_options

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
    if isinstance(exc, ssl.SSLError):  # an OSError, but a certificate does not get trusted by waiting
        return database_tls_refusal(exc, dsn)
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


# ------------------------------------------------------------------------------------- Kafka SASL / TLS (security)
# aiokafka reports a refused SASL login or an untrusted certificate only as "Unable to bootstrap from [...]" (the
# cause goes to its log). On that error, with a secured protocol, one direct connection per bootstrap server with the
# same options finds the cause again and names it. Unknown user and wrong password are one case: the broker answers
# both alike, on purpose.


def kafka_refusal(exc: BaseException, settings: Settings) -> AuthenticationError | None:
    """The AuthenticationError behind a failed Kafka bootstrap, or None (not a secured set-up, or another cause)."""
    if not isinstance(exc, KafkaConnectionError) or settings.kafka_security_protocol == "PLAINTEXT":
        return None
    return asyncio.run(probe_kafka_refusal(settings))


async def probe_kafka_refusal(settings: Settings) -> AuthenticationError | None:
    options = kafka_options(settings)
    options.pop("bootstrap_servers")
    for server in (s.strip() for s in settings.kafka_bootstrap_servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=_PROBE_TIMEOUT_MS, **options)
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            return _sasl_refused(server, settings, exc)
        except ssl.SSLCertVerificationError as exc:
            return tls_untrusted(server, "KAFKA_SSL_CAFILE", exc)
        except ssl.SSLError as exc:
            return AuthenticationError(
                f"Kafka {server}: TLS handshake failed ({exc.reason}); is this a TLS listener? check"
                " KAFKA_SECURITY_PROTOCOL and KAFKA_BOOTSTRAP_SERVERS"
            )
        except (OSError, KafkaError, ValueError):
            continue  # down or unreachable: not an authentication problem; the caller's error stands
        conn.close()
    return None


_PROBE_TIMEOUT_MS = 10_000


def _sasl_refused(server: str, settings: Settings, exc: KafkaError) -> AuthenticationError:
    if isinstance(exc, UnsupportedSaslMechanismError):
        return AuthenticationError(
            f"Kafka {server} does not offer SASL mechanism {settings.kafka_sasl_mechanism}: check KAFKA_SASL_MECHANISM"
        )
    return AuthenticationError(
        f"Kafka {server} refused the SASL login ({settings.kafka_sasl_mechanism}, user"
        f" {settings.kafka_sasl_username!r}): wrong password (KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE) or"
        " unknown user (KAFKA_SASL_USERNAME)"
    )


def tls_untrusted(server: str, variable: str, exc: ssl.SSLCertVerificationError) -> AuthenticationError:
    """One line for a server certificate the configured CA does not vouch for (Kafka or PostgreSQL)."""
    return AuthenticationError(
        f"{server}: the server's TLS certificate is not trusted ({exc.verify_message}): {variable} must name the"
        " CA that signed it"
    )


def database_tls_refusal(exc: BaseException, dsn: str) -> AuthenticationError | None:
    """A TLS failure talking to PostgreSQL (sslmode=verify-full and a CA that does not match, a host name the
    certificate does not name): waiting cannot fix it, so it is refused at once instead of retried as an outage."""
    if not isinstance(exc, ssl.SSLError):
        return None
    server = f"PostgreSQL {database_server(dsn)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return tls_untrusted(server, "DATABASE_URL's sslrootcert", exc)
    return AuthenticationError(f"{server}: TLS handshake failed ({exc.reason}); check DATABASE_URL's sslmode")


def explained(exc: Exception) -> Exception:
    """``exc``, or the AuthenticationError that names its cause: for the command line's last word (worker/cli.py)."""
    try:
        settings = from_env()
    except IngestError:
        return exc
    refusal = database_tls_refusal(exc, settings.database_url) or kafka_refusal(exc, settings)
    return refusal or exc
