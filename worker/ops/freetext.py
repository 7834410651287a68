"""A person's values in free text (intervention descriptions): found as a person reads them, reported without
values, and scrubbed where the match is unambiguous. Pure: no I/O.

What counts, and what ``erase`` does with it (docs/operations.md, "Erase a data subject"):

- an e-mail address that normalises to one of the person's (``normalise_email``): scrubbed;
- a phone number that normalises to one of the person's E.164 numbers (found with phonenumbers' matcher, read with
  the normaliser's rules, so "06-12 34 56 78" is "+31612345678"): scrubbed;
- the person's full name as typed in the DMS (first and last name, in that order, any case and spacing): scrubbed;
- the last name alone: reported, never changed. A last name by itself may be another person's (a mechanic, a
  family member who is not the data subject) or an ordinary word ("Smit", "Bakker"); an operator decides.

Scrubbing replaces the matched characters with ``[erased]`` and keeps the rest of the description (the work).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import msgspec
import phonenumbers

from worker.normalise.emails import normalise_email
from worker.normalise.phones import normalise_phone

Kind = Literal["email", "phone", "full_name", "last_name"]
SCRUBBED: frozenset[Kind] = frozenset({"email", "phone", "full_name"})
ERASED = "[erased]"
_EMAIL_TOKEN = re.compile(r"[^\s<>()\[\]{},;:\"']+@[^\s<>()\[\]{},;:\"']+")
_MIN_LAST_NAME = 3  # "Li", "Ng": too short to report on their own without drowning the real hits


class Needles(msgspec.Struct, frozen=True, kw_only=True):
    """What to look for: normalised e-mails, E.164 numbers, and the names (first, last) as stored."""

    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()
    names: frozenset[tuple[str, str]] = frozenset()  # (first_name, last_name); either may be ""


class Hit(msgspec.Struct, frozen=True):
    kind: Kind
    start: int
    end: int


def _email_hits(text: str, emails: frozenset[str]) -> list[Hit]:
    hits = []
    for m in _EMAIL_TOKEN.finditer(text):
        token = m.group().rstrip(".")  # the full stop of a sentence is not part of the address
        address, _ = normalise_email(token)
        if address is not None and address in emails:
            hits.append(Hit("email", m.start(), m.start() + len(token)))
    return hits


def _phone_hits(text: str, phones: frozenset[str]) -> list[Hit]:
    hits = []
    for m in phonenumbers.PhoneNumberMatcher(text, "NL", leniency=phonenumbers.Leniency.POSSIBLE):
        read = {normalise_phone(m.raw_string).e164, phonenumbers.format_number(m.number, 0)}  # 0: E164
        if read & phones:
            hits.append(Hit("phone", m.start, m.end))
    return hits


def _words(name: str) -> str:
    return r"\s+".join(re.escape(part) for part in name.split())


def _name_hits(text: str, names: frozenset[tuple[str, str]]) -> list[Hit]:
    hits = []
    for first, last in names:
        if first.strip() and last.strip():
            pattern = rf"(?<!\w){_words(first)}\s+{_words(last)}(?!\w)"
            hits += [Hit("full_name", m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE)]
        if len(last.strip()) >= _MIN_LAST_NAME:
            pattern = rf"(?<!\w){_words(last)}(?!\w)"
            hits += [Hit("last_name", m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE)]
    return hits


def find(text: str, needles: Needles) -> list[Hit]:
    """Every match, in text order; a last name inside a full-name match is not reported again."""
    hits = [*_email_hits(text, needles.emails), *_phone_hits(text, needles.phones), *_name_hits(text, needles.names)]
    full = [h for h in hits if h.kind == "full_name"]
    hits = [h for h in hits if h.kind != "last_name" or not any(f.start <= h.start < f.end for f in full)]
    return sorted(hits, key=lambda h: (h.start, h.end))


def scrub(text: str, hits: Iterable[Hit]) -> str:
    """``text`` with the scrubbable hits replaced by ``[erased]`` (overlapping hits merged)."""
    spans = sorted((h.start, h.end) for h in hits if h.kind in SCRUBBED)
    out, position = [], 0
    for start, end in spans:
        if end <= position:
            continue
        out += [text[position : max(start, position)], ERASED]
        position = end
    return "".join([*out, text[position:]])
