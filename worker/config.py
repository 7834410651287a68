"""Configuration: one frozen struct, read from the environment once, at start-up.

Nothing else in the worker reads ``os.environ``. Every variable is listed in ``VARIABLES`` (the table in
docs/deployment.md is checked against it by a test) and every validation message names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from worker.errors import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
LogFormat = Literal["auto", "json", "console"]
# Kafka's codecs; the worker reads every one of them (aiokafka with cramjam), so any is safe for the dead-letter topic.
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    kafka_bootstrap_servers: str
    kafka_topic: str = "carsys.appointments"
    kafka_dlq_topic: str = ""  # empty means "<kafka_topic>.dlq", resolved by from_env
    kafka_dlq_compression: Compression = "none"
    kafka_group_id: str = "carsys-ingest"
    kafka_client_id: str = "carsys-ingest"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_allow_plaintext_password: bool = False
    database_url: str
    db_pool_min_size: int = 1
    db_pool_max_size: int = 4
    migrate_on_start: bool = True
    batch_max_records: int = 2000
    batch_max_wait_ms: int = 200
    snapshot_cache_entries: int = 16384
    applied_event_retention_days: int = 14
    retry_initial_backoff_s: float = 0.5
    retry_max_backoff_s: float = 30.0
    retry_attempt_timeout_s: float = 60.0
    shutdown_timeout_s: float = 25.0
    startup_timeout_s: float = 20.0
    health_stall_timeout_s: float = 120.0
    metrics_port: int = 9108
    log_level: str = "INFO"
    log_format: LogFormat = "auto"

    def __repr__(self) -> str:
        # A settings object can end up in a traceback or a debugger's output: never with its secrets.
        shown = msgspec.structs.replace(
            self,
            database_url=redact_dsn(self.database_url),
            kafka_sasl_password=None if self.kafka_sasl_password is None else MASK,
        )
        fields = ", ".join(f"{f}={getattr(shown, f)!r}" for f in self.__struct_fields__)
        return f"Settings({fields})"


# variable -> (field, meaning). The order is docs/deployment.md's.
VARIABLES: Mapping[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": (
        "kafka_bootstrap_servers",
        "Comma-separated `host:port` list of the Kafka brokers (required).",
    ),
    "KAFKA_TOPIC": ("kafka_topic", "Topic Carsys publishes events to."),
    "KAFKA_DLQ_TOPIC": ("kafka_dlq_topic", "Dead-letter topic; empty means `<KAFKA_TOPIC>.dlq`."),
    "KAFKA_DLQ_COMPRESSION": (
        "kafka_dlq_compression",
        "Codec of the dead-letter producer: `none`, `gzip`, `snappy`, `lz4` or `zstd` (all read by the worker and the"
        " dlq tools).",
    ),
    "KAFKA_GROUP_ID": ("kafka_group_id", "Consumer group shared by all replicas."),
    "KAFKA_CLIENT_ID": ("kafka_client_id", "Client id prefix shown in broker logs and quotas."),
    "KAFKA_SECURITY_PROTOCOL": (
        "kafka_security_protocol",
        "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.",
    ),
    "KAFKA_SASL_MECHANISM": (
        "kafka_sasl_mechanism",
        "`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (SASL_* protocols).",
    ),
    "KAFKA_SASL_USERNAME": ("kafka_sasl_username", "SASL user name."),
    "KAFKA_SASL_PASSWORD": ("kafka_sasl_password", "SASL password (never logged)."),
    "KAFKA_SASL_PASSWORD_FILE": (
        "kafka_sasl_password",
        "File holding the SASL password (trailing newline stripped); instead of `KAFKA_SASL_PASSWORD`.",
    ),
    "KAFKA_SSL_CAFILE": (
        "kafka_ssl_cafile",
        "PEM file with the CA that signed the brokers' certificates (SSL, SASL_SSL).",
    ),
    "KAFKA_ALLOW_PLAINTEXT_PASSWORD": (
        "kafka_allow_plaintext_password",
        "Accept SASL `PLAIN` over `SASL_PLAINTEXT` (the password crosses the network unencrypted); refused otherwise.",
    ),
    "DATABASE_URL": ("database_url", "PostgreSQL DSN, `postgresql://user:pass@host:port/db` (required)."),
    "DATABASE_URL_FILE": (
        "database_url",
        "File holding the DSN (trailing newline stripped); instead of `DATABASE_URL`. TLS: add"
        " `?sslmode=verify-full&sslrootcert=/path/ca.pem` to the DSN.",
    ),
    "DB_POOL_MIN_SIZE": ("db_pool_min_size", "Connections the pool keeps open."),
    "DB_POOL_MAX_SIZE": ("db_pool_max_size", "Most connections the pool opens."),
    "MIGRATE_ON_START": (
        "migrate_on_start",
        "`true`: `run` applies pending migrations (needs the owner role). `false`: it only checks the schema is"
        " current and exits 3 if not (the runtime role).",
    ),
    "BATCH_MAX_RECORDS": (
        "batch_max_records",
        "Most records fetched and written in one batch (one transaction).",
    ),
    "BATCH_MAX_WAIT_MS": (
        "batch_max_wait_ms",
        "Longest wait for a batch to fill at low load (latency bound).",
    ),
    "SNAPSHOT_CACHE_ENTRIES": (
        "snapshot_cache_entries",
        "Persons whose normalised snapshot is kept (vehicles: half as many); ~3.5 KiB each, all caches counted."
        " 0: none. Memory for CPU.",
    ),
    "APPLIED_EVENT_RETENTION_DAYS": (
        "applied_event_retention_days",
        "How long applied event ids are kept for de-duplication.",
    ),
    "RETRY_INITIAL_BACKOFF_S": (
        "retry_initial_backoff_s",
        "First back-off after a transient failure (doubles, with jitter).",
    ),
    "RETRY_MAX_BACKOFF_S": ("retry_max_backoff_s", "Longest back-off between two retries."),
    "RETRY_ATTEMPT_TIMEOUT_S": (
        "retry_attempt_timeout_s",
        "Deadline of one retry cycle before the caller pauses and tries again.",
    ),
    "SHUTDOWN_TIMEOUT_S": ("shutdown_timeout_s", "Bound on a graceful shutdown after SIGTERM/SIGINT."),
    "STARTUP_TIMEOUT_S": (
        "startup_timeout_s",
        "How long start-up waits for PostgreSQL and Kafka to answer before exiting (code 4).",
    ),
    "HEALTH_STALL_TIMEOUT_S": (
        "health_stall_timeout_s",
        "`/healthz` fails when the loop made no progress for this long.",
    ),
    "METRICS_PORT": ("metrics_port", "Port of `/metrics`, `/healthz` and `/readyz`; 0 disables the server."),
    "LOG_LEVEL": ("log_level", "`DEBUG`, `INFO`, `WARNING` or `ERROR`."),
    "LOG_FORMAT": ("log_format", "`json`, `console`, or `auto` (JSON lines unless stderr is a terminal)."),
}

# A secret may come from a file (a mounted Kubernetes Secret) instead of the environment: variable -> its _FILE.
SECRET_FILES: Mapping[str, str] = {
    "DATABASE_URL": "DATABASE_URL_FILE",
    "KAFKA_SASL_PASSWORD": "KAFKA_SASL_PASSWORD_FILE",
}
MASK = "***"

T = TypeVar("T")


def _positive(name: str, value: T) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{name} must not be negative")


def bootstrap_servers_ok(value: str) -> bool:
    """``host:port[,host:port...]``; a bracketed IPv6 host (``[::1]:9092``) is fine, a missing or extra part is not."""
    return all(_host_port_ok(entry.strip()) for entry in value.split(","))


def _host_port_ok(entry: str) -> bool:
    host, sep, port = entry.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1].replace(":", "")
    plain = bool(sep and host) and ":" not in host and not any(c.isspace() for c in host)
    return plain and port.isdigit() and 0 < int(port) <= 65535


_CHECKS: list[tuple[str, Callable[[Settings], bool], str]] = [
    (
        "KAFKA_BOOTSTRAP_SERVERS",
        lambda s: bootstrap_servers_ok(s.kafka_bootstrap_servers),
        "must be a comma-separated list of host:port (e.g. broker-1:9092,broker-2:9092)",
    ),
    ("BATCH_MAX_RECORDS", lambda s: s.batch_max_records >= 1, "must be at least 1"),
    (
        "DB_POOL_MAX_SIZE",
        lambda s: s.db_pool_max_size >= max(1, s.db_pool_min_size),
        "must be >= DB_POOL_MIN_SIZE and >= 1",
    ),
    ("METRICS_PORT", lambda s: 0 <= s.metrics_port <= 65535, "must be a port number (0-65535)"),
    (
        "LOG_LEVEL",
        lambda s: s.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
        "must be DEBUG, INFO, WARNING or ERROR",
    ),
    (
        "DATABASE_URL",
        lambda s: s.database_url.startswith(("postgresql://", "postgres://")),
        "must start with postgresql://",
    ),
    (
        "KAFKA_SASL_MECHANISM",
        lambda s: s.kafka_sasl_mechanism is not None or not s.kafka_security_protocol.startswith("SASL"),
        "is required when KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT or SASL_SSL",
    ),
    (
        "KAFKA_SASL_USERNAME",
        lambda s: s.kafka_sasl_mechanism is None or bool(s.kafka_sasl_username and s.kafka_sasl_password),
        "and KAFKA_SASL_PASSWORD are required with KAFKA_SASL_MECHANISM",
    ),
    (
        "DATABASE_URL",
        lambda s: _dsn_files_exist(s.database_url),
        "names an sslrootcert, sslcert or sslkey file that does not exist",
    ),
    (
        "KAFKA_SSL_CAFILE",
        lambda s: s.kafka_ssl_cafile is None or os.path.isfile(s.kafka_ssl_cafile),
        "must name a readable PEM file (the CA that signed the brokers' certificates)",
    ),
    (
        "KAFKA_SASL_MECHANISM",
        lambda s: (
            s.kafka_allow_plaintext_password
            or not (s.kafka_security_protocol == "SASL_PLAINTEXT" and s.kafka_sasl_mechanism == "PLAIN")
        ),
        "PLAIN over SASL_PLAINTEXT would send the password unencrypted: use SASL_SSL (or SCRAM), or set"
        " KAFKA_ALLOW_PLAINTEXT_PASSWORD=true to accept that",
    ),
]


def _dsn_files_exist(dsn: str) -> bool:
    # asyncpg would report a missing file as a bare FileNotFoundError on every connection attempt.
    query = dict(parse_qsl(urlsplit(dsn).query))
    return all(os.path.isfile(query[k]) for k in ("sslrootcert", "sslcert", "sslkey") if k in query)


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings. Raises ConfigError naming the first offending variable."""
    env = _with_secret_files(os.environ if environ is None else environ)
    raw: dict[str, str] = {}
    for var, (field, _) in VARIABLES.items():
        value = env.get(var, "")
        # A password is taken as written: spaces may be part of it.
        value = value if var == "KAFKA_SASL_PASSWORD" else value.strip()
        if value and var not in SECRET_FILES.values():
            raw[field] = value
    for required in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"):
        if VARIABLES[required][0] not in raw:
            also = f" (nor {SECRET_FILES[required]})" if required in SECRET_FILES else ""
            raise ConfigError(f"{required} is required but not set{also}")
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_name_variable(str(exc))) from None
    for info in msgspec.structs.fields(Settings):
        _positive(_variable_of(info.name), getattr(settings, info.name))
    for var, ok, message in _CHECKS:
        if not ok(settings):
            raise ConfigError(f"{var} {message}")
    if not settings.kafka_dlq_topic:
        settings = msgspec.structs.replace(settings, kafka_dlq_topic=f"{settings.kafka_topic}.dlq")
    return msgspec.structs.replace(settings, log_level=settings.log_level.upper())


def _variable_of(field: str) -> str:
    return next(var for var, (f, _) in VARIABLES.items() if f == field)


def _name_variable(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.batch_max_records`"; users know variables, not fields.
    for var, (field, _) in VARIABLES.items():
        if f"`$.{field}`" in message:
            return f"{var}: {message.split(' - at ')[0]}"
    return message


def _with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with each ``*_FILE`` secret read into its variable. Both set is an error: which one would win?"""
    resolved = dict(env)
    for var, file_var in SECRET_FILES.items():
        path = env.get(file_var, "").strip()
        if not path:
            continue
        if env.get(var, "").strip():
            raise ConfigError(f"{var} and {file_var} are both set: set only one")
        resolved[var] = _read_secret(file_var, Path(path))
    return resolved


def _read_secret(file_var: str, path: Path) -> str:
    try:
        # Files written with `echo` or by editors end in a newline that is not part of the secret.
        secret = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file_var}: cannot read {path} ({type(exc).__name__})") from None
    if not secret:
        raise ConfigError(f"{file_var}: {path} is empty")
    return secret


def redact_dsn(dsn: str) -> str:
    """The DSN with its password (in the user part or a ``password=`` parameter) replaced by ``***``: the only form
    in which a DSN is ever printed or logged."""
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:{MASK}@{host}"
        query = [(k, MASK if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/*")))
    except ValueError:
        return MASK  # not even a URL: nothing of it is safe to show


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """DATABASE_URL alone, validated as in ``from_env``: for commands that need only the database (``migrate``)."""
    env = _with_secret_files(os.environ if environ is None else environ)
    url = env.get("DATABASE_URL", "").strip()
    if not url:
        raise ConfigError("DATABASE_URL is required but not set (nor DATABASE_URL_FILE)")
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must start with postgresql://")
    return url
