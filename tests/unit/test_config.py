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


SCRAM = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "u",
}


def test_secrets_are_read_from_their_files_without_the_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "dsn").write_text("postgresql://u:dsn-secret@h/db\n")
    (tmp_path / "pw").write_text(" pass word \r\n")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
        "DATABASE_URL_FILE": str(tmp_path / "dsn"),
        "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "pw"),
        **SCRAM,
    }
    s = config.from_env(env)
    assert s.database_url == "postgresql://u:dsn-secret@h/db"
    assert s.kafka_sasl_password == " pass word "  # only the newline goes: spaces may be part of a password
    assert config.database_url_from_env(env) == s.database_url


@pytest.mark.parametrize(("var", "file_var"), list(config.SECRET_FILES.items()))
def test_a_secret_and_its_file_together_is_an_error_naming_both(var: str, file_var: str, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x\n")
    env = {
        **BASE,
        **SCRAM,
        "KAFKA_SASL_PASSWORD": "p",
        var: "postgresql://u:p@h/db",
        file_var: str(tmp_path / "secret"),
    }
    with pytest.raises(ConfigError, match=f"{var} and {file_var}"):
        config.from_env(env)


@pytest.mark.parametrize("content", [None, ""])
def test_a_missing_or_empty_secret_file_names_the_variable(content: str | None, tmp_path: Path) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE"):
        config.from_env({**BASE, **SCRAM, "KAFKA_SASL_PASSWORD_FILE": str(path)})


def test_plain_over_plaintext_is_refused_unless_explicitly_allowed() -> None:
    env = {**BASE, **SCRAM, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"}
    with pytest.raises(ConfigError, match="KAFKA_ALLOW_PLAINTEXT_PASSWORD"):
        config.from_env({**env, "KAFKA_SASL_PASSWORD": "p"})
    allowed = config.from_env({**env, "KAFKA_SASL_PASSWORD": "p", "KAFKA_ALLOW_PLAINTEXT_PASSWORD": "true"})
    assert allowed.kafka_allow_plaintext_password is True
    # SCRAM never sends the password itself, so it needs no opt-in.
    config.from_env({**env, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_PASSWORD": "p"})


def test_migrate_on_start_defaults_to_true_and_reads_false() -> None:
    assert config.from_env(BASE).migrate_on_start is True
    assert config.from_env({**BASE, "MIGRATE_ON_START": "false"}).migrate_on_start is False
    with pytest.raises(ConfigError, match="MIGRATE_ON_START"):
        config.from_env({**BASE, "MIGRATE_ON_START": "perhaps"})


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://app:s3cr%40t@db:5432/carsys", "postgresql://app:***@db:5432/carsys"),
        ("postgresql://app@db/carsys?sslmode=verify-full", "postgresql://app@db/carsys?sslmode=verify-full"),
        (
            "postgresql://db/carsys?user=app&password=s3cret&sslrootcert=/ca.pem",
            "postgresql://db/carsys?user=app&password=***&sslrootcert=/ca.pem",
        ),
    ],
)
def test_a_dsn_is_shown_only_with_its_password_masked(dsn: str, shown: str) -> None:
    assert config.redact_dsn(dsn) == shown


def test_settings_repr_hides_the_secrets() -> None:
    s = config.from_env(
        {**BASE, **SCRAM, "DATABASE_URL": "postgresql://u:dsn-secret@h/db", "KAFKA_SASL_PASSWORD": "sasl-secret"}
    )
    text = repr(s) + str(s)
    assert "dsn-secret" not in text
    assert "sasl-secret" not in text
    assert "postgresql://u:***@h/db" in text
    assert "kafka_sasl_username='u'" in text


def test_files_a_setting_names_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE"):
        config.from_env({**BASE, "KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        config.from_env({**BASE, "DATABASE_URL": f"postgresql://u@h/db?sslrootcert={tmp_path / 'missing.pem'}"})
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    dsn = f"postgresql://u@h/db?sslmode=verify-full&sslrootcert={tmp_path / 'ca.pem'}"
    assert config.from_env({**BASE, "DATABASE_URL": dsn}).database_url == dsn
