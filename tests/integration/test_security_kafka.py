"""The worker and the tools against a secured broker: SASL_SSL with SCRAM-SHA-512 and a CA made for the run.

The shared stack is plaintext, so this module starts its own broker (dev/stack.py ``--secure``: a plaintext listener
next to the SASL_SSL one) and uses the run's PostgreSQL. Refusals (wrong password, unknown user, a CA that does not
match) must each end in one line naming the cause, exit 6, with the password in no output.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev import certs, samples
from dev import stack as devstack
from dev.db import fetchval
from dev.process import REPO, WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def secured(pg_admin_dsn: str) -> Iterator[devstack.Stack]:
    # Kafka only: PostgreSQL is the run's (passed in, so not started again).
    stack = devstack.up(f"secure-kafka-{os.getpid()}", fast=True, secure=True, environ={"DATABASE_URL": pg_admin_dsn})
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def secure_env(secured: devstack.Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The documented variables for SASL_SSL, the password through KAFKA_SASL_PASSWORD_FILE."""
    env = secured.secure_env()
    password_file = tmp_path_factory.mktemp("secrets") / "kafka-password"
    password_file.write_text(env.pop("KAFKA_SASL_PASSWORD") + "\n")
    topic = f"carsys.secure.{uuid.uuid4().hex[:8]}"
    return {
        **env,
        "KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "DATABASE_URL": database_url,
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "KAFKA_GROUP_ID": topic,
        "METRICS_PORT": "0",
        "LOG_FORMAT": "json",
    }


def password_of(secured: devstack.Stack) -> str:
    assert secured.kafka is not None
    assert secured.kafka.scram_users
    return next(iter(secured.kafka.scram_users.values()))


def cli(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", *argv],
        env={**clean, **env},
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    return result


def test_worker_publish_and_dlq_work_over_sasl_ssl(
    secured: devstack.Stack, secure_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    init = cli(["init", "--partitions", "2"], secure_env)
    assert init.returncode == 0, init.stderr[-2000:]

    valid = [e for e in samples.stream(seed=41, events=40) if e["event_type"] == "appointment.upserted"]
    lines = b"".join(samples.encode(e) + b"\n" for e in valid) + b'{"event_type": "appointment.exploded"}\n'
    published = cli(["publish", "--allow-invalid"], secure_env, stdin=lines)
    assert published.returncode == 0, published.stderr[-2000:]

    worker = WorkerProcess(
        {**worker_env(bootstrap="", database_url="", topic="", group=""), **secure_env, "METRICS_PORT": "0"},
        tmp_path / "secure-worker.log",
    ).start()
    distinct = len({e["event_id"] for e in valid})
    try:

        async def applied() -> bool:
            return bool(await fetchval(database_url, "SELECT count(*) FROM applied_events") == distinct)

        asyncio.run(eventually(applied, timeout_s=90, workers=[worker], what="the events applied over SASL_SSL"))

        async def one_letter() -> bool:
            listed = cli(["dlq", "list", "--json"], secure_env)
            return listed.returncode == 0 and json.loads(listed.stdout)["letters"] == 1

        asyncio.run(eventually(one_letter, timeout_s=60, every_s=1, what="the invalid event dead-lettered"))
    finally:
        assert worker.stop() == 0, worker.death_note("stopping")
    listed = cli(["dlq", "list"], secure_env)
    shown = cli(["dlq", "show", "--json"], secure_env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "ContractError" in shown.stdout
    outputs = [worker.log_text()] + [r.stdout + r.stderr for r in (init, published, listed, shown)]
    expected.assert_no_secrets("\n".join(outputs), [password_of(secured)])


def _wrong_ca(tmp_path: Path) -> str:
    return str(certs.make_ca(tmp_path / "other-ca", name="some other CA"))


REFUSALS = {
    "wrong password": ({"KAFKA_SASL_PASSWORD": "not-the-password"}, "refused the SASL login"),
    "unknown user": ({"KAFKA_SASL_USERNAME": "nobody"}, "refused the SASL login"),
    "a CA that does not match": ({"KAFKA_SSL_CAFILE": "<other>"}, "KAFKA_SSL_CAFILE must name the CA"),
}
COMMANDS = {"run": ["run"], "publish": ["publish"], "dlq list": ["dlq", "list"]}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("cause", list(REFUSALS))
def test_a_refusal_is_one_line_naming_its_cause_and_no_secret(
    secured: devstack.Stack, secure_env: dict[str, str], cause: str, command: str, tmp_path: Path
) -> None:
    change, wanted = REFUSALS[cause]
    env = {**secure_env, **change}
    if "KAFKA_SASL_PASSWORD" in change:
        env.pop("KAFKA_SASL_PASSWORD_FILE")
    if change.get("KAFKA_SSL_CAFILE"):
        env["KAFKA_SSL_CAFILE"] = _wrong_ca(tmp_path)
    valid = next(e for e in samples.stream(seed=42, events=5) if e["event_type"] == "appointment.upserted")
    result = cli(COMMANDS[command], env, stdin=samples.encode(valid) + b"\n")
    assert result.returncode == 6, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    ours = expected.operator_lines(result.stderr)
    assert len(ours) == 1, result.stderr[-2000:]
    assert expected.said(result.stderr.rstrip().splitlines()[-1]) == ours[0]  # the last word
    assert wanted in ours[0]
    assert secured.kafka is not None
    assert secured.kafka.sasl_bootstrap in ours[0]  # the server, by host:port
    expected.assert_no_secrets(result.stdout + result.stderr, [password_of(secured), "not-the-password"])


def test_plain_over_plaintext_is_refused_before_connecting(secure_env: dict[str, str]) -> None:
    env = {
        **secure_env,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # never contacted
    }
    result = cli(["run"], env)
    assert result.returncode == 2
    assert "KAFKA_ALLOW_PLAINTEXT_PASSWORD" in result.stderr
    allowed = cli(["run"], {**env, "KAFKA_ALLOW_PLAINTEXT_PASSWORD": "true", "RETRY_ATTEMPT_TIMEOUT_S": "1"})
    assert "KAFKA_ALLOW_PLAINTEXT_PASSWORD" not in allowed.stderr  # past the configuration: it tries to connect
