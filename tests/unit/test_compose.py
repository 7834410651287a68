"""compose.yaml cannot run here (no Docker engine); keep it consistent with the worker's configuration instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from worker import config
from worker.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return data


def test_services_and_dependencies() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "postgres", "init", "worker"}
    assert services["worker"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    for dependency in ("kafka", "postgres"):
        assert services["init"]["depends_on"][dependency]["condition"] == "service_healthy"
        assert "healthcheck" in services[dependency]
    assert "healthcheck" in services["worker"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "ports" not in services["worker"], "a fixed host port would stop `--scale worker=3`"


def test_worker_environment_is_valid_configuration() -> None:
    services = compose()["services"]
    for name in ("init", "worker"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        assert set(env) <= set(config.VARIABLES), set(env) - set(config.VARIABLES)
        settings = config.from_env(env)
        assert settings.kafka_bootstrap_servers.split(":")[0] == "kafka"
        assert settings.database_url.split("@")[1].startswith("postgres:5432")
    env = services["worker"]["environment"]
    assert str(env["METRICS_PORT"]) in str(services["worker"]["healthcheck"]["test"])
    assert str(env["METRICS_PORT"]) in [str(p) for p in services["worker"]["expose"]]


def test_commands_exist_in_the_cli() -> None:
    parser = build_parser()
    for name in ("init", "worker"):
        command = compose()["services"][name]["command"]
        assert command[0] == "carsys-ingest"
        parser.parse_args(command[1:])  # exits (fails the test) on an unknown subcommand or option


def test_shutdown_grace_exceeds_the_worker_shutdown_timeout() -> None:
    worker = compose()["services"]["worker"]
    grace_s = int(worker["stop_grace_period"].rstrip("s"))
    settings = config.from_env({k: str(v) for k, v in worker["environment"].items()})
    assert grace_s > settings.shutdown_timeout_s
