"""The pure parts of start-up and metrics: bootstrap strings, naming a server without its password, translating the
clients' exceptions, the lag arithmetic and the series kept per assignment, logs as one JSON object per line."""

from __future__ import annotations

import errno
import io
import json
import logging
import sys

import asyncpg
import pytest
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from hypothesis import given
from hypothesis import strategies as st

from worker import cli, config
from worker.errors import AuthenticationError, ConfigError, DeploymentError, UnreachableError
from worker.runtime import failures, logs
from worker.runtime.metrics import Metrics, lag_of

ENV = {"KAFKA_BOOTSTRAP_SERVERS": "broker:9092", "DATABASE_URL": "postgresql://u:pw@db:5432/carsys"}
SETTINGS = config.from_env(ENV)


@pytest.mark.parametrize(
    "value", ["localhost", ":9092", "host:port:x", "host:port", "h:0", "h:65536", "a:1,", ",a:1", "h :1", "::1:9092"]
)
def test_malformed_bootstrap_servers_are_a_configuration_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        config.from_env({**ENV, "KAFKA_BOOTSTRAP_SERVERS": value})


@pytest.mark.parametrize(
    "value", ["broker:9092", "b-1:9092,b-2:9093", "b-1:9092, b-2:9092", "[::1]:9092", "10.0.0.1:1"]
)
def test_well_formed_bootstrap_servers_pass(value: str) -> None:
    assert config.from_env({**ENV, "KAFKA_BOOTSTRAP_SERVERS": value}).kafka_bootstrap_servers == value


@given(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), st.integers(1, 65535))
def test_any_host_and_port_is_accepted(host: str, port: int) -> None:
    assert config.bootstrap_servers_ok(f"{host}:{port}")


def test_the_startup_budget_is_a_setting() -> None:
    assert config.from_env({**ENV, "STARTUP_TIMEOUT_S": "7.5"}).startup_timeout_s == 7.5
    with pytest.raises(ConfigError, match="STARTUP_TIMEOUT_S"):
        config.from_env({**ENV, "STARTUP_TIMEOUT_S": "-1"})


@pytest.mark.parametrize(
    ("dsn", "server"),
    [
        ("postgresql://u:secret@db:6543/carsys", "db:6543"),
        ("postgresql://u:secret@db/carsys", "db:5432"),
        ("postgresql://db.example:5433", "db.example:5433"),
        ("postgresql://u:p%40ss@h1:5432,h2:5433/carsys", "h1:5432"),
        ("postgresql:///carsys", "localhost:5432"),
    ],
)
def test_the_database_server_is_named_without_credentials(dsn: str, server: str) -> None:
    assert failures.database_server(dsn) == server


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (asyncpg.InvalidPasswordError("password authentication failed"), AuthenticationError, 6),
        (asyncpg.InvalidAuthorizationSpecificationError('role "x" does not exist'), AuthenticationError, 6),
        (asyncpg.InvalidCatalogNameError('database "carsys" does not exist'), DeploymentError, 3),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), UnreachableError, 4),
        (OSError(-2, "Name or service not known"), UnreachableError, 4),
        (TimeoutError(), UnreachableError, 4),
    ],
)
def test_postgresql_failures_name_the_server_and_the_variable_never_the_password(
    exc: Exception, kind: type[Exception], code: int
) -> None:
    error = failures.database_failure(exc, "postgresql://carsys:hunter2@db.internal:5432/carsys")
    assert isinstance(error, kind)
    assert "db.internal:5432" in str(error)
    assert "DATABASE_URL" in str(error)
    assert "hunter2" not in str(error)
    assert cli._report(error) == code


def test_an_unknown_exception_is_not_translated() -> None:
    assert failures.database_failure(ValueError("bug"), "postgresql://db/x") is None
    assert failures.kafka_connect_failure(ValueError("bug"), SETTINGS) is None


@pytest.mark.parametrize(
    ("answers", "named"),
    [
        (
            [(0, "carsys.appointments"), (UnknownTopicOrPartitionError.errno, "carsys.appointments.dlq")],
            "KAFKA_DLQ_TOPIC",
        ),
        ([(UnknownTopicOrPartitionError.errno, "carsys.appointments")], "KAFKA_TOPIC"),
        ([(TopicAuthorizationFailedError.errno, "carsys.appointments"), (0, "carsys.appointments.dlq")], "KAFKA_TOPIC"),
        ([(0, "carsys.appointments")], "KAFKA_DLQ_TOPIC"),  # not in the answer at all
    ],
)
def test_a_topic_missing_or_refused_is_a_deployment_error_naming_topic_and_variable(
    answers: list[tuple[int, str]], named: str
) -> None:
    with pytest.raises(DeploymentError, match=named) as caught:
        failures.check_topics(answers, SETTINGS)
    assert "carsys.appointments" in str(caught.value)


def test_present_topics_pass() -> None:
    failures.check_topics([(0, "carsys.appointments"), (0, "carsys.appointments.dlq")], SETTINGS)


def test_authorisation_refused_while_consuming_names_the_variable() -> None:
    topic = failures.kafka_failure(TopicAuthorizationFailedError(), SETTINGS)
    group = failures.kafka_failure(GroupAuthorizationFailedError(), SETTINGS)
    assert isinstance(topic, DeploymentError)
    assert "KAFKA_TOPIC" in str(topic)
    assert isinstance(group, DeploymentError)
    assert "KAFKA_GROUP_ID" in str(group)
    assert failures.kafka_failure(KafkaConnectionError(), SETTINGS) is None


def test_unreachable_brokers_are_named_with_the_variable() -> None:
    error = failures.kafka_connect_failure(KafkaConnectionError("Unable to bootstrap"), SETTINGS)
    assert isinstance(error, UnreachableError)
    assert "broker:9092" in str(error)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(error)


def test_a_taken_port_names_the_variable() -> None:
    error = failures.port_failure(OSError(errno.EADDRINUSE, "Address already in use"), 9108)
    assert "METRICS_PORT" in str(error)
    assert "9108" in str(error)
    assert cli._report(error) == 3


async def test_startup_waits_for_a_transient_failure_then_gives_up_within_the_budget() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")

    with pytest.raises(UnreachableError):
        await failures.at_startup(
            refused, lambda e: failures.database_failure(e, "postgresql://db/x"), budget_s=0.6, backoff_s=0.05
        )
    assert calls >= 3


async def test_startup_ends_at_once_on_a_refusal() -> None:
    calls = 0

    async def wrong_password() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.InvalidPasswordError("password authentication failed")

    with pytest.raises(AuthenticationError):
        await failures.at_startup(
            wrong_password, lambda e: failures.database_failure(e, "postgresql://db/x"), budget_s=5
        )
    assert calls == 1


# ------------------------------------------------------------------------------------------------ metrics


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_lag_is_never_negative_and_exact_when_behind(end: int, position: int) -> None:
    assert lag_of(end, position) == (end - position if end >= position else 0)


def _series(metrics: Metrics, name: str) -> list[str]:
    return [line for line in metrics.exposition().decode().splitlines() if line.startswith(name + "{")]


def test_lag_series_follow_the_assignment() -> None:
    m = Metrics()
    m.set_lags({("t", 0): 5, ("t", 1): 0, ("t", 2): 7}, {"t"})
    assert len(_series(m, "carsys_consumer_lag_records")) == 3
    assert _series(m, "carsys_assigned_partitions") == ['carsys_assigned_partitions{topic="t"} 3.0']
    m.forget({("t", 2)})
    assert len(_series(m, "carsys_consumer_lag_records")) == 2
    m.set_lags({("t", 1): 4}, {"t"})
    assert _series(m, "carsys_consumer_lag_records") == ['carsys_consumer_lag_records{partition="1",topic="t"} 4.0']
    assert _series(m, "carsys_assigned_partitions") == ['carsys_assigned_partitions{topic="t"} 1.0']


def test_the_shared_metric_names_are_exported() -> None:
    m = Metrics()
    m.follow_readiness(lambda: True)
    m.committed()
    body = m.exposition().decode()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "python_info",
        "python_gc_objects_collected_total",
        "carsys_build_info{version=",
        "carsys_ready 1.0",
        "carsys_commits_total 1.0",
        "carsys_last_commit_age_seconds ",
    ):
        assert name in body, name


# ------------------------------------------------------------------------------------------------ logs


def test_every_log_line_is_one_json_object_third_party_and_tracebacks_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    for name in ("aiokafka", "asyncio"):  # some library in this run called logging.config with its defaults
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    logs.configure("INFO", "json")
    logging.getLogger("aiokafka").error('Unable connect to "%s": %s', "broker:9092", "refused")
    try:
        raise RuntimeError("inner")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    lines = stream.getvalue().splitlines()
    fields = [json.loads(line) for line in lines]
    assert len(fields) == 2
    assert fields[0]["logger"] == "aiokafka"
    assert fields[0]["event"] == 'Unable connect to "broker:9092": refused'
    assert fields[1]["exception"][0]["exc_type"] == "RuntimeError"
    assert "locals" not in fields[1]["exception"][0]["frames"][0]  # local variables can hold personal values
    logs.configure("INFO", "console")
