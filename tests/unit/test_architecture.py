"""The dependency rule of docs/architecture.md, as import-linter contracts in pyproject.toml, holds for the tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[2]


def test_the_contract_stands_alone_the_core_is_pure_and_the_shell_never_imported_by_the_core(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cwd = Path.cwd()
    os.chdir(REPO)  # the contracts name packages relative to the repository root
    try:
        code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 kept, 0 broken" in out
