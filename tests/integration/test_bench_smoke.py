"""The end-to-end benchmark runs (its figures are not checked: they depend on the machine).

``python -m bench.worker_bench --quick`` against this run's stack (KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL from the
``local_stack`` fixture via ``kafka_bootstrap`` and ``pg_admin_dsn``, so it starts no second stack), writing its
JSON into a temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dev.process import REPO

pytestmark = pytest.mark.timeout(180)

MEASUREMENTS = ("worker", "latency", "client_limit", "normalise_only", "database_limit", "postgres_floor", "naive")


def test_worker_bench_quick_run_writes_its_figures(kafka_bootstrap: str, pg_admin_dsn: str, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": pg_admin_dsn}
    result = subprocess.run(
        [sys.executable, "-m", "bench.worker_bench", "--quick", "--output", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "worker / database limit" in result.stdout
    report = json.loads((tmp_path / "latest.json").read_text())
    assert len(list(tmp_path.glob("worker-*.json"))) == 1
    assert report["quick"] is True
    assert report["stack_started_here"] is False
    for name in MEASUREMENTS:
        assert name in report["results"], name
    for name in ("worker", "client_limit", "normalise_only", "database_limit", "postgres_floor", "naive"):
        assert report["results"][name]["events_per_s"] > 0, name
    worker = report["results"]["worker"]
    assert worker["db_committed_offsets"] == worker["events"] == worker["kafka_committed_offsets"]
    assert worker["peak_rss_mib"] > 0
    assert worker["cpu_seconds"] > 0
    latency = report["results"]["latency"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert set(report["ratios"]) == {
        "worker_vs_database_limit",
        "worker_vs_postgres_floor",
        "worker_vs_naive",
        "worker_vs_client_limit",
    }
    assert all(value > 0 for value in report["ratios"].values())
