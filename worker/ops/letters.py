"""Dead letters as operators see them: parsed, filtered, de-duplicated, summarised and redacted. Pure: no I/O.

A letter is identified by its own coordinates in the dead-letter topic, but it *is about* the original record
(``dlq.original.topic/partition/offset``). The same original can be dead-lettered twice (a worker crash between the
letter's acknowledgement and the source commit), so everything that counts or replays goes by the original.

Payloads hold personal data (names, addresses, phones). ``redact`` keeps a payload's shape (field names and JSON
types) and masks every value except a few envelope fields that identify the event, never the person.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import msgspec

from worker.headers import PREFIX, REPLAY_COUNT

Origin = tuple[str, int, int]  # the original record: topic, partition, offset


class Letter(msgspec.Struct, frozen=True, dict=True):
    """One record of the dead-letter topic: where it sits there, and the original record it carries.

    ``dict=True`` lets the headers be indexed once per letter (cached_property): summarising 100,000 letters reads
    each letter's headers some 20 times, and scanning the list every time was most of ``dlq list``'s run time.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @functools.cached_property
    def _index(self) -> dict[str, str]:
        # The last header of a name wins, as worker.headers.header reads them.
        return {k: v.decode("utf-8", "replace") for k, v in self.headers}

    def get(self, name: str) -> str | None:
        return self._index.get(name)

    @functools.cached_property
    def origin(self) -> Origin | None:
        topic, partition, offset = (self.get(f"dlq.original.{n}") for n in ("topic", "partition", "offset"))
        if not topic or not _is_int(partition) or not _is_int(offset):
            return None
        return topic, int(partition), int(offset)  # type: ignore[arg-type]

    @property
    def identity(self) -> Origin:
        """What de-duplicates letters: the original record, or the letter itself when it says nothing of it."""
        return self.origin or (self.topic, self.partition, self.offset)

    @property
    def stage(self) -> str:
        return self.get("dlq.stage") or "unknown"

    @property
    def error_class(self) -> str:
        return self.get("dlq.error.class") or "unknown"

    @property
    def error_message(self) -> str:
        return self.get("dlq.error.message") or ""

    @property
    def failed_at(self) -> dt.datetime | None:
        return parse_time(self.get("dlq.failed_at"))

    @property
    def replay_count(self) -> int:
        raw = self.get(REPLAY_COUNT)
        return int(raw) if raw and raw.isdigit() else 0

    @property
    def reason(self) -> str:
        """Why it failed, value-free by construction (messages never quote record values: worker.errors)."""
        return f"{self.stage} {self.error_class}: {self.error_message}"

    @property
    def dealer(self) -> str:
        """The dealer from the contract's key ``{dealer_id}/{dms_number}``; the key holds no personal data."""
        if not self.key:
            return "(no key)"
        return self.key.decode("utf-8", "replace").partition("/")[0] or "(no dealer)"


def origin_text(origin: Origin) -> str:
    return f"{origin[0]}/{origin[1]}/{origin[2]}"


def _is_int(text: str | None) -> bool:
    return text is not None and text.lstrip("-").isdigit()


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    # A time without an offset is read as UTC: letters are stamped in UTC and operators compare against them.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


# --- filters --------------------------------------------------------------------------------------------------


class Range(NamedTuple):
    """Inclusive bounds; ``high`` None means open-ended (``100-``)."""

    low: int
    high: int | None

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and value >= self.low and (self.high is None or value <= self.high)


def parse_range(text: str, option: str) -> Range:
    """``5``, ``0-2`` or ``100-`` (to the end). Raises ValueError naming the option."""
    low, dash, high = text.strip().partition("-")
    try:
        start = int(low)
        end = (int(high) if high else None) if dash else start
    except ValueError:
        raise ValueError(f"{option}: expected N, N-M or N-, got {text!r}") from None
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"{option}: {text!r} is not a range of non-negative numbers")
    return Range(start, end)


def parse_option_time(text: str, option: str) -> dt.datetime:
    parsed = parse_time(text)
    if parsed is None:
        raise ValueError(f"{option}: expected an RFC 3339 time such as 2025-01-31T08:00:00Z, got {text!r}")
    return parsed


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    stage: str | None = None
    error_class: str | None = None
    dealer: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    partitions: Range | None = None
    offsets: Range | None = None
    key: bytes | None = None  # the record key, byte for byte (``DEALER/DMS``)

    @classmethod
    def from_args(cls, args: Any) -> Filters:
        """From the CLI's ``--stage ... --offset`` options. Raises ValueError naming a malformed option."""
        return cls(
            stage=args.stage,
            error_class=args.error_class,
            dealer=args.dealer,
            since=parse_option_time(args.since, "--since") if args.since else None,
            until=parse_option_time(args.until, "--until") if args.until else None,
            partitions=parse_range(args.partition, "--partition") if args.partition else None,
            offsets=parse_range(args.offset, "--offset") if args.offset else None,
            key=args.key.encode() if getattr(args, "key", None) else None,
        )


def _attribute_match(letter: Letter, f: Filters) -> bool:
    return (
        (f.stage is None or letter.stage == f.stage)
        and (f.error_class is None or letter.error_class == f.error_class)
        and (f.dealer is None or letter.dealer == f.dealer)
        and (f.key is None or letter.key == f.key)
    )


def _time_match(letter: Letter, f: Filters) -> bool:
    if f.since is None and f.until is None:
        return True
    failed = letter.failed_at
    if failed is None:
        return False  # a time filter cannot vouch for a letter without a time
    return (f.since is None or failed >= f.since) and (f.until is None or failed < f.until)


def _position_match(letter: Letter, f: Filters) -> bool:
    return (f.partitions is None or letter.partition in f.partitions) and (
        f.offsets is None or letter.offset in f.offsets
    )


def matches(letter: Letter, f: Filters) -> bool:
    return _position_match(letter, f) and _attribute_match(letter, f) and _time_match(letter, f)


def select(letters: Iterable[Letter], f: Filters) -> Iterator[Letter]:
    return (letter for letter in letters if matches(letter, f))


def unique(letters: Sequence[Letter]) -> tuple[list[Letter], int]:
    """The first letter of every original record, in order, and how many duplicate letters were dropped."""
    seen: set[Origin] = set()
    kept: list[Letter] = []
    for letter in letters:
        if letter.identity not in seen:
            seen.add(letter.identity)
            kept.append(letter)
    return kept, len(letters) - len(kept)


# --- summary --------------------------------------------------------------------------------------------------


class Summary(msgspec.Struct, kw_only=True):
    letters: int
    unique: int
    duplicates: int
    by_stage: dict[str, int]
    by_error_class: dict[str, int]
    by_dealer: dict[str, int]
    by_reason: dict[str, int]  # stage, error class and message
    by_dealer_reason: dict[str, dict[str, int]]
    oldest_failure: str | None
    newest_failure: str | None
    replayed: int | None  # originals already republished by `dlq replay`; None when the progress table is unknown
    failed_after_replay: int  # letters whose record had been replayed before (dlq.replay.count > 0)


def counts(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))


def _by_dealer_reason(letters: Sequence[Letter]) -> dict[str, dict[str, int]]:
    reasons: dict[str, list[str]] = {}
    for letter in letters:
        reasons.setdefault(letter.dealer, []).append(letter.reason)
    return {d: counts(reasons[d]) for d in counts(letter.dealer for letter in letters)}


def summarise(letters: Sequence[Letter], replayed: set[Origin] | None) -> Summary:
    """``letters`` already filtered; duplicates of an original are counted once everywhere but in ``letters``."""
    kept, duplicates = unique(letters)
    times = sorted(t for t in (letter.failed_at for letter in kept) if t is not None)
    return Summary(
        letters=len(letters),
        unique=len(kept),
        duplicates=duplicates,
        by_stage=counts(letter.stage for letter in kept),
        by_error_class=counts(letter.error_class for letter in kept),
        by_dealer=counts(letter.dealer for letter in kept),
        by_reason=counts(letter.reason for letter in kept),
        by_dealer_reason=_by_dealer_reason(kept),
        oldest_failure=times[0].isoformat() if times else None,
        newest_failure=times[-1].isoformat() if times else None,
        replayed=None if replayed is None else sum(1 for letter in kept if letter.identity in replayed),
        failed_after_replay=sum(1 for letter in kept if letter.replay_count > 0),
    )


TABLE_ROWS = 20  # the longest tables (reasons, dealers) are cut here in the human output; --json has them all


def _table(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return []
    shown = list(counts.items())[:TABLE_ROWS]
    width = min(max(len(name) for name, _ in shown), 100)
    lines = [f"{title}:", *(f"  {name:<{width}}  {n:>7}" for name, n in shown)]
    if len(counts) > len(shown):
        rest = sum(n for _, n in list(counts.items())[TABLE_ROWS:])
        lines.append(f"  ... {len(counts) - len(shown)} more ({rest} records; --json lists all)")
    return lines


def flat_dealer_reason(by_dealer_reason: dict[str, dict[str, int]]) -> dict[str, int]:
    pairs = {f"{d} | {r}": n for d, reasons in by_dealer_reason.items() for r, n in reasons.items()}
    return dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))


def render_summary(topic: str, s: Summary) -> str:
    replayed = "unknown (no replay progress table yet)" if s.replayed is None else str(s.replayed)
    lines = [
        f"dead-letter topic {topic}",
        f"letters: {s.letters} ({s.unique} records, {s.duplicates} duplicate letters)",
        f"oldest failure: {s.oldest_failure or '-'}",
        f"newest failure: {s.newest_failure or '-'}",
        f"already replayed: {replayed}",
        f"failed again after a replay: {s.failed_after_replay}",
    ]
    tables = (
        ("by stage", s.by_stage),
        ("by error class", s.by_error_class),
        ("by dealer", s.by_dealer),
        ("by reason (stage, class, message)", s.by_reason),
        ("by dealer | reason", flat_dealer_reason(s.by_dealer_reason)),
    )
    for title, counts in tables:
        lines += _table(title, counts)
    return "\n".join(lines)


# --- redaction ------------------------------------------------------------------------------------------------

# Identify the event and its appointment, never the person: safe to print, and what an operator searches by.
SHOWN_PATHS = frozenset(
    {
        ("event_id",),
        ("event_type",),
        ("schema_version",),
        ("occurred_at",),
        ("dealer_id",),
        ("appointment", "dms_number"),
    }
)
_MAX_SHOWN_CHARS = 64


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string" if value else "empty string"
    return type(value).__name__


def redact(value: Any, path: tuple[str, ...] = ()) -> Any:
    """The payload's shape with values masked as ``<type>``; ``null`` stays (it carries nothing)."""
    if isinstance(value, dict):
        return {str(k): redact(v, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, path) for v in value]
    if value is None:
        return None
    shown = path in SHOWN_PATHS and isinstance(value, str | int) and len(str(value)) <= _MAX_SHOWN_CHARS
    return value if shown else f"<{_json_type(value)}>"


def payload_view(value: bytes | None, *, reveal: bool) -> Any:
    """What ``dlq show`` prints for a payload: redacted JSON, or a description when it is not JSON."""
    if value is None:
        return "<no value (null record)>"
    try:
        document = msgspec.json.decode(value)
    except msgspec.DecodeError:
        if reveal:
            return value.decode("utf-8", "backslashreplace")
        return f"<{len(value)} bytes, not JSON>"
    return document if reveal else redact(document)


def _header_text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def letter_view(letter: Letter, *, reveal: bool) -> dict[str, Any]:
    """A letter for ``dlq show``: its ``dlq.*`` headers in full (they never quote values), the rest masked."""
    dlq = {k: _header_text(v) for k, v in letter.headers if k.startswith(PREFIX)}
    other = {
        k: _header_text(v) if reveal else f"<{len(v)} bytes>" for k, v in letter.headers if not k.startswith(PREFIX)
    }
    return {
        "letter": letter.coordinates,
        "original": origin_text(letter.origin) if letter.origin else None,
        "key": None if letter.key is None else _header_text(letter.key),
        "stage": letter.stage,
        "error_class": letter.error_class,
        "error_message": letter.error_message,
        "failed_at": letter.get("dlq.failed_at"),
        "replay_count": letter.replay_count,
        "headers": dlq,
        "other_headers": other,
        "payload": payload_view(letter.value, reveal=reveal),
    }


def render_view(view: dict[str, Any]) -> str:
    payload = msgspec.json.format(msgspec.json.encode(view["payload"]), indent=2).decode()
    lines = [
        f"letter {view['letter']}  (original {view['original'] or 'unknown'}, key {view['key']})",
        f"  {view['stage']} / {view['error_class']}: {view['error_message']}",
        f"  failed at {view['failed_at'] or '-'}, replayed {view['replay_count']} time(s) before",
    ]
    lines += [f"  {k}: {v}" for k, v in view["headers"].items()]
    lines += [f"  {k}: {v}" for k, v in view["other_headers"].items()]
    lines.append("  payload:")
    lines += [f"    {line}" for line in payload.splitlines()]
    return "\n".join(lines)
