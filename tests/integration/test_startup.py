"""Loud start-up and honest probes: real `carsys-ingest run` processes, each given one thing wrong.

Each misconfiguration ends within seconds with its exit code and one line naming the variable (and the topic or
server), no traceback, every other line one JSON object. The probes answer from the first second: `/healthz` 200 and
`/readyz` 503 while starting, both 200 when consuming, `/readyz` 503 again while PostgreSQL is unreachable.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from dev.process import REPO, WorkerProcess, worker_env
from dev.stack import free_port
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory

pytestmark = pytest.mark.timeout(120)

BUDGET_S = 3  # STARTUP_TIMEOUT_S of these runs
# Python start-up and imports (~2 s on the shared 2-core machine) + the budget + a clean exit, with room to spare.
EXIT_WITHIN_S = BUDGET_S + 12


@pytest.fixture
async def topic(create_topic: TopicFactory) -> str:
    name = await create_topic(f"carsys.start.{uuid.uuid4().hex[:10]}", partitions=2)
    await create_topic(f"{name}.dlq")
    return name


@pytest.fixture
def base_env(kafka_bootstrap: str, database_url: str, topic: str) -> dict[str, str]:
    return worker_env(
        bootstrap=kafka_bootstrap,
        database_url=database_url,
        topic=topic,
        group=topic,
        LOG_LEVEL="INFO",
        STARTUP_TIMEOUT_S=str(BUDGET_S),
    )


@dataclass
class Ending:
    code: int
    seconds: float
    lines: list[str]

    def the_line(self) -> str:
        """The one line that says what is wrong (plain, or the `event` of a JSON line)."""
        said = [line for line in map(expected.said, self.lines) if line.startswith("carsys-ingest:")]
        assert len(said) == 1, self.lines
        return said[0]


def run_to_end(env: dict[str, str], tmp_path: Path, name: str = "w") -> Ending:
    worker = WorkerProcess(env, tmp_path / f"{name}.log")
    started = time.monotonic()
    worker.start()
    code = worker.wait(60)
    return Ending(code, time.monotonic() - started, worker.log_text().splitlines())


def assert_no_traceback_and_json_lines(ending: Ending) -> None:
    text = "\n".join(ending.lines)
    assert "Traceback" not in text
    for line in ending.lines:
        assert "exception" not in json.loads(line), line  # every line one JSON object, none with a traceback


def with_server(dsn: str, netloc: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(netloc=netloc))


def closed_port() -> int:
    return free_port()  # nothing listens there


MALFORMED_BOOTSTRAP = ["localhost", ":9092", "broker:9092:x", "broker:99999", "a:9092,"]


@pytest.mark.parametrize("value", MALFORMED_BOOTSTRAP)
def test_a_malformed_bootstrap_string_is_a_configuration_error(
    base_env: dict[str, str], tmp_path: Path, value: str
) -> None:
    ending = run_to_end({**base_env, "KAFKA_BOOTSTRAP_SERVERS": value}, tmp_path)
    assert ending.code == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in ending.the_line()
    assert ending.lines == [ending.the_line()]  # before logging is even configured: that one plain line
    assert ending.seconds < EXIT_WITHIN_S


@pytest.mark.parametrize("which", ["KAFKA_TOPIC", "KAFKA_DLQ_TOPIC"])
def test_a_missing_topic_is_a_deployment_error(base_env: dict[str, str], tmp_path: Path, which: str) -> None:
    missing = f"carsys.missing.{uuid.uuid4().hex[:8]}"
    ending = run_to_end({**base_env, which: missing}, tmp_path)
    assert ending.code == 3
    line = ending.the_line()
    assert missing in line
    assert f"({which})" in line
    assert ending.seconds < EXIT_WITHIN_S
    assert_no_traceback_and_json_lines(ending)


def test_the_traceback_is_there_at_debug_level_as_a_field(base_env: dict[str, str], tmp_path: Path) -> None:
    ending = run_to_end({**base_env, "KAFKA_TOPIC": "carsys.missing.debug", "LOG_LEVEL": "DEBUG"}, tmp_path)
    assert ending.code == 3
    fields = [json.loads(line) for line in ending.lines]  # still one JSON object per line, aiokafka's included
    assert any("exception" in f for f in fields)


def test_postgresql_at_a_closed_port_is_unreachable_within_the_budget(base_env: dict[str, str], tmp_path: Path) -> None:
    port = closed_port()
    dsn = with_server(base_env["DATABASE_URL"], f"carsys:s3cret-pw@127.0.0.1:{port}")
    ending = run_to_end({**base_env, "DATABASE_URL": dsn}, tmp_path)
    assert ending.code == 4
    line = ending.the_line()
    assert f"127.0.0.1:{port}" in line
    assert "DATABASE_URL" in line
    assert "s3cret-pw" not in "\n".join(ending.lines)
    assert BUDGET_S <= ending.seconds < EXIT_WITHIN_S
    assert_no_traceback_and_json_lines(ending)


def test_an_unknown_postgresql_host_is_unreachable(base_env: dict[str, str], tmp_path: Path) -> None:
    dsn = with_server(base_env["DATABASE_URL"], "carsys:s3cret-pw@db.invalid:5432")
    ending = run_to_end({**base_env, "DATABASE_URL": dsn}, tmp_path)
    assert ending.code == 4
    assert "db.invalid:5432" in ending.the_line()
    assert "DATABASE_URL" in ending.the_line()
    assert "s3cret-pw" not in "\n".join(ending.lines)
    assert ending.seconds < EXIT_WITHIN_S
    assert_no_traceback_and_json_lines(ending)


def test_credentials_postgresql_refuses_are_an_authentication_error(base_env: dict[str, str], tmp_path: Path) -> None:
    # The test server trusts local connections, so a wrong password is not refused there; a role that does not
    # exist is (28000), through the same translation as a wrong password (28P01, unit-tested).
    server = urlsplit(base_env["DATABASE_URL"]).netloc.rsplit("@", 1)[-1]
    dsn = with_server(base_env["DATABASE_URL"], f"no_such_role:s3cret-pw@{server}")
    ending = run_to_end({**base_env, "DATABASE_URL": dsn}, tmp_path)
    assert ending.code == 6
    line = ending.the_line()
    assert server in line
    assert "DATABASE_URL" in line
    assert "s3cret-pw" not in "\n".join(ending.lines)
    assert ending.seconds < EXIT_WITHIN_S
    assert_no_traceback_and_json_lines(ending)


@pytest.mark.parametrize("servers", ["127.0.0.1:{port}", "broker.invalid:9092"])
def test_kafka_brokers_that_do_not_answer_are_unreachable(
    base_env: dict[str, str], tmp_path: Path, servers: str
) -> None:
    value = servers.format(port=closed_port())
    ending = run_to_end({**base_env, "KAFKA_BOOTSTRAP_SERVERS": value}, tmp_path)
    assert ending.code == 4
    line = ending.the_line()
    assert value in line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line
    assert ending.seconds < EXIT_WITHIN_S
    assert_no_traceback_and_json_lines(ending)


def test_a_metrics_port_in_use_is_a_deployment_error(base_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ending = run_to_end({**base_env, "METRICS_PORT": str(port)}, tmp_path)
    assert ending.code == 3
    assert "METRICS_PORT" in ending.the_line()
    assert str(port) in ending.the_line()
    assert ending.seconds < EXIT_WITHIN_S
    assert_no_traceback_and_json_lines(ending)


# ------------------------------------------------------------------------------------------------ probes


async def test_probes_while_starting_healthz_answers_and_readyz_refuses(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    dsn = with_server(base_env["DATABASE_URL"], f"carsys@127.0.0.1:{closed_port()}")
    worker = WorkerProcess({**base_env, "DATABASE_URL": dsn, "STARTUP_TIMEOUT_S": "12"}, tmp_path / "w.log").start()
    try:
        await eventually(lambda: _answers(worker, "/healthz", 200), workers=[worker], what="/healthz while starting")
        assert worker.get("/readyz")[0] == 503
        assert worker.get("/metrics")[0] == 200
        assert _gauge(worker, "carsys_ready") == 0
    finally:
        code = worker.wait(30)
    assert code == 4


class _Cuttable(socketserver.ThreadingTCPServer):
    """A TCP forwarder to PostgreSQL that a test can cut (every connection dropped, new ones refused) and restore."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sockets: list[socket.socket] = []
        self.cut = threading.Event()
        super().__init__(("127.0.0.1", 0), _Forward)

    def sever(self) -> None:
        self.cut.set()
        for s in list(self.sockets):
            _close(s)


class _Forward(socketserver.BaseRequestHandler):
    server: _Cuttable

    def handle(self) -> None:
        if self.server.cut.is_set():
            return
        upstream = socket.create_connection(self.server.target)
        self.server.sockets += [self.request, upstream]
        threading.Thread(target=_pump, args=(upstream, self.request), daemon=True).start()
        _pump(self.request, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(s: socket.socket) -> None:
    # shutdown() first: a bare close() while the other pump thread sits in recv() on it sends no FIN on Linux, and
    # the peer would wait for ever.
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


@pytest.fixture
def cuttable_database(base_env: dict[str, str]) -> Iterator[tuple[_Cuttable, str]]:
    parts = urlsplit(base_env["DATABASE_URL"])
    proxy = _Cuttable((parts.hostname or "127.0.0.1", parts.port or 5432))
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    try:
        yield proxy, with_server(base_env["DATABASE_URL"], f"{userinfo}127.0.0.1:{proxy.server_address[1]}")
    finally:
        proxy.sever()
        proxy.shutdown()
        proxy.server_close()


@pytest.mark.timeout(180)
async def test_probes_when_consuming_and_when_postgresql_goes_away(
    base_env: dict[str, str], cuttable_database: tuple[_Cuttable, str], tmp_path: Path
) -> None:
    proxy, dsn = cuttable_database
    worker = WorkerProcess({**base_env, "DATABASE_URL": dsn}, tmp_path / "w.log").start()
    try:
        await eventually(lambda: _answers(worker, "/readyz", 200), workers=[worker], what="ready when consuming")
        assert worker.get("/healthz")[0] == 200
        assert _gauge(worker, "carsys_ready") == 1
        proxy.sever()
        # Not ready once PostgreSQL has not answered for 15 s; still alive (a restart would not bring it back).
        await eventually(lambda: _answers(worker, "/readyz", 503), workers=[worker], timeout_s=45, what="not ready")
        assert worker.get("/healthz")[0] == 200
        assert _gauge(worker, "carsys_ready") == 0
        proxy.cut.clear()
        await eventually(lambda: _answers(worker, "/readyz", 200), workers=[worker], timeout_s=45, what="ready again")
    finally:
        assert worker.stop() == 0


async def _answers(worker: WorkerProcess, path: str, status: int) -> bool:
    return worker.get(path)[0] == status


def _gauge(worker: WorkerProcess, name: str) -> float:
    body = worker.get("/metrics")[1]
    return next(float(line.split()[-1]) for line in body.splitlines() if line.startswith(f"{name} "))


# ------------------------------------------------------------------------------------------------ CLI output


@pytest.mark.parametrize("argv", [["schema"], ["dlq", "show"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(base_env: dict[str, str], argv: list[str]) -> None:
    """`carsys-ingest dlq show | head -1`: stdout's reader is gone before the command writes (the pipe is closed
    at once, so the write fails every time, not only when the output outgrows the pipe's buffer)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *argv],
        env={**os.environ, **base_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141  # as a Unix tool killed by SIGPIPE
    assert b"Traceback" not in err
    assert b"unreachable" not in err
    assert b"BrokenPipe" not in err
