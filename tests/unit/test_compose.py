"""compose.yaml cannot run here (no Docker engine); keep it consistent with the worker's configuration instead."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from worker import config
from worker.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CHART_VALUES = REPO / "deploy" / "helm" / "carsys-ingest" / "values.yaml"
# TODO(wave 3 merge): MIGRATE_ON_START is added to worker/config.VARIABLES by the security branch; drop this then.


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


# --- the same settings and probes as the Helm chart (deploy/helm/carsys-ingest) ---------------------------------


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(CHART_VALUES.read_text())
    return values


def chart_env() -> dict[str, str]:
    """What the chart's ConfigMap holds (empty values are left out), as templates/configmap.yaml renders it."""
    values = chart_values()
    env = {k: str(v) for k, v in values["config"].items() if str(v) != ""}
    env["MIGRATE_ON_START"] = "false" if values["migrations"]["enabled"] else "true"
    return env


def test_compose_and_chart_resolve_to_the_same_configuration() -> None:
    worker = {k: str(v) for k, v in compose()["services"]["worker"]["environment"].items()}
    chart = chart_env()
    from_compose = msgspec.structs.asdict(config.from_env(worker))
    from_chart = msgspec.structs.asdict(config.from_env({**chart, "DATABASE_URL": worker["DATABASE_URL"]}))
    assert from_compose == from_chart
    # Replicas never migrate at start: the chart's hook Job and compose's `init` do.
    assert worker["MIGRATE_ON_START"] == chart["MIGRATE_ON_START"] == "false"
    assert "DATABASE_URL" not in chart, "the chart reads it from the existing Secret, as DATABASE_URL_FILE"


def test_compose_healthcheck_is_the_charts_readiness_probe() -> None:
    worker = compose()["services"]["worker"]
    probes = chart_values()["probes"]
    readiness = probes["readiness"]
    port = chart_env()["METRICS_PORT"]
    test = " ".join(worker["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}{readiness['path']}'" in test
    check = worker["healthcheck"]
    assert _seconds(check["interval"]) == readiness["periodSeconds"]
    assert _seconds(check["timeout"]) == readiness["timeoutSeconds"]
    assert check["retries"] == readiness["failureThreshold"]
    startup = probes["startup"]
    assert _seconds(check["start_period"]) == startup["periodSeconds"] * startup["failureThreshold"]


def test_compose_grace_period_is_the_charts() -> None:
    worker = compose()["services"]["worker"]
    values = chart_values()
    grace_s = math.ceil(float(values["config"]["SHUTDOWN_TIMEOUT_S"])) + values["shutdown"]["marginSeconds"]
    assert _seconds(worker["stop_grace_period"]) == grace_s


def _seconds(duration: str) -> int:
    assert re.fullmatch(r"\d+s", duration), duration
    return int(duration[:-1])
