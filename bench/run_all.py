"""Every benchmark, one after the other, each in its own process: `make bench`.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...] [options passed through]

Runs the component benchmarks that exist (bench/normaliser_bench.py, bench/store_bench.py), then the end-to-end
bench/worker_bench.py. Options after ours (e.g. ``--quick``, ``--events 50000``, ``--seed 3``) go to every benchmark
whose ``--help`` lists them, so a flag one benchmark lacks never makes it fail; a benchmark without ``--quick``
gets small sizes of its own options instead (QUICK_EQUIVALENT). Prints, never asserts; exits non-zero
only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from dev import stack as devstack

BENCH = Path(__file__).resolve().parent

# Components first: the end-to-end figures are read against them. A benchmark not written yet is skipped.
ORDER = ("normaliser_bench.py", "store_bench.py", "worker_bench.py")
# For benchmarks without a --quick of their own: small runs with the options they do have (each only if listed).
QUICK_EQUIVALENT = {
    "normaliser_bench.py": ["--events", "500"],
    "store_bench.py": ["--events", "2000", "--plain-events", "500", "--repeat", "1"],
}
# These read DATABASE_URL and start nothing themselves; worker_bench starts its own stack when none is given.
NEEDS_DATABASE = frozenset({"store_bench.py"})


def option_groups(args: Sequence[str]) -> list[list[str]]:
    """["--events", "5", "--quick"] -> [["--events", "5"], ["--quick"]]."""
    groups: list[list[str]] = []
    for arg in args:
        if arg.startswith("--") or not groups:
            groups.append([arg])
        else:
            groups[-1].append(arg)
    return groups


def _lists(help_text: str, option: str) -> bool:
    return any(f"{option}{end}" in help_text for end in (" ", "\n", ",", "]"))


def _command(script: Path) -> list[str]:
    return [sys.executable, "-m", f"bench.{script.stem}"]


def accepted(script: Path, groups: list[list[str]]) -> list[str]:
    help_text = subprocess.run(
        [*_command(script), "--help"], capture_output=True, text=True, check=False, cwd=BENCH.parent
    ).stdout
    given = {group[0].split("=", 1)[0] for group in groups}
    if "--quick" in given and not _lists(help_text, "--quick"):
        extra = option_groups(QUICK_EQUIVALENT.get(script.name, []))
        groups = [g for g in groups if g[0] != "--quick"] + [g for g in extra if g[0] not in given]
    out: list[str] = []
    for group in groups:
        name = group[0].split("=", 1)[0]
        if _lists(help_text, name):
            out += group
        else:
            print(f"run_all: {script.name} has no {name}; not passed", file=sys.stderr)
    return out


@contextlib.contextmanager
def database_env(names: Sequence[str]) -> Iterator[dict[str, str]]:
    """The environment for the benchmarks: with a throwaway PostgreSQL if one needs it and DATABASE_URL is unset."""
    env = dict(os.environ)
    if env.get("DATABASE_URL") or not NEEDS_DATABASE.intersection(names):
        yield env
        return
    # PostgreSQL only: a bootstrap address makes up() skip Kafka, which these benchmarks do not use.
    stack = devstack.up(f"bench-components-{os.getpid()}", environ={**env, "KAFKA_BOOTSTRAP_SERVERS": "unused:9092"})
    try:
        yield {**env, "DATABASE_URL": stack.database_url}
    finally:
        stack.down()


def selected(only: Sequence[str] | None) -> list[str]:
    return [
        name
        for name in ORDER
        if (BENCH / name).exists() and (not only or name in only or name.removesuffix(".py") in only)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="run only this benchmark (e.g. worker_bench); repeatable")
    ours, rest = parser.parse_known_args(argv)
    groups = option_groups(rest)
    failed: list[str] = []
    names = selected(ours.only)
    with database_env(names) as env:
        for name in names:
            script = BENCH / name
            cmd = [*_command(script), *accepted(script, groups)]
            print(f"\n=== {name} {' '.join(cmd[3:])}", flush=True)
            started = time.monotonic()
            child_env = env if name in NEEDS_DATABASE else dict(os.environ)
            code = subprocess.run(cmd, check=False, cwd=BENCH.parent, env=child_env).returncode
            print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
            if code != 0:
                failed.append(name)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
