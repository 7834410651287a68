"""Every metric the Grafana dashboard and the alert rules query is one the worker exports.

The exported names come from the worker's own registry (``worker.runtime.metrics.Metrics``), as Prometheus sees
them: counters with ``_total``, histograms with ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from worker.runtime.metrics import Metrics

FILES = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "carsys-ingest" / "files"

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_NOT_SERIES = [
    r'"(?:[^"\\]|\\.)*"',  # strings (label values, regexes)
    r"\{[^}]*\}",  # label matchers
    r"\[[^\]]*\]",  # ranges and subqueries
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",  # label lists
]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (identifiers that are not functions, keywords or labels)."""
    for pattern in _NOT_SERIES:
        expr = re.sub(pattern, " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        if match[2] is None and match[1] not in _KEYWORDS:
            names.add(match[1])
    return names


def _sample_names(family: Metric) -> set[str]:
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"]}
    return {family.name + suffix for suffix in suffixes.get(family.type, [""])}


def exported() -> set[str]:
    return {n for family in Metrics().registry.collect() for n in _sample_names(family)}


def _dashboard_exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from _dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dashboard_exprs(item)


def _rule_exprs() -> list[str]:
    rules = yaml.safe_load((FILES / "alerts.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _label_values(expr: str) -> str:
    # Grafana's label_values(metric{...}, label) is not PromQL: its first argument is the series selector.
    found = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", expr)
    return found[1] if found else expr


def test_the_extractor_finds_series_and_ignores_the_rest() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, pod) (rate(a_seconds_bucket{job=~"x|y", le!="1"}[$__rate_interval])))'
        " / on (pod) group_left b_total offset 5m and bool c:recorded > 3"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c:recorded"}
    assert metric_names(_label_values('label_values(carsys_build_info{namespace="$namespace"}, job)')) == {
        "carsys_build_info"
    }


def test_the_registry_names_follow_prometheus_conventions() -> None:
    names = exported()
    assert "carsys_events_consumed_total" in names
    assert "carsys_batch_duration_seconds_bucket" in names
    assert "process_resident_memory_bytes" in names


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_queried_metric_is_exported(source: str) -> None:
    if source == "dashboard":
        exprs = [_label_values(e) for e in _dashboard_exprs(json.loads((FILES / "dashboard.json").read_text()))]
    else:
        exprs = _rule_exprs()
    used = set().union(*(metric_names(e) for e in exprs))
    assert len(used) >= (15 if source == "dashboard" else 8), used
    missing = used - exported()
    assert not missing, f"not exported by the worker: {sorted(missing)}"


def test_the_dashboard_shows_every_worker_metric() -> None:
    """Every carsys_ family the worker exports (or is promised to) has a panel; process_/python_ ones may not."""
    exprs = [_label_values(e) for e in _dashboard_exprs(json.loads((FILES / "dashboard.json").read_text()))]
    used = set().union(*(metric_names(e) for e in exprs))
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported()}
    unshown = {f for f in families if f.startswith("carsys_") and not any(u.startswith(f) for u in used)}
    assert not unshown, sorted(unshown)
