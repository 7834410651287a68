"""A Kafka Connect 4.1.1 worker in standalone mode with the Debezium JDBC sink, for the peer benchmark.

Started with ``java`` on the jars bench/peers/fetch.py resolved (no Kafka distribution, like dev/stack.py's broker);
connectors are created over its REST API.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.peers import fetch
from dev import stack as devstack


def sink_config(topic: str, dsn: str, table: str, tasks: int, *, dead_letters: str | None = None) -> dict[str, str]:
    """The Debezium JDBC sink as a user would configure it for this data: upsert on the appointment's key."""
    url = urlsplit(dsn)
    config = {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": str(tasks),
        "topics": topic,
        "connection.url": f"jdbc:postgresql://{url.hostname}:{url.port}{url.path}",
        "connection.username": url.username or "postgres",
        "connection.password": url.password or "",
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": "dealer_id,dms_number",
        "schema.evolution": "basic",
        "collection.name.format": table,
    }
    if dead_letters:
        # What a careful user adds: bad records to a dead-letter topic instead of a failed task.
        config |= {
            "errors.tolerance": "all",
            "errors.deadletterqueue.topic.name": dead_letters,
            "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": "true",
        }
    return config


class ConnectWorker:
    def __init__(self, bootstrap: str, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = devstack.free_port()
        self.bootstrap = bootstrap
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _write_config(self) -> Path:
        props = {
            "bootstrap.servers": self.bootstrap,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
            "offset.storage.file.filename": str(self.dir / "offsets"),
            # Sink offsets are committed to the group at this interval (default 60 s): the window's end is seen by it.
            "offset.flush.interval.ms": "1000",
            "plugin.path": str(fetch.PLUGIN_PATH),
            "plugin.discovery": "only_scan",
            "listeners": f"http://127.0.0.1:{self.port}",
        }
        (self.dir / "log4j2.properties").write_text(
            "status = warn\nappender.file.type = File\nappender.file.name = FILE\n"
            f"appender.file.fileName = {self.dir / 'connect.log'}\n"
            "appender.file.layout.type = PatternLayout\nappender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.file.ref = FILE\n"
        )
        path = self.dir / "worker.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def start(self, timeout_s: float = 180.0) -> None:
        config = self._write_config()
        # connect-standalone.sh's default heap.
        cmd = ["java", "-Xms256m", "-Xmx2g", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
        cmd += [f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}", "-cp", f"{fetch.CONNECT_LIBS}/*"]
        cmd += ["org.apache.kafka.connect.cli.ConnectStandalone", str(config)]
        with open(self.dir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Connect exited with {self.proc.returncode}; see {self.dir}")
            try:
                if "JdbcSinkConnector" in json.dumps(self.request("GET", "/connector-plugins")):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Connect did not start within {timeout_s:.0f}s; see {self.dir}")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def create(self, name: str, config: dict[str, str]) -> None:
        self.request("POST", "/connectors", {"name": name, "config": config})

    def status(self, name: str) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self.request("GET", f"/connectors/{name}/status")
        except urllib.error.HTTPError:
            return {}
        return result

    def task_states(self, name: str) -> list[str]:
        return [t["state"] for t in self.status(name).get("tasks", [])]

    def wait_tasks(self, name: str, state: str, tasks: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while self.task_states(name) != [state] * tasks:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: tasks {self.task_states(name)}, expected {tasks} {state}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            devstack._terminate(self.proc.pid)
            self.proc = None
