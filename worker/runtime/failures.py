"""Translate the clients' own exceptions (aiokafka, asyncpg, OSError) into the closed error hierarchy.

At start-up an operator needs one line naming the server and the variable to fix, not a client's traceback. Each
translation says which server (``host:port``, never the DSN with its password) and which setting is involved.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from worker import config
from worker.errors import AuthenticationError, IngestError
from worker.runtime.kafka import kafka_options

# ------------------------------------------------------------------------------------- Kafka SASL / TLS (security)
# aiokafka reports a refused SASL login or an untrusted certificate only as "Unable to bootstrap from [...]" (the
# cause goes to its log). On that error, with a secured protocol, one direct connection per bootstrap server with the
# same options finds the cause again and names it. Unknown user and wrong password are one case: the broker answers
# both alike, on purpose.


def kafka_refusal(exc: BaseException, settings: config.Settings) -> AuthenticationError | None:
    """The AuthenticationError behind a failed Kafka bootstrap, or None (not a secured set-up, or another cause)."""
    if not isinstance(exc, KafkaConnectionError) or settings.kafka_security_protocol == "PLAINTEXT":
        return None
    return asyncio.run(_probe_kafka(settings))


async def _probe_kafka(settings: config.Settings) -> AuthenticationError | None:
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


def _sasl_refused(server: str, settings: config.Settings, exc: KafkaError) -> AuthenticationError:
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
    parts = urlsplit(dsn)
    server = f"PostgreSQL {parts.hostname}:{parts.port or 5432}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return tls_untrusted(server, "DATABASE_URL's sslrootcert", exc)
    return AuthenticationError(f"{server}: TLS handshake failed ({exc.reason}); check DATABASE_URL's sslmode")


def explained(exc: Exception) -> Exception:
    """``exc``, or the AuthenticationError that names its cause: for the command line's last word (worker/cli.py)."""
    try:
        settings = config.from_env()
    except IngestError:
        return exc
    refusal = database_tls_refusal(exc, settings.database_url) or kafka_refusal(exc, settings)
    return refusal or exc
