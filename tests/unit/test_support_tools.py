"""The pure parts of the support tools of issue 14: CLI options (help, --limit, --version), progress, the grouped
dead-letter summary and dry-run report, the raw key filter, trace's subject and partitioner."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_letters import letter
from worker import cli
from worker.headers import worker_version
from worker.ops.freetext import Needles, find, scrub
from worker.ops.inspection import raw_filter
from worker.ops.letters import Filters, flat_dealer_reason, summarise
from worker.ops.progress import Progress, bar_text, eta_s
from worker.ops.replay import Verdict, dry_run_summary
from worker.ops.trace import partition_of, subject_from_args


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"{p.prog} {'/'.join(a.option_strings) or a.dest}"
        for p in _parsers(cli.build_parser())
        for a in p._actions
        if not isinstance(a, argparse._SubParsersAction | argparse._HelpAction) and not a.help
    ]
    assert missing == []


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_limit_below_one_or_not_a_number_is_refused(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["dlq", "list", "--limit", value])
    assert exited.value.code == 2
    assert "--limit" in capsys.readouterr().err


def test_limit_of_one_is_taken() -> None:
    assert cli.build_parser().parse_args(["dlq", "show", "--limit", "1"]).limit == 1


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"carsys-ingest {worker_version()}"
    assert worker_version() != "unknown"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_on_a_pipe_is_periodic_json_lines_and_silent_when_short() -> None:
    stream, clock = io.StringIO(), Clock()
    short = Progress("read", 10, stream=stream, interactive=False, clock=clock)
    short.update(10)
    short.close()
    assert stream.getvalue() == ""

    bar = Progress("read", 1000, stream=stream, interactive=False, clock=clock)
    for second in range(1, 11):
        clock.now = float(second)
        bar.update(second * 100)
    bar.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["done"] for line in lines] == [500, 1000, 1000]  # every 5 s, then the final line
    assert lines[0]["rate_per_s"] == 100.0
    assert lines[0]["eta_s"] == 5.0
    assert lines[-1]["final"] is True


def test_progress_on_a_terminal_redraws_one_line() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = Progress("replaying", 200, stream=stream, interactive=True, clock=clock)
    clock.now = 1.0
    bar.update(50)
    clock.now = 2.0
    bar.update(100)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 3
    assert text.endswith("\n")
    assert "100/200" in text
    assert "50/s" in text
    assert "ETA 2s" in text


@given(st.integers(0, 10**6), st.integers(1, 10**6), st.floats(0.001, 10**4))
def test_eta_is_never_negative_and_zero_when_done(done: int, total: int, elapsed: float) -> None:
    eta = eta_s(done, total, elapsed)
    assert eta is None or eta >= 0
    if done >= total:
        assert eta == 0
    assert "ETA" in bar_text("x", done, total, elapsed)


def test_summary_groups_by_reason_and_dealer_by_reason() -> None:
    letters = [
        letter(0, origin=("carsys", 0, 1), key=b"dealer-a/1"),
        letter(1, origin=("carsys", 0, 2), key=b"dealer-a/2"),
        letter(2, origin=("carsys", 0, 3), key=b"dealer-b/1", stage="decode", error_class="DecodeError"),
    ]
    s = summarise(letters, None)
    assert s.by_reason == {"contract ContractError: $.x: reason": 2, "decode DecodeError: $.x: reason": 1}
    assert s.by_dealer_reason == {
        "dealer-a": {"contract ContractError: $.x: reason": 2},
        "dealer-b": {"decode DecodeError: $.x: reason": 1},
    }
    assert list(flat_dealer_reason(s.by_dealer_reason).values()) == [2, 1]


def test_dry_run_summary_groups_verdicts_by_reason() -> None:
    letters = [letter(i, origin=("carsys", 0, i), stage="write", error_class="WriteRejected") for i in range(3)]
    verdicts = [
        Verdict(letter="x", original="y", would="succeed"),
        Verdict(letter="x", original="y", would="succeed"),
        Verdict(
            letter="x", original="y", would="fail-again", stage="contract", error_class="ContractError", reason="r"
        ),
    ]
    text = "\n".join(dry_run_summary(letters, verdicts))
    assert "would now succeed: 2" in text
    assert "      2  failed with write WriteRejected: $.x: reason" in text
    assert "would fail again: 1" in text
    assert "      1  contract ContractError: r" in text


def test_raw_key_filter_compares_bytes_and_widens_with_keep() -> None:
    assert raw_filter(Filters(), None) is None
    by_key = raw_filter(Filters(key=b"d/1"), None)
    assert by_key is not None
    assert by_key(b"d/1", None)
    assert not by_key(b"d/10", b"x")
    widened = raw_filter(Filters(key=b"d/1"), lambda _k, v: v == b"id")
    assert widened is not None
    assert widened(b"other", b"id")
    assert not widened(b"other", b"no")


def _trace_args(**kw: str | None) -> argparse.Namespace:
    return argparse.Namespace(**{"key": None, "event_id": None, "dealer": None, "dms": None, **kw})


def test_trace_subject() -> None:
    assert subject_from_args(_trace_args(key="d-1/A/7")).key == "d-1/A/7"  # the first '/' separates
    assert subject_from_args(_trace_args(dealer="d", dms="1")).key == "d/1"
    eid = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"
    assert subject_from_args(_trace_args(event_id=eid)).event_id == eid.lower()
    for bad in ({"key": "nokey"}, {"dealer": "d"}, {"event_id": "x"}, {"key": "a/b", "dealer": "d", "dms": "1"}):
        with pytest.raises(ValueError, match=r"\S"):
            subject_from_args(_trace_args(**bad))


def test_partitioner_is_the_producers_default() -> None:
    # aiokafka's DefaultPartitioner is the Java client's (murmur2): where a keyed record of Carsys lands.
    keys = [f"dealer-{i % 7}/{i}".encode() for i in range(300)]
    assert [partition_of(k, 6) for k in keys] == [DefaultPartitioner()(k, list(range(6)), []) for k in keys]
    assert {partition_of(k, 6) for k in keys} == set(range(6))


NEEDLES = Needles(
    emails=frozenset({"w.zwartkruis@example.nl"}),
    phones=frozenset({"+31639847561", "+3258213456"}),
    names=frozenset({("Wilhelmina", "Zwartkruis-Oosterhout")}),
)


@pytest.mark.parametrize(
    ("text", "kinds", "scrubbed"),
    [
        ("Klant W.Zwartkruis@Example.NL.", ["email"], "Klant [erased]."),
        ("bel 06-39 84 75 61 (mobiel)", ["phone"], "bel [erased] (mobiel)"),
        ("bel +31 6 39847561", ["phone"], "bel [erased]"),
        ("mevr WILHELMINA  zwartkruis-oosterhout wacht", ["full_name"], "mevr [erased] wacht"),
        ("vraag naar Zwartkruis-Oosterhout", ["last_name"], "vraag naar Zwartkruis-Oosterhout"),
        ("Oosterhout of Zwartkruis", [], "Oosterhout of Zwartkruis"),
        ("bel 06-12345678, mail jan@example.nl", [], "bel 06-12345678, mail jan@example.nl"),
        ("APK keuring", [], "APK keuring"),
    ],
)
def test_free_text_hits_and_scrub(text: str, kinds: list[str], scrubbed: str) -> None:
    hits = find(text, NEEDLES)
    assert [h.kind for h in hits] == kinds
    assert scrub(text, hits) == scrubbed


@given(st.text(max_size=80))
def test_scrub_without_scrubbable_hits_changes_nothing(text: str) -> None:
    hits = [h for h in find(text, NEEDLES) if h.kind == "last_name"]
    assert scrub(text, hits) == text
