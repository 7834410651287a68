"""dev/audit.py's reading of a pip-audit report: a vulnerability fails, an unreachable service never passes quietly."""

from __future__ import annotations

from typing import Any

import pytest

from dev.audit import verdict


def dep(name: str, vulns: list[dict[str, Any]] | None = None, skip: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "version": "1.0"}
    if skip:
        d["skip_reason"] = skip
    else:
        d["vulns"] = vulns or []
    return d


def test_a_known_vulnerability_fails_naming_package_id_and_fix() -> None:
    report = {"dependencies": [dep("ok"), dep("bad", [{"id": "GHSA-x", "fix_versions": ["1.1"]}])]}
    code, message = verdict(report, required=False)
    assert code == 1
    assert "bad 1.0: GHSA-x (fixed in 1.1)" in message


@pytest.mark.parametrize(("required", "code"), [(False, 0), (True, 1)])
def test_no_data_at_all_is_a_loud_skip_or_a_failure_when_required(required: bool, code: int) -> None:
    report = {"dependencies": [dep("a", skip="Dependency not found on PyPI"), dep("b", skip="not found")]}
    got, message = verdict(report, required=required)
    assert got == code
    assert "AUDIT NOT PERFORMED" in message


def test_a_partial_audit_fails() -> None:
    assert verdict({"dependencies": [dep("a"), dep("b", skip="x")]}, required=False)[0] == 1


def test_an_empty_report_fails_and_a_clean_one_passes() -> None:
    assert verdict({"dependencies": []}, required=False)[0] == 1
    assert verdict({"dependencies": [dep("a"), dep("b")]}, required=False) == (
        0,
        "audit: 2 locked packages, no known vulnerabilities",
    )
