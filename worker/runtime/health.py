"""``/metrics``, ``/healthz`` and ``/readyz`` on one small asyncio HTTP server (no web framework needed for three GETs).

The server starts first, before migrations, the pool and Kafka, so that a start-up probe can tell "starting" (it
answers) from "dead" (connection refused).

- ``/healthz``: the process is alive and its loop made progress (a poll, a batch, a retry wait, a start-up step)
  within ``health_stall_timeout_s``; a stuck loop fails it, so the orchestrator restarts the replica.
- ``/readyz``: start-up is over (the topics exist), the consumer is a member of its group with its assignment, and
  PostgreSQL answered recently. docs/operations.md tabulates both per state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from worker.runtime.failures import port_failure
from worker.runtime.metrics import Metrics


class Health:
    def __init__(self, *, stall_timeout_s: float, db_fresh_s: float = 15.0) -> None:
        self.stall_timeout_s = stall_timeout_s
        self.db_fresh_s = db_fresh_s
        self.last_beat = time.monotonic()
        self.last_db_ok = 0.0
        self.joined = False
        self.topics_ok = False

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def db_ok(self) -> None:
        self.last_db_ok = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat < self.stall_timeout_s

    def ready(self) -> bool:
        return self.topics_ok and self.joined and time.monotonic() - self.last_db_ok < self.db_fresh_s


Route = Callable[[], tuple[int, bytes, str]]


class HealthServer:
    def __init__(self, health: Health, metrics: Metrics, *, refresh: Callable[[], Awaitable[None]]) -> None:
        self._refresh = refresh  # updates the gauges and the database check before a scrape is answered
        self._routes: dict[str, Route] = {
            "/metrics": lambda: (200, metrics.exposition(), "text/plain; version=0.0.4"),
            "/healthz": lambda: _status(health.alive()),
            "/readyz": lambda: _status(health.ready()),
        }
        self._server: asyncio.Server | None = None

    async def start(self, port: int, host: str = "0.0.0.0") -> int:  # noqa: S104 - containers are scraped from outside
        try:
            self._server = await asyncio.start_server(self._serve, host, port)
        except OSError as exc:
            raise port_failure(exc, port) from None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            parts = request.split(b" ", 2)
            path = parts[1].decode("ascii", "replace").split("?")[0] if len(parts) > 1 else ""
            route = self._routes.get(path)
            if path == "/metrics":
                # A scrape measures afresh (lag from the broker, the pool, the database check). The probes answer at
                # once from the last refresh (every few seconds): a probe's timeout is often 1 s.
                await self._refresh()
            code, body, ctype = route() if route else (404, b"not found\n", "text/plain")
            head = f"HTTP/1.1 {code} {'OK' if code == 200 else 'ERR'}\r\nContent-Type: {ctype}\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _status(ok: bool) -> tuple[int, bytes, str]:
    return (200, b"ok\n", "text/plain") if ok else (503, b"unavailable\n", "text/plain")
