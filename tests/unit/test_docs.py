"""The docs stay true to the repository: links resolve, named paths exist, the SQLSTATE table is the code's."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md")])
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.M | re.S)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.M)
# A repository path in backticks: `worker/runtime/store.py`, `sql/`, `tests/integration/test_worker.py::test_x`.
REPO_PATH = re.compile(r"`((?:worker|schemas|sql|dev|bench|tests|docs|deploy|\.ci)/[\w./-]*)(?:::\w+)?`")
MODULE = re.compile(r"python -m ((?:worker|schemas|dev|bench)(?:\.\w+)+)")


def _prose(path: Path) -> str:
    """The page without its fenced code blocks (pictures and sample output are not links)."""
    return FENCE.sub("", path.read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(_prose(path)):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_there_are_docs_to_check() -> None:
    names = {_name(p) for p in DOCS}
    assert {"README.md", "CHANGELOG.md", "docs/guarantees.md", "docs/architecture.md"} <= names
    assert len([p for p in DOCS if "adr" in p.parts]) >= 5


def test_slugs_follow_github() -> None:
    assert _slug("`erase`: a data-subject (AVG/GDPR) request") == "erase-a-data-subject-avggdpr-request"
    assert _slug("Where the worker's time goes (profile)") == "where-the-workers-time-goes-profile"


@pytest.mark.parametrize("page", DOCS, ids=_name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto: ...
        file_part, _, anchor = target.partition("#")
        resolved = (page.parent / file_part).resolve() if file_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert broken == [], f"{_name(page)}: broken links"


@pytest.mark.parametrize("page", DOCS, ids=_name)
def test_named_repository_paths_exist(page: Path) -> None:
    text = page.read_text()
    missing = [p for p in REPO_PATH.findall(text) if "*" not in p and not (REPO / p).exists()]
    for module in MODULE.findall(text):
        base = REPO / module.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__main__.py").exists()):
            missing.append(f"python -m {module}")
    assert missing == [], f"{_name(page)} names what the repository does not have"


# --- SQLSTATEs -----------------------------------------------------------------------------------------------------

GUARANTEES = REPO / "docs" / "guarantees.md"
ROW = re.compile(r"^\| `([0-9A-Z]{2,5})` \| (transient|permanent) \|", flags=re.M)
# "SQLSTATE 22, 23 or 54000", "SQLSTATE 22*/23*", "SQLSTATE 54000": every code a page names after the word.
MENTION = re.compile(r"SQLSTATEs?\s+((?:`?[0-9][0-9A-Z]{1,4}\*?`?(?:\s*(?:,|/|or|and)\s*)?)+)")


def documented_sqlstates() -> dict[str, set[str]]:
    text = GUARANTEES.read_text()
    assert "<!-- sqlstates:start -->" in text, "docs/guarantees.md lost its sqlstates markers"
    table = text.split("<!-- sqlstates:start -->")[1].split("<!-- sqlstates:end -->")[0]
    rows = ROW.findall(table)
    codes = [code for code, _ in rows]
    assert codes, "the SQLSTATE table is empty"
    assert len(codes) == len(set(codes)), "the SQLSTATE table repeats a code"
    return {kind: {code for code, k in rows if k == kind} for kind in ("transient", "permanent")}


def classified_sqlstates() -> dict[str, set[str]]:
    """What the code classifies, read as data: prefixes (classes, or 57P) and exact codes."""
    tables = importlib.import_module("worker.runtime.tables")
    return {
        "transient": set(tables.TRANSIENT_SQLSTATE_PREFIXES) | set(tables.TRANSIENT_SQLSTATES),
        "permanent": set(tables.PERMANENT_SQLSTATE_PREFIXES) | set(tables.PERMANENT_SQLSTATES),
    }


def test_the_sqlstate_table_lists_exactly_what_the_code_classifies() -> None:
    assert documented_sqlstates() == classified_sqlstates()


def _covered(code: str, classified: set[str]) -> bool:
    return any(code.startswith(known) for known in classified)


@pytest.mark.parametrize("page", DOCS, ids=_name)
def test_every_sqlstate_a_page_names_is_classified(page: Path) -> None:
    classified = set().union(*documented_sqlstates().values())
    named = [
        code.strip("`*")
        for mention in MENTION.findall(page.read_text())
        for code in re.findall(r"[0-9][0-9A-Z]{1,4}\*?", mention)
    ]
    assert [code for code in named if not _covered(code, classified)] == []
