"""``carsys-ingest``: the command line. Thin: parses arguments, then hands over to the module that owns the work.

Every command's handler is imported here by name, so a reader (and mypy) sees which module runs which command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import structlog
from aiokafka.errors import KafkaError

from worker.errors import (
    AuthenticationError,
    ConfigError,
    DeploymentError,
    MigrationError,
    TransientError,
    UnreachableError,
)
from worker.headers import worker_version
from worker.ops.erasure import erase_command
from worker.ops.inspection import list_command, show_command
from worker.ops.preview import normalize_command, schema_command
from worker.ops.publisher import publish_command
from worker.ops.renormalise import add_arguments as renormalise_arguments
from worker.ops.renormalise import renormalise_command
from worker.ops.replay import replay_command
from worker.ops.skip import skip_command
from worker.ops.trace import trace_command
from worker.runtime import batches, failures, logs
from worker.runtime.app import init_command, run_command
from worker.runtime.migrations import migrate_command

Handler = Callable[[argparse.Namespace], int]

# Exit codes, documented in docs/operations.md: a supervisor or a script can tell "fix the settings" from "wait".
EXIT_CONFIG = 2  # a variable's value is wrong, or an applied migration file was changed
EXIT_DEPLOYMENT = 3  # a topic missing or not authorised, the schema behind the code, a port taken
EXIT_UNREACHABLE = 4  # a server stayed unreachable through the start-up retries
EXIT_UNDECODABLE_BATCH = 5  # the topic holds a record batch this client cannot decode
EXIT_AUTHENTICATION = 6  # a server refused the credentials or the TLS trust
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (`| head`): like any Unix tool killed by SIGPIPE


def _add(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, help_: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_, description=help_)
    parser.set_defaults(handler=handler)
    return parser


def _input_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="a JSON document or NDJSON file; - (default) reads stdin")


_STRICT_HELP = (
    "also fail on fields the v1 contract does not define (the worker ignores them: typos go unseen) and on values"
    " the worker reads only after a repair (a number for text, a Dutch date, ...)"
)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (0 or -1 are not "no limit": leave the option out for that)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value} (leave the option out for no limit)")
    return value


def _dlq_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage", choices=["decode", "contract", "normalise", "write"], help="only letters that failed at this stage"
    )
    parser.add_argument("--error-class", help="only this error class, e.g. ContractError")
    parser.add_argument("--dealer", help="only this dealer id (from the record key)")
    parser.add_argument("--key", help="only this record key, DEALER/DMS (compared as bytes, fast on large topics)")
    parser.add_argument("--since", help="failed at or after this RFC 3339 time")
    parser.add_argument("--until", help="failed before this RFC 3339 time")
    parser.add_argument("--partition", help="dead-letter partition(s), e.g. 0 or 0-2")
    parser.add_argument("--offset", help="dead-letter offset range, e.g. 100-200")
    parser.add_argument("--limit", type=positive_int, help="at most this many letters (>= 1; default: all)")


def _dlq_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser("dlq", help="see, understand and replay dead letters")
    dsub = dlq.add_subparsers(dest="dlq_command", required=True)
    lst = _add(dsub, "list", list_command, "summarise the dead-letter topic")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    _dlq_filters(lst)
    show = _add(dsub, "show", show_command, "show matching letters (values redacted)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--reveal", action="store_true", help="show payload values (personal data!)")
    _dlq_filters(show)
    replay = _add(
        dsub,
        "replay",
        replay_command,
        "republish matching letters to their source topic (writes dlq_replays: the runtime database role suffices;"
        " Kafka: read the dead-letter topic, write the source topic)",
    )
    _dlq_filters(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="decode and normalise only; produce nothing; a summary by reason"
    )
    replay.add_argument("--verbose", action="store_true", help="with --dry-run: one line per letter too")
    replay.add_argument(
        "--to-topic",
        help="republish to this topic instead of the source (a staging check; not recorded as replayed)",
    )
    replay.add_argument("--rate", type=float, default=500.0, help="most letters per second (default 500)")
    replay.add_argument("--max-replays", type=int, default=3, help="refuse letters replayed this often (default 3)")
    replay.add_argument("--force", action="store_true", help="replay even past --max-replays")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carsys-ingest",
        description="Receives the Carsys DMS push from Kafka and writes it idempotently to PostgreSQL for Claire.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {worker_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add(
        sub,
        "run",
        run_command,
        "run the consumer (what the platform deploys, N replicas per group)",
    )
    _add(
        sub,
        "migrate",
        migrate_command,
        "apply pending SQL migrations (safe to run concurrently; needs the owner database role)",
    )
    init = _add(sub, "init", init_command, "create the topics (and the dead-letter topic) and migrate")
    init.add_argument("--partitions", type=int, default=6, help="partitions of the event topic (default 6)")
    init.add_argument("--dlq-retention-days", type=int, default=30, help="dead-letter retention (default 30 days)")
    init.add_argument("--replication-factor", type=int, default=1, help="replicas of both topics (default 1)")
    normalize = _add(sub, "normalize", normalize_command, "print what Claire will store from events")
    _input_arg(normalize)
    normalize.add_argument("--strict", action="store_true", help=_STRICT_HELP)
    _add(sub, "schema", schema_command, "print the v1 JSON Schema")
    publish = _add(sub, "publish", publish_command, "validate events and publish them to the topic")
    _input_arg(publish)
    publish.add_argument("--allow-invalid", action="store_true", help="publish invalid events too (tests the DLQ path)")
    publish.add_argument("--topic", help="default: KAFKA_TOPIC")
    publish.add_argument("--strict", action="store_true", help=_STRICT_HELP + "; nothing is published")
    erase = _add(
        sub,
        "erase",
        erase_command,
        "AVG/GDPR: erase one person's personal data (UPDATEs the tables: the runtime database role suffices)",
    )
    erase.add_argument("--dealer", required=True, help="the dealer id the person belongs to")
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("--person-id", help="the DMS's person id")
    who.add_argument("--email", help="an e-mail address of the person (compared normalised)")
    who.add_argument("--phone", help="a phone number of the person (compared normalised, E.164)")
    erase.add_argument("--dry-run", action="store_true", help="report what would be erased; change nothing")
    erase.add_argument("--yes", action="store_true", help="erase without asking (required when not on a terminal)")
    erase.add_argument("--list", action="store_true", help="list the coordinates of dead letters and descriptions")
    renormalise_arguments(
        _add(sub, "renormalise", renormalise_command, "re-normalise stored rows from their source snapshots")
    )
    skip = _add(
        sub,
        "skip",
        skip_command,
        "skip a record batch the worker cannot decode (it holds the partition there): moves the group past it"
        " (writes consumer_offsets: the runtime database role suffices)",
    )
    skip.add_argument("--partition", type=int, required=True, help="partition of KAFKA_TOPIC, as the worker printed")
    skip.add_argument("--offset", type=int, required=True, help="first offset of the batch, as the worker printed")
    skip.add_argument("--force", action="store_true", help="skip even records the group has not read yet before it")
    _dlq_parser(sub)
    _trace_parser(sub)
    return parser


def _trace_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trace = _add(
        sub,
        "trace",
        trace_command,
        "everything known about one appointment: stored rows, events seen, dead letters, consumer position"
        " (exit 0 when anything is known, 1 when nothing is)",
    )
    trace.add_argument("key", nargs="?", help="the record key, DEALER/DMS")
    trace.add_argument("--event-id", help="an event id: finds its appointment (stored, applied or dead-lettered)")
    trace.add_argument("--dealer", help="dealer id (with --dms), instead of a key")
    trace.add_argument("--dms", help="the appointment's dms_number (with --dealer)")
    trace.add_argument("--json", action="store_true", help="machine-readable output")
    trace.add_argument("--reveal", action="store_true", help="show personal values (personal data!)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        handler: Handler = args.handler
        return handler(args)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as exc:
        # aiokafka and asyncpg hide a refused login or an untrusted certificate behind generic errors.
        code = _report(failures.explained(exc))
        if code is None:
            raise
        return code


def _quiet_broken_pipe() -> int:
    """``carsys-ingest dlq show | head -1``: the reader has what it wanted; no traceback, no "unreachable". stdout
    now points at /dev/null so that the interpreter's last flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _say(line: str, code: int, exc: Exception) -> int:
    """The one line an operator reads (a JSON object when the logs are JSON lines); the traceback only at DEBUG."""
    if logs.debug():
        structlog.get_logger(__name__).debug("the error in full", exc_info=exc)
    if logs.json_lines():
        structlog.get_logger(__name__).error(line, exit_code=code)
    else:
        print(line, file=sys.stderr)
    return code


def _report(exc: Exception) -> int | None:
    """One line for an operator instead of a traceback, for the errors that are theirs to act on."""
    bad = batches.locate(exc)
    if bad is not None:
        # Not a server problem: the topic holds a batch this client cannot decode (corrupt, or an unknown codec).
        line = (
            f"carsys-ingest: cannot read the record batch at {bad.topic}/{bad.partition} offsets"
            f" {bad.base_offset}-{bad.last_offset} (codec {bad.codec}; {bad.cause}); see docs/operations.md,"
            " 'A record batch that cannot be decoded'"
        )
        return _say(line, EXIT_UNDECODABLE_BATCH, exc)
    for kind, (prefix, code) in _KNOWN.items():
        if isinstance(exc, kind):
            return _say(f"carsys-ingest: {prefix}: {exc}", code, exc)
    if isinstance(exc, TransientError | OSError | KafkaError):
        # A server that is down is an operator's problem to see, not a traceback to read.
        line = f"carsys-ingest: a server is unreachable ({type(exc).__name__}): try again later"
        return _say(line, EXIT_UNREACHABLE, exc)
    return None


# Checked in this order (UnreachableError is a TransientError: before the catch-all above).
_KNOWN: dict[type[Exception], tuple[str, int]] = {
    ConfigError: ("configuration error", EXIT_CONFIG),
    MigrationError: ("migrations refused", EXIT_CONFIG),
    DeploymentError: ("deployment error", EXIT_DEPLOYMENT),
    AuthenticationError: ("refused", EXIT_AUTHENTICATION),
    UnreachableError: ("unreachable", EXIT_UNREACHABLE),
}


if __name__ == "__main__":
    sys.exit(main())
