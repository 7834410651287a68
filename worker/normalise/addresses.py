"""Address parts: Dutch and Belgian postcodes, house number and addition, city capitalisation."""

from __future__ import annotations

import functools
import re
from typing import Final

from worker.normalise.text import NO_FIXES, Fixes, Result, clean

# Pure rules on values that repeat across customers (cities, titles, house numbers, fuels): remembered.
_CACHE_SIZE: Final = 4096

# A country code before or after it (NL-1015 CS, 1015 CS NL) and a full stop typed after it are not part of it.
_NL_POSTCODE: Final = re.compile(r"(?:NL[- ]?)?([1-9][0-9]{3}) ?-? ?([A-Z]{2})(?:,? ?NL)?\.?", re.IGNORECASE)
_BE_POSTCODE: Final = re.compile(r"(?:BE?[- ]?)?([1-9][0-9]{3})", re.IGNORECASE)
# PostNL never issues these letter pairs (they read as SA, SD and SS).
_NL_RESERVED: Final = frozenset({"SA", "SD", "SS"})


def _postcode_rule(text: str) -> tuple[str, Fixes]:
    nl = _NL_POSTCODE.fullmatch(text)
    if nl:
        letters = nl[2].upper()
        if letters in _NL_RESERVED:
            return text, (("postcode", "invalid_kept"),)
        return f"{nl[1]} {letters}", (("postcode", "formatted"),)
    be = _BE_POSTCODE.fullmatch(text)
    if be:
        return be[1], (("postcode", "formatted"),)
    return text, (("postcode", "unrecognised_kept"),)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def normalise_postcode(value: str | None) -> Result:
    """Dutch ``1234 AB``, Belgian ``1234``; anything else kept trimmed, with a note."""
    text, fixes = clean(value)
    if text is None:
        return None, fixes
    postcode, rule = _postcode_rule(text)
    if rule[0][1] == "formatted" and postcode == text:
        rule = NO_FIXES
    return postcode, fixes + rule


_HOUSE_NUMBER: Final = re.compile(r"0*([1-9][0-9]*)(?:\s*[-/]?\s*([^\W_](?:[\w .\-/]*\w)?))?")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def normalise_house_number(value: str | None) -> tuple[str | None, str | None, Fixes]:
    """``(house_number, house_number_addition, fixes)``: ``12a`` -> ``12``, ``A``; ``12-3`` -> ``12``, ``3``."""
    text, fixes = clean(value)
    if text is None:
        return None, None, fixes
    m = _HOUSE_NUMBER.fullmatch(text)
    if m is None:
        return text, None, (*fixes, ("house_number", "unrecognised_kept"))
    number, addition = m[1], (m[2].upper() if m[2] else None)
    if addition is not None:
        return number, addition, (*fixes, ("house_number", "addition_split"))
    return number, None, fixes if number == text else (*fixes, ("house_number", "formatted"))


_LOWER_WORDS: Final = frozenset(
    {"aan", "bij", "de", "den", "der", "en", "het", "in", "op", "onder", "over", "ter", "ten", "van", "a/d", "a.d."}
)
_ARTICLES: Final = frozenset({"'s", "'t"})
# Words, and what separates them: space, hyphen, slash (Leeuwarden/Ljouwert), brackets; "a/d" alone is a word.
_SEPARATORS: Final = frozenset(" -/()")
_TOKEN: Final = re.compile(r"a/d(?![^ \-/()])|[ \-/()]|[^ \-/()]+")
# The province that tells two places of one name apart, as PostNL writes it: Bergen (NH), Hengelo (Gld).
_PROVINCES: Final = {
    **{p.lower(): p for p in ("NH", "ZH", "NB", "FR", "GR", "DR", "FL", "OV", "UT", "LB", "ZL")},
    **{p.lower(): p for p in ("L", "O", "U", "Z", "Gld")},
}


def _capitalise(word: str) -> str:
    if word[:2] == "ij":
        return "IJ" + word[2:]
    return word[:1].upper() + word[1:]


def _word(word: str, first: bool) -> str:
    if word in _ARTICLES or (word in _LOWER_WORDS and not first):
        return word
    return _capitalise(word)


def dutch_title_case(city: str) -> str:
    """``'S-HERTOGENBOSCH`` -> ``'s-Hertogenbosch``, ``ALPHEN AAN DEN RIJN`` -> ``Alphen aan den Rijn``,
    ``BERGEN (NH)`` -> ``Bergen (NH)``."""
    out: list[str] = []
    first = True
    for token in _TOKEN.findall(city.lower()):
        if token in _SEPARATORS:
            out.append(token)
            continue
        out.append(_province(token, out) or _word(token, first))
        first = first and token in _ARTICLES
    return "".join(out)


def _province(token: str, before: list[str]) -> str | None:
    # In brackets any province; after the name without them only the two- and three-letter ones (BERGEN NH).
    if before and (before[-1] == "(" or (before[-1] == " " and len(token) > 1)):
        return _PROVINCES.get(token)
    return None


@functools.lru_cache(maxsize=_CACHE_SIZE)
def normalise_city(value: str | None) -> Result:
    """An all-caps or all-lowercase city gets Dutch title case; a city with mixed case is left as typed."""
    text, fixes = clean(value)
    if text is None or not (text.isupper() or text.islower()):
        return text, fixes
    titled = dutch_title_case(text)
    # Some letters change length or identity with their case ("ß" -> "SS"); leave such names as typed, so that
    # normalising twice gives the same city.
    if titled == text or titled.lower() != text.lower():
        return text, fixes
    return titled, (*fixes, ("city", "capitalised"))
