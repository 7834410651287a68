"""``carsys-ingest run`` as a real OS process, configured through its environment like in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from dev.stack import free_port

REPO = Path(__file__).resolve().parent.parent


class WorkerProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.metrics_port = int(env.get("METRICS_PORT", "0"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        log.close()
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout_s: float = 40) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=3) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return 0, ""  # not listening (yet)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def death_note(self, what: str) -> str:
        tail = "\n".join(self.log_text().splitlines()[-15:])
        code = self.proc.poll() if self.proc else None
        return f"worker {self.log_path.name} exited ({code}) while {what}:\n{tail}"


def worker_env(
    *, bootstrap: str, database_url: str, topic: str, group: str, metrics_port: int = 0, **extra: str
) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "DATABASE_URL": database_url,
        "KAFKA_TOPIC": topic,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "KAFKA_GROUP_ID": group,
        "METRICS_PORT": str(metrics_port or free_port()),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "BATCH_MAX_WAIT_MS": "100",
        "RETRY_INITIAL_BACKOFF_S": "0.2",
        "RETRY_MAX_BACKOFF_S": "2",
        "SHUTDOWN_TIMEOUT_S": "20",
        **extra,
    }
