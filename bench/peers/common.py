"""What the peer measurements share: the Quix process, committed offsets, the topics each peer reads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from aiokafka.admin import AIOKafkaAdminClient

from bench import worker_bench as wb
from bench.peers import fetch, flat
from dev import stack as devstack

QUIX_APP = Path(__file__).resolve().parent / "quix_app.py"


class Committed:
    """The group's committed offsets in Kafka, summed over the topic's partitions, through one admin client."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)

    async def __aenter__(self) -> Committed:
        await self.admin.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.admin.close()

    async def total(self, group: str, topic: str) -> int:
        offsets = await self.admin.list_consumer_group_offsets(group)
        return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)

    async def until(self, group: str, topic: str, n: int, timeout_s: float, alive: Any = None) -> float | None:
        """The moment the group has committed n records (polled every 100 ms), or None on timeout / exit."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.total(group, topic) >= n:
                return time.time()
            if alive is not None and not alive():
                return None
            await asyncio.sleep(0.1)
        return None


class QuixProcess:
    """bench/peers/quix_app.py in Quix's own virtualenv, consuming ``topic`` as group ``topic``."""

    def __init__(self, bench: wb.Bench, topic: str, dsn: str, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        url = urlsplit(dsn)
        self.status = directory / f"{topic}.first"
        self.status.unlink(missing_ok=True)
        cmd = [str(fetch.QUIX_PYTHON), str(QUIX_APP), "--bootstrap", bench.bootstrap, "--topic", topic]
        cmd += ["--group", topic, "--host", url.hostname or "127.0.0.1", "--port", str(url.port)]
        cmd += ["--dbname", url.path.lstrip("/"), "--status", str(self.status)]
        cmd += ["--state-dir", str(directory / f"{topic}.state")]
        self.log = directory / f"{topic}.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def first_message(self) -> dict[str, float] | None:
        try:
            result: dict[str, float] = json.loads(self.status.read_text())
        except (OSError, ValueError):
            return None
        return result

    def last_error(self) -> str:
        """The exception's class, from the log's last line naming one (class names carry no record values)."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            head = line.split(":", 1)[0].strip()
            if head.endswith(("Error", "Exception", "PKNullValue")) and " " not in head:
                return head
        return ""

    def stop(self) -> None:
        devstack._terminate(self.pid)


def events_of(records: Sequence[wb.Record]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(v) for _, v in records]


def connect_records(records: Sequence[wb.Record]) -> list[wb.Record]:
    """The same events, keyed the same, each as its pre-flattened appointment row (bench/peers/flat.py)."""
    return [(k, flat.connect_value(msgspec.json.decode(v))) for k, v in records]
