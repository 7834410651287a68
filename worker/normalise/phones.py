"""Phone numbers: E.164, Dutch by default, Belgian recognised.

``normalise_phone_reference`` is the definition: phonenumbers' parse + is_valid_number + format_number, Dutch
first, then Belgian. ``normalise_phone`` must return exactly the same (a differential test checks it on a large
generated corpus); it answers the common Dutch and Belgian shapes from phonenumbers' own metadata, compiled once
at import, and asks phonenumbers itself for everything else. The reference costs ~70 us per field, which on a
realistic event (3 persons x 4 phone fields) outweighs everything else the normaliser does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal, NamedTuple

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType

from worker.normalise.text import DASHES, PLACEHOLDER, Fix, Fixes, clean

Kind = Literal["mobile", "landline", "other"]
REGIONS: Final = ("NL", "BE")


class Phone(NamedTuple):
    e164: str | None
    kind: Kind | None
    fixes: Fixes


# A number is a run of digits with the separators people type; it never takes letters (phonenumbers would read
# "werk" as the vanity digits 9375) and it has to carry enough digits to be a number rather than "2e" or "(1)".
_SPAN: Final = re.compile(r"\+?\d[\d \-./()]*\d")
_MIN_DIGITS: Final = 5
_NOT_DIGIT: Final = re.compile(r"\D")
TEXT_REMOVED: Final[Fix] = ("phone", "text_removed")
REJECTED: Final[Fix] = ("phone", "rejected")
FORMATTED: Final[Fix] = ("phone", "formatted")


def _digits_only(text: str) -> str:
    # str.translate with a deletion table costs microseconds; four replace() calls cost nanoseconds.
    return text.replace(" ", "").replace("-", "").replace(".", "").replace("/", "")


def _digit_count(span: str) -> int:
    # A span holds only digits and _SPAN's separators: dropping those leaves the digits.
    return len(_digits_only(span).replace("(", "").replace(")", "").replace("+", ""))


def candidates(text: str) -> list[str]:
    """The number-like spans of a field, in order."""
    return [s for s in _SPAN.findall(text) if _digit_count(s) >= _MIN_DIGITS]


_KINDS: Final[dict[int, Kind]] = {PhoneNumberType.MOBILE: "mobile", PhoneNumberType.FIXED_LINE: "landline"}


def reference_number(candidate: str) -> tuple[str, Kind] | None:
    """The straightforward version: phonenumbers on everything, Dutch first, then Belgian."""
    for region in REGIONS:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            return e164, _KINDS.get(phonenumbers.number_type(number), "other")
    return None


def _lengths(desc: object) -> frozenset[int]:
    return frozenset(getattr(desc, "possible_length", None) or ())


def _pattern_for(desc: object, length: int) -> str | None:
    """The desc's pattern if a number of this length can match it, as phonenumbers' _is_number_matching_desc."""
    pattern: str | None = getattr(desc, "national_number_pattern", None)
    if pattern is None:
        return None
    # An empty possible_length means "no length check"; (-1,) means "no number of this type" and never matches.
    lengths = _lengths(desc)
    return pattern if not lengths or length in lengths else None


# phonenumbers' own order of types in number_type(): the first match decides.
_SPECIAL: Final = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail")
_KIND_GROUPS: Final[dict[str, Kind]] = {"other": "other", "either": "other", "landline": "landline", "mobile": "mobile"}


class _Region(NamedTuple):
    country_code: str
    # national number length -> one regex whose first matching alternative names the type, in phonenumbers'
    # order: a special type, then fixed line and mobile at once, fixed line, mobile. The general description is
    # a lookahead in front, so a single fullmatch classifies a number.
    by_length: dict[int, re.Pattern[str]]

    def kind(self, national: str) -> Kind | None:
        """number_type() reduced to what the normaliser needs; None when phonenumbers calls it invalid."""
        pattern = self.by_length.get(len(national))
        m = pattern.fullmatch(national) if pattern is not None else None
        return _KIND_GROUPS[m.lastgroup] if m is not None and m.lastgroup is not None else None


def _alternatives(md: PhoneMetadata, length: int) -> str | None:
    special = [p for p in (_pattern_for(getattr(md, name), length) for name in _SPECIAL) if p is not None]
    fixed = _pattern_for(md.fixed_line, length)
    mobile = _pattern_for(md.mobile, length)
    groups = []
    if special:
        groups.append("(?P<other>" + "|".join(f"(?:{p})" for p in special) + ")")
    if fixed is not None and mobile is not None:
        groups.append(f"(?P<either>(?=(?:{mobile})$)(?:{fixed}))")
    if fixed is not None:
        groups.append(f"(?P<landline>{fixed})")
    if mobile is not None:
        groups.append(f"(?P<mobile>{mobile})")
    return "|".join(groups) if groups else None


def _classifier(md: PhoneMetadata, length: int, general: str) -> re.Pattern[str] | None:
    alternatives = _alternatives(md, length)
    return None if alternatives is None else re.compile(f"(?=(?:{general})$)(?:{alternatives})")


def _region(code: str) -> _Region:
    md = phonenumbers.PhoneMetadata.metadata_for_region(code)
    general = None if md is None or md.general_desc is None else md.general_desc.national_number_pattern
    # The fast path equals phonenumbers only under these metadata facts; refuse to start if they ever change.
    if (
        md is None
        or general is None
        or md.national_prefix_for_parsing != "0"
        or md.international_prefix != "00"
        or md.same_mobile_and_fixed_line_pattern
    ):
        raise RuntimeError(f"phonenumbers metadata for {code} no longer fits the fast phone path")
    lengths = sorted(n for n in _lengths(md.general_desc) if n > 0)
    table = {n: _classifier(md, n, general) for n in lengths}
    return _Region(str(md.country_code), {n: c for n, c in table.items() if c is not None})


_METADATA: Final = {code: _region(code) for code in REGIONS}
_DUTCH, _BELGIAN = _METADATA["NL"], _METADATA["BE"]
_BY_COUNTRY_CODE: Final = {r.country_code: r for r in _METADATA.values()}
# The international notation with the trunk zero in brackets, "+31 (0)6 ...", common in e-mail signatures.
_TRUNK_ZERO: Final = re.compile(r"^(\+3[12]) ?\(0\)")


def _fast_international(digits: str) -> tuple[str, Kind] | Literal[False] | None:
    region = _BY_COUNTRY_CODE.get(digits[:2])
    if region is None:
        return False  # another country: ask phonenumbers
    national = digits[2:]
    # "+31 06..." and "+31 (0)6...": phonenumbers drops one trunk zero here too (no NL/BE number starts with 0,
    # so the number is only valid without it); two zeros are odd enough to leave to phonenumbers.
    if national.startswith("0"):
        national = national[1:]
        if national.startswith("0"):
            return False
    kind = region.kind(national)
    return (f"+{region.country_code}{national}", kind) if kind else None


def _fast_national(national: str) -> tuple[str, Kind] | None:
    for region in _METADATA.values():
        kind = region.kind(national)
        if kind:
            return f"+{region.country_code}{national}", kind
    return None


def fast_number(candidate: str) -> tuple[str, Kind] | Literal[False] | None:
    """The common shapes, answered from the metadata; False means "not a common shape, ask phonenumbers"."""
    if "(" in candidate:
        candidate = _TRUNK_ZERO.sub(r"\1 0", candidate, count=1)
    digits = _digits_only(candidate)
    international = digits.startswith("+")
    if international:
        digits = digits[1:]
    if not (digits.isascii() and digits.isdigit()):
        return False
    if not digits.strip("0"):
        return None  # no country code or national number is all zeros
    if international:
        return _fast_international(digits)
    if digits.startswith("00"):
        return _fast_international(digits[2:])
    if digits.startswith("0"):
        return _fast_national(digits[1:])
    return False


NumberRule = Callable[[str], "tuple[str, Kind] | None"]


def fast_or_reference_number(candidate: str) -> tuple[str, Kind] | None:
    found = fast_number(candidate)
    return reference_number(candidate) if found is False else found


def _all_zero(text: str) -> bool:
    digits = _NOT_DIGIT.sub("", text)
    return bool(digits) and digits.count("0") == len(digits)


class _Reading(NamedTuple):
    span: str  # the text the number was read from
    e164: str
    kind: Kind


_SPLIT: Final = re.compile(r"[ \-./()]+")
_PREFIXED: Final = ("0", "+")
# A run of digits longer than three numbers is not a list of numbers someone typed; the cap bounds the search.
_MAX_SPLIT_DIGITS: Final = 40


def _split(span: str, number: NumberRule) -> list[_Reading]:
    """Numbers typed in one run ("06-12345678 / 020-1234567"): the first cut at a separator where the left side is
    a whole number and the rest reads as numbers, each written with its trunk or international prefix. Nothing
    when there is no such cut."""
    if not 2 * _MIN_DIGITS <= _digit_count(span) <= _MAX_SPLIT_DIGITS:
        return []
    for m in _SPLIT.finditer(span):
        left, right = span[: m.start()], span[m.end() :]
        if right[:1] not in _PREFIXED or _digit_count(left) < _MIN_DIGITS:
            continue
        if _digit_count(right) < _MIN_DIGITS:
            break
        first = number(left) if left[:1] in _PREFIXED else None
        rest = _readings(right, number) if first is not None else []
        if first is not None and rest:
            return [_Reading(left, *first), *rest]
    return []


# "06-", "06 " is how the Netherlands writes its mobile prefix; Belgium writes its 06x areas "061/..." or "061 ...".
# A number written so is never read as Belgian, however its digits happen to fall ("06-1234567" is a Dutch
# mobile number a digit short, not a number in Libramont).
_DUTCH_MOBILE_NOTATION: Final = re.compile(r"06[ \-./]")


def _misread(span: str, e164: str) -> bool:
    return e164.startswith("+32") and _DUTCH_MOBILE_NOTATION.match(span) is not None


def _readings(span: str, number: NumberRule) -> list[_Reading]:
    found = number(span)
    if found is not None and not _misread(span, found[0]):
        return [tuple.__new__(_Reading, (span, *found))]  # cheaper than NamedTuple's __new__, as in _phone()
    return _split(span, number)


def _numbers(spans: list[str], number: NumberRule) -> list[_Reading]:
    """The distinct valid numbers of a field, in order; three at most (a third is only counted, never kept)."""
    found: list[_Reading] = []
    for span in spans:
        for reading in _readings(span, number):
            if all(reading.e164 != r.e164 for r in found):
                found.append(reading)
        if len(found) > 2:
            break
    return found


def _first_fixes(first: _Reading, text: str) -> Fixes:
    fixes: tuple[Fix, ...] = ()
    if first.span != text:
        fixes += (TEXT_REMOVED,)
    if first.e164 != first.span:
        fixes += (FORMATTED,)
    return fixes


def _pick(text: str, number: NumberRule) -> Phones:
    spans = candidates(text)
    if len(spans) == 1:
        # The common case, one number with text around it ("06-12345678 (werk)"), without the list of readings.
        span = spans[0]
        one = number(span)
        if one is not None and not (one[0].startswith("+32") and _misread(span, one[0])):
            e164, kind = one
            fixes: tuple[Fix, ...] = ()
            if span != text:
                fixes += (TEXT_REMOVED,)
            if e164 != span:
                fixes += (FORMATTED,)
            return _phone(e164, kind, fixes), None
        found = _split(span, number)
    else:
        found = _numbers(spans, number)
    if not found:
        # "000000" is how a DMS screen says "no number": a placeholder, not a typo worth a rejection note.
        return Phone(None, None, (PLACEHOLDER,) if _all_zero(text) else (REJECTED,)), None
    first = found[0]
    second = Phone(found[1].e164, found[1].kind, ()) if len(found) > 1 else None
    return Phone(first.e164, first.kind, _first_fixes(first, text)), second


Phones = tuple[Phone, "Phone | None"]


def read_phones_with(value: str | None, number: NumberRule) -> Phones:
    """Clean one phone field and read the first valid number in it with ``number``, and a second one if the field
    holds two."""
    text, fixes = clean(value)
    if text is None:
        return Phone(None, None, fixes), None
    if not text.isascii():
        text = text.translate(DASHES)
    phone, second = _pick(text, number)
    return (Phone(phone.e164, phone.kind, fixes + phone.fixes) if fixes else phone), second


def normalise_phone_with(value: str | None, number: NumberRule) -> Phone:
    """The first valid number of a field (a field of two numbers notes the text removed)."""
    return read_phones_with(value, number)[0]


# A field that is nothing but one Dutch or Belgian number in a usual notation. Exactly the shapes fast_number()
# answers without phonenumbers, so taking this shortcut changes nothing but the time it takes.
_PLAIN: Final = re.compile(
    r"(?:\+(?P<cc>3[12])(?: ?\(0\) ?|[ \-./]?0?)|00(?P<cc00>3[12])[ \-./]?0?|0)(?P<rest>[1-9][0-9 \-./]*[0-9])"
)
_FORMATTED_ONLY: Final = (FORMATTED,)
_REJECTED_PHONE: Final = Phone(None, None, (REJECTED,))


def _phone(e164: str, kind: Kind, fixes: Fixes) -> Phone:
    # NamedTuple's generated __new__ is Python code; building the tuple directly is several times cheaper and
    # this runs for every phone field of every event.
    return tuple.__new__(Phone, (e164, kind, fixes))


# Two numbers need two national numbers of at least the shortest length, and the second its trunk zero: fewer
# digits than that cannot hold two, so an invalid plain number with fewer is rejected without looking further.
_PAIR_DIGITS: Final = 2 * min(n for r in _METADATA.values() for n in r.by_length) + 1


def _plain(text: str) -> Phone | None:
    m = _PLAIN.fullmatch(text)
    if m is None:
        return None
    national = _digits_only(m["rest"])
    cc = m["cc"] or m["cc00"]
    if cc is not None:
        found = _in_region(_BY_COUNTRY_CODE[cc], national)
    else:  # _fast_national(), unrolled: only its Belgian fallback can be a misreading
        found = _in_region(_DUTCH, national)
        if found is None:
            found = _in_region(_BELGIAN, national)
            if found is not None and _misread(text, found[0]):
                return None
    if found is None:
        return _REJECTED_PHONE if len(national) < _PAIR_DIGITS else None
    return _phone(found[0], found[1], () if found[0] == text else _FORMATTED_ONLY)


def _in_region(region: _Region, national: str) -> tuple[str, Kind] | None:
    kind = region.kind(national)
    return (f"+{region.country_code}{national}", kind) if kind else None


def read_phones(value: str | None) -> Phones:
    """The fast path: the first number of a field (E.164 and its kind, or None with a note) and a second one."""
    if value is not None and value.isascii():
        text = " ".join(value.split())
        plain = _plain(text) if text == value else None
        if plain is not None:
            return plain, None
    return read_phones_with(value, fast_or_reference_number)


def read_phones_reference(value: str | None) -> Phones:
    """The straightforward version: phonenumbers on every candidate (the benchmark's and the tests' yardstick)."""
    return read_phones_with(value, reference_number)


def normalise_phone(value: str | None) -> Phone:
    """The fast path: E.164 and the kind of number, or None with a note."""
    return read_phones(value)[0]


def normalise_phone_reference(value: str | None) -> Phone:
    """The straightforward version: phonenumbers on every candidate."""
    return read_phones_reference(value)[0]
