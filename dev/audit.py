"""``make audit``: pip-audit against the lock file, failing on a known vulnerability and never passing in silence.

The packages audited are exactly ``uv.lock``'s (``uv export --locked``), not whatever is in the virtualenv. pip-audit
asks a vulnerability service (PyPI's JSON API) per package; when that service cannot be reached it marks each
package "could not be audited" and still exits 0. This wrapper reads its JSON report instead:

- a known vulnerability in any package: exit 1, listing package, version, id and fixed versions;
- every package unaudited (no vulnerability data reachable from this machine): a loud ``AUDIT NOT PERFORMED``
  banner and exit 0, or exit 1 with ``AUDIT_REQUIRED=1`` (set it in CI that has network access);
- some packages unaudited and others not: exit 1 (something is wrong with the report, not with the network).

docs/security.md says what to do when a vulnerability is reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def export_lock(uv: str, target: Path) -> None:
    # --locked: fail if uv.lock no longer matches pyproject.toml (the audit would describe the wrong set).
    cmd = [uv, "export", "--locked", "--no-hashes", "--no-emit-project", "--all-groups", "-o", str(target)]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def run_pip_audit(requirements: Path, report: Path) -> int:
    cmd = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip"]
    cmd += ["--progress-spinner", "off", "--vulnerability-service", "pypi", "--format", "json", "-o", str(report)]
    return subprocess.run(cmd, check=False, cwd=REPO, stderr=subprocess.DEVNULL).returncode


def verdict(report: dict[str, Any], *, required: bool) -> tuple[int, str]:
    """(exit code, message) for a pip-audit JSON report. Pure: unit-tested in tests/unit/test_audit.py."""
    deps: list[dict[str, Any]] = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if "skip_reason" in d]
    if vulnerable:
        lines = [
            f"  {d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})"
            for d in vulnerable
            for v in d["vulns"]
        ]
        return 1, "audit: known vulnerabilities in locked packages:\n" + "\n".join(lines)
    if deps and len(skipped) == len(deps):
        banner = (
            f"AUDIT NOT PERFORMED: no vulnerability data could be fetched for any of the {len(deps)} locked packages"
            f" (first reason: {skipped[0]['skip_reason']}). Run `make audit` where PyPI's JSON API is reachable."
        )
        return (1 if required else 0), "*" * 100 + "\n" + banner + "\n" + "*" * 100
    if skipped:
        names = ", ".join(d["name"] for d in skipped)
        return 1, f"audit: {len(skipped)} of {len(deps)} locked packages could not be audited: {names}"
    if not deps:
        return 1, "audit: pip-audit reported no packages at all"
    return 0, f"audit: {len(deps)} locked packages, no known vulnerabilities"


def main() -> int:
    uv = os.environ.get("UV", "uv")
    with tempfile.TemporaryDirectory() as tmp:
        requirements, report = Path(tmp) / "requirements.txt", Path(tmp) / "audit.json"
        export_lock(uv, requirements)
        code = run_pip_audit(requirements, report)
        if not report.exists():
            print(f"audit: pip-audit failed (exit {code}) without a report", file=sys.stderr)
            return 1
        status, message = verdict(json.loads(report.read_text()), required=os.environ.get("AUDIT_REQUIRED") == "1")
    print(message, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
