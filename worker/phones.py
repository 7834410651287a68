"""Phone numbers: E.164, Dutch by default, Belgian recognised.

``normalise_phone_reference`` is the definition: phonenumbers' parse + is_valid_number + format_number, Dutch
first, then Belgian. ``normalise_phone`` must return exactly the same (a differential test checks it on a large
generated corpus); it answers the common Dutch and Belgian shapes from phonenumbers' own metadata, compiled once
at import, and asks phonenumbers itself for everything else. The reference costs ~80 us per field, which on a
realistic event (18 phone fields) dominates everything else the normaliser does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, Literal, NamedTuple

import phonenumbers
from phonenumbers import PhoneNumberType

from worker.text import PLACEHOLDER, Fix, Fixes, clean

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


def candidates(text: str) -> list[str]:
    """The number-like spans of a field, in order."""
    return [s for s in _SPAN.findall(text) if len(_NOT_DIGIT.sub("", s)) >= _MIN_DIGITS]


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
_Check = tuple["re.Pattern[str] | None", "re.Pattern[str] | None", "re.Pattern[str] | None"]


def _compile(*patterns: str | None) -> re.Pattern[str] | None:
    present = [f"(?:{p})" for p in patterns if p is not None]
    return re.compile("|".join(present)) if present else None


class _Region(NamedTuple):
    country_code: str
    # national number length -> (valid number of a special type, fixed line, mobile); the general description is
    # folded into each pattern, so one table lookup and at most three regexes classify a number.
    by_length: dict[int, _Check]

    def kind(self, national: str) -> Kind | None:
        """number_type() reduced to what the normaliser needs; None when phonenumbers calls it invalid."""
        check = self.by_length.get(len(national))
        if check is None:
            return None
        special, fixed, mobile = check
        if special is not None and special.fullmatch(national):
            return "other"
        is_fixed = fixed is not None and fixed.fullmatch(national) is not None
        is_mobile = mobile is not None and mobile.fullmatch(national) is not None
        if is_fixed:
            return "other" if is_mobile else "landline"
        return "mobile" if is_mobile else None


def _guarded(general: str, pattern: str | None) -> str | None:
    # Every type also has to match the general description (lookahead keeps both as one regex).
    return None if pattern is None else f"(?=(?:{general})$)(?:{pattern})"


def _check(md: object, length: int, general: str) -> _Check:
    def typed(name: str) -> str | None:
        return _guarded(general, _pattern_for(getattr(md, name), length))

    return (
        _compile(*(typed(name) for name in _SPECIAL)),
        _compile(typed("fixed_line")),
        _compile(typed("mobile")),
    )


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
    return _Region(str(md.country_code), {n: _check(md, n, general) for n in lengths})


_METADATA: Final = {code: _region(code) for code in REGIONS}
_BY_COUNTRY_CODE: Final = {r.country_code: r for r in _METADATA.values()}
# Only digits, the usual separators and an optional leading "+": anything else goes to phonenumbers.
_SIMPLE: Final = re.compile(r"\+?[0-9][0-9 \-./]*")
_SEPARATORS: Final = re.compile(r"[ \-./]")


def _fast_international(digits: str) -> tuple[str, Kind] | Literal[False] | None:
    region = _BY_COUNTRY_CODE.get(digits[:2])
    national = digits[2:]
    if region is None or national.startswith("0"):
        return False  # another country, or a trunk zero phonenumbers may or may not strip: ask it
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
    if _SIMPLE.fullmatch(candidate) is None:
        return False
    digits = _SEPARATORS.sub("", candidate)
    if digits.startswith("+"):
        return _fast_international(digits[1:])
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


def _pick(text: str, number: NumberRule) -> Phone:
    for span in candidates(text):
        found = number(span)
        if found is not None:
            e164, kind = found
            fixes: tuple[Fix, ...] = ()
            if span != text:
                fixes += (TEXT_REMOVED,)
            if e164 != span:
                fixes += (FORMATTED,)
            return Phone(e164, kind, fixes)
    # "000000" is how a DMS screen says "no number": a placeholder, not a typo worth a rejection note.
    return Phone(None, None, (PLACEHOLDER,) if _all_zero(text) else (REJECTED,))


def normalise_phone_with(value: str | None, number: NumberRule) -> Phone:
    """Clean one phone field and read the first valid number in it with ``number``."""
    text, fixes = clean(value)
    if text is None:
        return Phone(None, None, fixes)
    phone = _pick(text, number)
    return phone._replace(fixes=fixes + phone.fixes)


def normalise_phone(value: str | None) -> Phone:
    """The fast path: E.164 and the kind of number, or None with a note."""
    return normalise_phone_with(value, fast_or_reference_number)


def normalise_phone_reference(value: str | None) -> Phone:
    """The straightforward version: phonenumbers on every candidate (the benchmark's and the tests' yardstick)."""
    return normalise_phone_with(value, reference_number)
