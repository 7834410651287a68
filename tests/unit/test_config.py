"""Configuration: one frozen struct from the environment, errors that name the variable, README in step."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from worker import config
from worker.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BASE = {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "DATABASE_URL": "postgresql://u@h/db"}


def test_defaults_and_derived_dead_letter_topic() -> None:
    s = config.from_env(BASE)
    assert s.kafka_topic == "carsys.appointments"
    assert s.kafka_dlq_topic == "carsys.appointments.dlq"
    assert s.shutdown_timeout_s <= 30
    with pytest.raises(AttributeError):
        s.kafka_topic = "other"  # type: ignore[misc]


def test_every_variable_is_read() -> None:
    env = {**BASE, "KAFKA_TOPIC": "t", "KAFKA_DLQ_TOPIC": "t.dead", "BATCH_MAX_RECORDS": "17", "LOG_LEVEL": "debug"}
    s = config.from_env(env)
    assert (s.kafka_topic, s.kafka_dlq_topic, s.batch_max_records, s.log_level) == ("t", "t.dead", 17, "DEBUG")
    fields = {f.name for f in msgspec.structs.fields(config.Settings)}
    assert fields == {field for field, _ in config.VARIABLES.values()}


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"KAFKA_BOOTSTRAP_SERVERS": ""}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"BATCH_MAX_RECORDS": "many"}, "BATCH_MAX_RECORDS"),
        ({"BATCH_MAX_RECORDS": "0"}, "BATCH_MAX_RECORDS"),
        ({"SHUTDOWN_TIMEOUT_S": "-1"}, "SHUTDOWN_TIMEOUT_S"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_USERNAME"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_DLQ_COMPRESSION": "brotli"}, "KAFKA_DLQ_COMPRESSION"),
    ],
)
def test_invalid_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        config.from_env({**BASE, **env})


def test_sasl_scram_over_tls_is_accepted() -> None:
    env = {
        **BASE,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "u",
        "KAFKA_SASL_PASSWORD": "p",
    }
    s = config.from_env(env)
    assert s.kafka_sasl_mechanism == "SCRAM-SHA-512"


def test_readme_documents_every_variable_with_its_default() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- config-table:start -->")[1].split("<!-- config-table:end -->")[0]
    documented = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \|", table, flags=re.M))
    assert set(documented) == set(config.VARIABLES)
    defaults = config.Settings.__struct_defaults__
    names = config.Settings.__struct_fields__
    offset = len(names) - len(defaults)
    for var, (field, _) in config.VARIABLES.items():
        index = names.index(field)
        if index >= offset:
            default = defaults[index - offset]
            shown = "" if default in ("", None) else str(default)
            assert documented[var].strip().strip("`") == shown, var


def test_nothing_else_reads_the_environment() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("worker", "schemas")
        for p in (REPO / folder).rglob("*.py")
        if p.name != "config.py" and re.search(r"os\.environ|os\.getenv", p.read_text())
    ]
    assert offenders == []
