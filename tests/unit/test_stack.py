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
