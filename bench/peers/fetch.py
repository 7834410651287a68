"""Fetch the peers once into ~/.cache/carsys-ingest (never into the project's lock): ``make bench-peers`` runs it.

- Kafka Connect 4.1.1's runtime (standalone mode) from Maven Central, resolved with Maven like dev/stack.py's broker
  (bench/peers/maven/runtime.pom.xml);
- the Debezium JDBC sink 3.6.0.Final as a Connect plugin folder (bench/peers/maven/debezium-jdbc.pom.xml), without
  the jars the runtime provides (Kafka's, slf4j) and without Jackson, whose copies in a plugin folder clash with the
  runtime's;
- Quix Streams 3.28.1 with its PostgreSQL extra in a virtualenv of its own, from bench/peers/quix-requirements.txt
  (every version and hash pinned; regenerate with ``uv pip compile --generate-hashes``).

Standard library only, like dev/stack.py. Prints where everything is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from dev.stack import CACHE, REPO, StackError, _need

CONNECT_VERSION = "4.1.1"
DEBEZIUM_VERSION = "3.6.0.Final"
QUIX_VERSION = "3.28.1"
UV_VERSION = "0.13.9"
PEERS = REPO / "bench" / "peers"
CONNECT_LIBS = CACHE / f"connect-{CONNECT_VERSION}" / "libs"
PLUGIN_PATH = CACHE / f"connect-{CONNECT_VERSION}" / "plugins"
DEBEZIUM_PLUGIN = PLUGIN_PATH / f"debezium-connector-jdbc-{DEBEZIUM_VERSION}"
QUIX_VENV = CACHE / f"quixstreams-{QUIX_VERSION}"
QUIX_PYTHON = QUIX_VENV / "bin" / "python"
# Provided by the Connect runtime (parent class loader) or clashing with its copies.
PLUGIN_EXCLUDED_GROUPS = (
    "org.apache.kafka",
    "org.slf4j",
    "com.fasterxml.jackson.core",
    "com.fasterxml.jackson.datatype",
    "com.fasterxml.jackson.dataformat",
    "com.fasterxml.jackson.module",
)


def _maven(pom: Path, into: Path, *extra: str) -> None:
    mvn = _need("mvn", "install Maven (Debian: apt-get install maven)")
    _need("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    shutil.rmtree(into, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={into}", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"Maven could not resolve {pom.name}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    (into / ".complete").touch()


def connect() -> None:
    if not (CONNECT_LIBS / ".complete").exists():
        print(f"peers: Kafka Connect {CONNECT_VERSION} runtime -> {CONNECT_LIBS}", file=sys.stderr)
        _maven(PEERS / "maven" / "runtime.pom.xml", CONNECT_LIBS, f"-Dkafka.version={CONNECT_VERSION}")
    if not (DEBEZIUM_PLUGIN / ".complete").exists():
        print(f"peers: Debezium JDBC sink {DEBEZIUM_VERSION} -> {DEBEZIUM_PLUGIN}", file=sys.stderr)
        excluded = ",".join(PLUGIN_EXCLUDED_GROUPS)
        _maven(PEERS / "maven" / "debezium-jdbc.pom.xml", DEBEZIUM_PLUGIN, f"-DexcludeGroupIds={excluded}")


def quix() -> None:
    marker = QUIX_VENV / ".complete"
    requirements = PEERS / "quix-requirements.txt"
    if marker.exists() and marker.read_text() == requirements.read_text():
        return
    uv = CACHE / f"bootstrap-uv-{UV_VERSION}" / "bin" / "uv"
    if not uv.exists():
        raise StackError(f"{uv} missing: run `make venv` first")
    print(f"peers: Quix Streams {QUIX_VERSION} -> {QUIX_VENV}", file=sys.stderr)
    shutil.rmtree(QUIX_VENV, ignore_errors=True)
    for cmd in (
        [str(uv), "venv", "--quiet", str(QUIX_VENV), "--python", "python3"],
        [str(uv), "pip", "sync", "--quiet", "--python", str(QUIX_PYTHON), str(requirements)],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise StackError(f"{' '.join(cmd[:3])} failed:\n{result.stderr[-2000:]}")
    marker.write_text(requirements.read_text())


def main() -> int:
    try:
        connect()
        quix()
    except StackError as exc:
        print(f"peers: {exc}", file=sys.stderr)
        return 1
    print(f"peers: Connect runtime {CONNECT_LIBS}\npeers: plugin path {PLUGIN_PATH}\npeers: Quix {QUIX_PYTHON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
