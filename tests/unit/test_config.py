"""Configuration: one frozen struct from the environment, errors that name the variable, the docs in step."""

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


def _table(path: Path, marker: str) -> dict[str, tuple[str, str]]:
    """variable -> (default, meaning) from the table between ``<!-- {marker}:start -->`` and ``...:end -->``."""
    text = path.read_text()
    assert f"<!-- {marker}:start -->" in text, f"{path.name} lost its {marker} markers"
    table = text.split(f"<!-- {marker}:start -->")[1].split(f"<!-- {marker}:end -->")[0]
    rows = re.findall(r"^\| `([A-Z_]+)` \|([^|]*)\|(.*)\|\s*$", table, flags=re.M)
    documented = {var: (default.strip().strip("`"), meaning.strip()) for var, default, meaning in rows}
    assert len(documented) == len(rows), f"a variable appears twice in {path.name}"
    return documented


def _shown_default(field: str) -> str:
    defaults = config.Settings.__struct_defaults__
    names = config.Settings.__struct_fields__
    index = names.index(field) - (len(names) - len(defaults))
    default = defaults[index] if index >= 0 else msgspec.NODEFAULT
    return "" if default in ("", None) or default is msgspec.NODEFAULT else str(default)


def test_deployment_documents_every_variable_with_its_default_and_meaning() -> None:
    documented = _table(REPO / "docs" / "deployment.md", "config-table")
    assert list(documented) == list(config.VARIABLES)  # every variable, in the code's order
    for var, (field, meaning) in config.VARIABLES.items():
        assert documented[var] == (_shown_default(field), meaning), var


def test_readme_shows_ten_settings_exactly_as_the_full_table() -> None:
    first = _table(REPO / "README.md", "settings-first")
    full = _table(REPO / "docs" / "deployment.md", "config-table")
    assert len(first) == 10
    assert {var: full.get(var) for var in first} == first


def test_nothing_else_reads_the_environment() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("worker", "schemas")
        for p in (REPO / folder).rglob("*.py")
        if p.name != "config.py" and re.search(r"os\.environ|os\.getenv", p.read_text())
    ]
    assert offenders == []
