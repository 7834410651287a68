"""Issue 10, part 3, through a real `carsys-ingest run`: keys that are not the event's are stored by the event,
counted in /metrics and logged with coordinates only; a padded dealer id is the same tenant."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from dev import samples
from dev.db import fetch, fetchval
from dev.kafka import produce, read_all
from dev.process import WorkerProcess, worker_env
from dev.waiting import eventually
from tests import expected
from tests.conftest import TopicFactory

pytestmark = pytest.mark.timeout(240)

WRONG_DEALER, WRONG_NUMBER, NO_KEY = 4, 3, 3


@pytest.fixture
async def topic(create_topic: TopicFactory) -> str:
    name = await create_topic(f"carsys.{uuid.uuid4().hex[:10]}", partitions=4)
    await create_topic(f"{name}.dlq")
    return name


def _keyed(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    """Correct keys for most events; then wrong dealer parts, wrong DMS numbers and no key at all."""
    keyed: list[tuple[bytes | None, bytes]] = []
    for n, event in enumerate(events):
        dms = event["appointment"]["dms_number"]
        if n % 4 == 1 and n // 4 < WRONG_DEALER:
            key: bytes | None = f"someone-else/{dms}".encode()
        elif n % 4 == 2 and n // 4 < WRONG_NUMBER:
            key = f"{event['dealer_id']}/not-{dms}".encode()
        elif n % 4 == 3 and n // 4 < NO_KEY:
            key = None
        else:
            key = samples.key_of(event)
        keyed.append((key, samples.encode(event)))
    return keyed


def _metric(body: str, sample: str) -> float:
    return float(next((line.split()[-1] for line in body.splitlines() if line.startswith(sample + " ")), "0"))


async def _applied(dsn: str) -> int:
    try:
        return int(await fetchval(dsn, "SELECT count(*) FROM applied_events"))
    except Exception:  # not migrated yet
        return -1


async def test_mismatching_keys_are_stored_by_the_event_and_counted(
    kafka_bootstrap: str, fresh_database_url: str, topic: str, tmp_path: Path
) -> None:
    events = list(samples.stream(seed=21, events=60))
    # The same dealer, padded (a fixed-width export): one tenant, keyed by the trimmed id.
    events[0]["dealer_id"] = f"  {events[0]['dealer_id']}\t"
    keyed = _keyed(events)
    assert keyed[0][0] == samples.key_of({**events[0], "dealer_id": events[0]["dealer_id"].strip()})
    await produce(kafka_bootstrap, topic, keyed)
    env = worker_env(bootstrap=kafka_bootstrap, database_url=fresh_database_url, topic=topic, group=topic)
    worker = WorkerProcess(env, tmp_path / "w.log").start()
    try:

        async def all_applied() -> bool:
            return await _applied(fresh_database_url) == len(events)

        await eventually(all_applied, timeout_s=90)
        _, body = worker.get("/metrics")
    finally:
        assert worker.stop() == 0

    await expected.assert_tables_match(fresh_database_url, events)  # by the payload, whatever the key said
    dealers = {r["dealer_id"] for r in await fetch(fresh_database_url, "SELECT DISTINCT dealer_id FROM appointments")}
    assert dealers == {e["dealer_id"].strip() for e in events}
    assert await read_all(kafka_bootstrap, f"{topic}.dlq") == []

    assert _metric(body, 'carsys_key_mismatch_total{part="dealer_id"}') == WRONG_DEALER
    assert _metric(body, 'carsys_key_mismatch_total{part="dms_number"}') == WRONG_NUMBER
    assert _metric(body, 'carsys_key_mismatch_total{part="missing"}') == NO_KEY

    log = worker.log_text()
    warnings = [json.loads(line) for line in log.splitlines() if "record key is not the event" in line]
    assert sum(w["mismatched_in_batch"] for w in warnings) == WRONG_DEALER + WRONG_NUMBER + NO_KEY
    assert all({"topic", "partition", "offset", "event_id", "part"} <= w.keys() for w in warnings)
    assert "someone-else" not in log  # never the key
    assert "not-" not in log
    expected.assert_no_personal_data(log, events)
