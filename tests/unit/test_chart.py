"""The Helm chart (deploy/helm/carsys-ingest), checked with the real tools: `helm lint` and `helm template` under the
default and the fully-enabled values, the rendered core objects against the Kubernetes OpenAPI schemas (offline,
kubernetes-validate), the CRD objects (ScaledObject, ServiceMonitor, PrometheusRule) structurally, and the alert rules
with `promtool check rules` and `promtool test rules`.

helm and promtool are built by `make tools` (cached under ~/.cache/carsys-ingest). Without them these tests skip,
unless CHART_TOOLS_REQUIRED=1 (set by `make chart-check`, which CI runs): then a missing tool fails.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from worker import config
from worker.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "carsys-ingest"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
# The chart's floor (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
CORE_KINDS = {"ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service"}
# TODO(wave 3 merge): MIGRATE_ON_START is added to worker/config.VARIABLES by the security branch; drop this then.

Objects = dict[tuple[str, str], dict[str, Any]]


def _tool(name: str) -> str:
    """The binary `make tools` built (its version from the Makefile), or $HELM / $PROMTOOL."""
    if env := os.environ.get(name.upper()):
        return env
    version = re.search(rf"^{name.upper()}_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert version, f"{name.upper()}_VERSION missing from the Makefile"
    path = Path.home() / ".cache" / "carsys-ingest" / "go-tools" / f"{name}-{version[1]}" / name
    if path.exists():
        return str(path)
    if os.environ.get("CHART_TOOLS_REQUIRED") == "1":
        pytest.fail(f"{path} missing: `make tools` builds it")
    pytest.skip(f"{name} not built (`make tools`)")


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@functools.cache
def _render(*options: str) -> Objects:
    out = _run(_tool("helm"), "template", "carsys-ingest", str(CHART), "--namespace", "claire", *options)
    docs = [d for d in yaml.safe_load_all(out) if d]
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(objects) == len(docs), "two objects share a kind and name"
    return objects


def _defaults() -> Objects:
    return _render()


def _all_on() -> Objects:
    return _render("--values", str(ALL_ON))


def _one(objects: Objects, kind: str) -> dict[str, Any]:
    found = [o for (k, _), o in objects.items() if k == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def _kinds(objects: Objects) -> set[str]:
    return {kind for kind, _ in objects}


def _container(objects: Objects, kind: str = "Deployment") -> dict[str, Any]:
    containers: list[dict[str, Any]] = _one(objects, kind)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _worker_config(objects: Objects) -> dict[str, str]:
    deployment = _one(objects, "Deployment")
    (source,) = _container(objects)["envFrom"]
    name = source["configMapRef"]["name"]
    assert name == deployment["metadata"]["name"]
    data: dict[str, str] = objects["ConfigMap", name]["data"]
    return data


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


# --- the real tools -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, ALL_ON], ids=["defaults", "all-on"])
def test_helm_lint_is_clean(values: Path | None) -> None:
    extra = ["--values", str(values)] if values else []
    out = _run(_tool("helm"), "lint", "--strict", str(CHART), *extra)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def _core_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for variant, objects in (("defaults", _defaults()), ("all-on", _all_on())):
        for (kind, name), obj in objects.items():
            if kind in CORE_KINDS:
                yield f"{variant}:{kind}/{name}", obj


def test_rendered_core_objects_validate_against_the_kubernetes_schemas() -> None:
    checked = 0
    for label, obj in _core_objects():
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{label} against {version}: {'.'.join(map(str, exc.path))}: {exc.message}")
            checked += 1
    assert checked >= 2 * 11, checked  # 5 default objects and 6 more all-on (2 ConfigMaps), per version


def test_kubernetes_validate_catches_a_wrong_field() -> None:
    """The validation above can fail: a misspelt field of a rendered Deployment is refused."""
    deployment = json.loads(json.dumps(_one(_defaults(), "Deployment")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_promtool_checks_the_rules() -> None:
    out = _run(_tool("promtool"), "check", "rules", str(CHART / "files" / "alerts.yaml"))
    alerts = [r for g in yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())["groups"] for r in g["rules"]]
    assert f"SUCCESS: {len(alerts)} rules found" in out


def test_promtool_unit_tests_cover_every_alert_and_pass() -> None:
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    tests = yaml.safe_load((CHART / "files" / "alerts-test.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    for alert in alerts:
        cases = [c for t in tests["tests"] for c in t["alert_rule_test"] if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in cases), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in cases), f"{alert}: no case where it stays quiet"
        firing = [a for c in cases for a in c["exp_alerts"]]
        assert all(a["exp_labels"]["namespace"] == "bad" for a in firing), f"{alert} fires on a good series"
    _run(_tool("promtool"), "test", "rules", str(CHART / "files" / "alerts-test.yaml"))


# --- what the chart renders -----------------------------------------------------------------------------------


def test_optional_parts_are_switched_by_values() -> None:
    optional = {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
    assert not optional & _kinds(_defaults())
    assert optional <= _kinds(_all_on())
    assert ("ConfigMap", "carsys-ingest-dashboard") in _all_on()
    assert ("ConfigMap", "carsys-ingest-dashboard") not in _defaults()
    bare = _render(
        "--set", "migrations.enabled=false", "--set", "podDisruptionBudget.enabled=false",
        "--set", "metricsService.enabled=false",
    )  # fmt: skip
    assert _kinds(bare) == {"ConfigMap", "Deployment"}


def test_the_image_user_is_the_dockerfiles() -> None:
    uid = re.search(r"^USER (\d+)(?::\d+)?$", (REPO / "Dockerfile").read_text(), re.M)
    assert uid
    for objects in (_defaults(), _all_on()):
        for kind in ("Deployment", "Job"):
            pod = _one(objects, kind)["spec"]["template"]["spec"]
            container = _container(objects, kind)
            assert pod["securityContext"]["runAsUser"] == int(uid[1])
            assert container["securityContext"]["runAsUser"] == int(uid[1])
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False


def test_the_container_is_locked_down_with_a_writable_tmp() -> None:
    for kind in ("Deployment", "Job"):
        pod = _one(_defaults(), kind)["spec"]["template"]["spec"]
        security = _container(_defaults(), kind)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        tmp = next(m for m in _container(_defaults(), kind)["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        assert "emptyDir" in volume


@pytest.mark.parametrize(("timeout_s", "margin_s"), [(None, None), ("25", "10"), ("50.5", "3"), ("1", "0")])
def test_termination_grace_exceeds_the_shutdown_timeout(timeout_s: str | None, margin_s: str | None) -> None:
    options = []
    if timeout_s is not None:
        options += [
            "--set-string",
            f"config.SHUTDOWN_TIMEOUT_S={timeout_s}",
            "--set",
            f"shutdown.marginSeconds={margin_s}",
        ]
    objects = _render(*options)
    grace = _one(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown_s = float(_worker_config(objects)["SHUTDOWN_TIMEOUT_S"])
    assert grace > shutdown_s or (margin_s == "0" and grace == math.ceil(shutdown_s))
    if margin_s not in (None, "0"):
        assert grace == math.ceil(shutdown_s) + int(margin_s)


def test_probes_use_the_workers_endpoints_on_metrics_port() -> None:
    for objects in (_defaults(), _all_on()):
        container = _container(objects)
        port = int(_worker_config(objects)["METRICS_PORT"])
        (container_port,) = container["ports"]
        assert container_port == {"name": "metrics", "containerPort": port, "protocol": "TCP"}
        paths = {probe: container[probe]["httpGet"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert paths["startupProbe"]["path"] == "/healthz"  # answers during start-up: "starting", not "dead"
        assert paths["livenessProbe"]["path"] == "/healthz"
        assert paths["readinessProbe"]["path"] == "/readyz"
        assert {p["port"] for p in paths.values()} == {"metrics"}


def test_the_configmap_is_valid_worker_configuration(tmp_path: Path) -> None:
    # The CA bundle is mounted in the pod; here a stand-in file at another path (the worker checks it is readable).
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    for objects in (_defaults(), _all_on()):
        env = _worker_config(objects)
        if "KAFKA_SSL_CAFILE" in env:
            env["KAFKA_SSL_CAFILE"] = str(ca)
        assert set(env) <= set(config.VARIABLES), set(env) - set(config.VARIABLES)
        assert not {"DATABASE_URL", "KAFKA_SASL_PASSWORD"} & set(env), "secrets belong in the Secret"
        # What the worker reads from the *_FILE files: stand-ins of the secrets themselves.
        files = [e["name"] for e in _container(objects)["env"] if e["name"].endswith("_FILE")]
        secrets = {name.removesuffix("_FILE"): "postgresql://u@db:5432/carsys" for name in files}
        settings = config.from_env({**env, **secrets})
        assert settings.metrics_port == int(env["METRICS_PORT"])
    assert set(_values()["config"]) <= set(config.VARIABLES)


def test_migrations_job_runs_as_a_hook_and_replicas_do_not_migrate() -> None:
    job = _one(_defaults(), "Job")
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    args = _container(_defaults(), "Job")["args"]
    assert args[0] == "carsys-ingest"
    assert build_parser().parse_args(args[1:]).command == "migrate"
    assert _worker_config(_defaults())["MIGRATE_ON_START"] == "false"
    without = _render("--set", "migrations.enabled=false")
    assert "Job" not in _kinds(without)
    assert _worker_config(without)["MIGRATE_ON_START"] == "true"


def test_secrets_are_files_from_the_existing_secret() -> None:
    for objects, expected in (
        (_defaults(), {"DATABASE_URL_FILE"}),
        (_all_on(), {"DATABASE_URL_FILE", "KAFKA_SASL_PASSWORD_FILE"}),
    ):
        for kind in ("Deployment", "Job"):
            container = _container(objects, kind)
            pod = _one(objects, kind)["spec"]["template"]["spec"]
            env = {e["name"]: e["value"] for e in container["env"]}
            assert {name for name in env if name.endswith("_FILE")} == expected
            secret = next(v for v in pod["volumes"] if "secret" in v)
            mount = next(m for m in container["volumeMounts"] if m["name"] == secret["name"])
            assert mount["readOnly"] is True
            keys = {item["key"] for item in secret["secret"]["items"]}
            for name in expected:
                directory, key = env[name].rsplit("/", 1)
                assert directory == mount["mountPath"]
                assert key in keys


def test_scaled_object_scales_on_the_groups_lag_up_to_the_partitions() -> None:
    objects = _all_on()
    scaled = _one(objects, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    deployment = _one(objects, "Deployment")
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    values = _values()
    assert scaled["spec"]["maxReplicaCount"] == values["kafka"]["partitions"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert all(isinstance(v, str) for v in meta.values()), "KEDA's trigger metadata is a map of strings"
    env = _worker_config(objects)
    assert meta["bootstrapServers"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == env["KAFKA_GROUP_ID"]
    assert meta["topic"] == env["KAFKA_TOPIC"]
    assert meta["allowIdleConsumers"] == "false"
    assert int(meta["lagThreshold"]) == values["autoscaling"]["keda"]["lagThreshold"]
    assert trigger["authenticationRef"]["name"] == "kafka-scram"


def test_lag_threshold_is_the_arithmetic_its_comment_states() -> None:
    """values.yaml: half the benchmark's per-replica rate, rounded to hundreds, times 30 s."""
    text = (CHART / "values.yaml").read_text()
    rate = int(re.search(r"One replica drained ([\d,]+) events/s", text)[1].replace(",", ""))  # type: ignore[index]
    assert re.search(
        rf"worker, end to end \(1 replica, defaults\) .* {rate}\n", (REPO / "docs" / "benchmarks.md").read_text()
    )
    assert _values()["autoscaling"]["keda"]["lagThreshold"] == round(rate / 2, -2) * 30


def test_resources_quote_the_benchmark_of_record() -> None:
    text = (CHART / "values.yaml").read_text()
    bench = (REPO / "docs" / "benchmarks.md").read_text()
    for figure in ("77.1%", "119.1 ms", "182.7 MiB", "36.0%", "62.3 MiB", "b26dc28"):
        assert figure in text, figure
        assert figure in bench, figure
    peak_mib = max(float(m) for m in re.findall(r"peak RSS ([\d.]+) MiB", text))
    resources = _values()["resources"]
    request_mib = int(resources["requests"]["memory"].removesuffix("Mi"))
    limit_mib = int(resources["limits"]["memory"].removesuffix("Mi"))
    assert peak_mib < request_mib < limit_mib
    assert "cpu" not in resources["limits"]


def test_service_monitor_selects_the_metrics_service() -> None:
    objects = _all_on()
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = _one(objects, "Service")
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_ships_the_rule_file_promtool_checks() -> None:
    rule = _one(_all_on(), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())


def test_dashboard_configmap_carries_the_sidecar_label_and_the_json() -> None:
    dashboard = _all_on()["ConfigMap", "carsys-ingest-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"]["k8s-sidecar-target-directory"] == "Carsys"
    (content,) = dashboard["data"].values()
    assert json.loads(content) == json.loads((CHART / "files" / "dashboard.json").read_text())


def test_pod_disruption_budget_selects_the_workers() -> None:
    objects = _defaults()
    pdb = _one(objects, "PodDisruptionBudget")
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_metrics_port_zero_is_refused() -> None:
    done = subprocess.run(
        [_tool("helm"), "template", "carsys", str(CHART), "--set-string", "config.METRICS_PORT=0"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "METRICS_PORT must not be 0" in done.stderr


def test_the_tools_are_the_pinned_versions() -> None:
    """`go install` builds carry no version ldflags; the module versions are in the binaries' build info."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.skip("go not installed: the binaries' build info cannot be read")
    makefile = (REPO / "Makefile").read_text()
    for tool, module in (("helm", "helm.sh/helm/v3"), ("promtool", "github.com/prometheus/prometheus")):
        version = re.search(rf"^{tool.upper()}_VERSION := (\S+)$", makefile, re.M)
        assert version
        info = _run(go, "version", "-m", _tool(tool))
        assert re.search(rf"^\s+mod\s+{re.escape(module)}\s+{re.escape(version[1])}\s", info, re.M), info


def test_the_configmap_holds_the_values_config() -> None:
    """tests/unit/test_compose.py compares compose.yaml with values.yaml's `config`: this is what the chart renders."""
    expected = {k: str(v) for k, v in _values()["config"].items() if str(v) != ""}
    assert _worker_config(_defaults()) == {**expected, "MIGRATE_ON_START": "false"}


def test_selectors_pick_the_replicas_and_not_the_migrations_pod() -> None:
    objects = _defaults()
    worker = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    migrations = _one(objects, "Job")["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": _one(objects, "Deployment")["spec"]["selector"]["matchLabels"],
        "PodDisruptionBudget": _one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "Service": _one(objects, "Service")["spec"]["selector"],
    }
    for kind, selector in selectors.items():
        assert selector.items() <= worker.items(), kind
        assert not selector.items() <= migrations.items(), f"{kind} selects the migrations pod"
