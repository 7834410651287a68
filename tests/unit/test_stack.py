"""The local stack's start-up failures say what is missing and how to get it (no services are started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev import stack as devstack


def test_missing_java_is_named_with_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(devstack, "CACHE", tmp_path)  # no cached jars: they would have to be resolved
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(devstack.StackError, match=r"`java` not found .*apt-get install openjdk"):
        devstack.kafka_libs()


def test_missing_maven_is_named_with_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to("/bin/true")
    monkeypatch.setattr(devstack, "CACHE", tmp_path)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(devstack.StackError, match=r"`mvn` not found .*apt-get install maven"):
        devstack.kafka_libs()


def test_missing_postgres_binaries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("dev.stack.glob.glob", lambda pattern: [])
    with pytest.raises(devstack.StackError, match=r"initdb.*apt-get install postgresql"):
        devstack.pg_bin()


def test_free_port_is_bindable() -> None:
    import socket

    port = devstack.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def test_the_secured_broker_config_and_env_name_the_sasl_ssl_listener(tmp_path: Path) -> None:
    kafka = devstack.KafkaNode(
        dir=str(tmp_path), port=9092, controller_port=9093, sasl_port=9094, tls_bundle="/tls/b.pem",
        scram_users={"carsys": "pw"},
    )  # fmt: skip
    props = kafka._write_config().read_text()
    assert "SASL_SSL://127.0.0.1:9094" in props
    assert "PLAINTEXT://127.0.0.1:9092" in props  # the plaintext listener stays, next to it
    assert "listener.name.sasl_ssl.ssl.keystore.location=/tls/b.pem" in props
    assert "sasl.enabled.mechanisms=SCRAM-SHA-512" in props
    stack = devstack.Stack(
        name="x", kafka_bootstrap=kafka.bootstrap, database_url="postgresql://p@h:1/carsys", kafka=kafka,
        postgres=devstack.PostgresNode(dir=str(tmp_path), port=1, ssl_cert="/c", ssl_key="/k"), ca_file="/tls/ca.pem",
    )  # fmt: skip
    env = stack.secure_env()
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9094"
    assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_USERNAME"], env["KAFKA_SASL_PASSWORD"]) == (
        "SASL_SSL",
        "carsys",
        "pw",
    )
    assert env["DATABASE_URL"].endswith("?sslmode=verify-full&sslrootcert=/tls/ca.pem")
    assert stack.env()["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"  # the default env is unchanged


def test_the_default_broker_has_no_secured_listener(tmp_path: Path) -> None:
    props = devstack.KafkaNode(dir=str(tmp_path), port=9092, controller_port=9093)._write_config().read_text()
    assert "SASL" not in props
