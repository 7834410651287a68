"""E-mail addresses: lowercased and syntax-checked with email-validator (no DNS), IDN domains in Unicode form.

``normalise_email_reference`` is the definition (email-validator on every value). ``normalise_email`` answers
plain ASCII addresses - nearly all of them - with one regex that accepts a strict subset of what
email-validator accepts and produces the same normalised form (a differential test checks it); everything
else goes to email-validator.

A field that is not one address is read as a person reads it (``read_email``): the address inside ``mailto:``,
angle brackets with or without a display name, a remark in brackets or a trailing full stop, and of two addresses
the first, with the second handed back for the caller to place. Dummy addresses (``geen@geen.nl``,
``onbekend@ziggo.nl``) are placeholders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Final, Literal, NamedTuple

import email_validator

from worker.normalise.text import PLACEHOLDER, Fixes, Result, clean

LOWERCASED: Final = ("email", "lowercased")
REJECTED: Final = ("email", "rejected")
IDN: Final = ("email", "idn_normalised")
MAILTO_REMOVED: Final = ("email", "mailto_removed")
TEXT_REMOVED: Final = ("email", "text_removed")
TRAILING_DOT_REMOVED: Final = ("email", "trailing_dot_removed")
SECOND_DROPPED: Final = ("second_address", "dropped")
SPACES_REMOVED: Final = ("email", "spaces_removed")


# ``(address, fixes, second)``: a field's (first) address and its notes, and a second valid address found next to
# it. A plain tuple, not a NamedTuple: building one costs a fifth as much, and this runs for every e-mail field.
Email = tuple[str | None, Fixes, str | None]


_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Local part: dot-atom of the common atext characters. Domain: at least two LDH labels, a TLD ending in a letter,
# no "--" anywhere (IDNA's reserved-label rules) - those, and non-ASCII, are left to email-validator.
_PLAIN: Final = re.compile(
    rf"(?P<local>[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*)@(?P<domain>(?:{_LABEL}\.)+[a-z0-9-]*[a-z])",
)
_SPECIAL_USE: Final = tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _plain(address: str) -> bool:
    m = _PLAIN.fullmatch(address)
    if m is None:
        return False
    domain = m["domain"]
    if len(address) > 254 or len(m["local"]) > 64 or "--" in domain:
        return False
    tld = domain.rsplit(".", 1)[1]
    return len(tld) <= 63 and not tld.startswith("-") and not domain.endswith(_SPECIAL_USE)


def reference_address(address: str) -> str | None:
    """email-validator's normalised form of an already lowercased address, or None when it is invalid."""
    try:
        info = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    # email-validator keeps the local part's case; the contract wants the whole address lowercase.
    return info.normalized.lower()


_LOCAL_AND_DOMAIN: Final = re.compile(r"(?P<local>[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*)@(?P<domain>[^@]+)")


@functools.lru_cache(maxsize=4096)
def _idn_domain(domain: str) -> tuple[str, str] | None:
    """email-validator's (normalised, ASCII) form of a domain. Domains repeat across customers (a handful of
    providers, each company's own), and IDNA processing costs a millisecond, hence the cache."""
    try:
        # A one-letter local part is always valid, so this checks exactly the domain, through the public API.
        info = email_validator.validate_email(f"x@{domain}", check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return info.domain, info.ascii_domain


def _with_idn_domain(address: str) -> str | Literal[False] | None:
    m = _LOCAL_AND_DOMAIN.fullmatch(address)
    if m is None or address.isascii() or len(address) > 200:
        return False
    found = _idn_domain(m["domain"])
    if found is None:
        return None
    domain, ascii_domain = found
    if len(m["local"]) + 1 + len(ascii_domain) > 200:
        return False
    return f"{m['local']}@{domain}".lower()


def fast_address(address: str) -> str | None:
    # email-validator refuses quoted local parts, so an address is never valid without exactly one "@": answering
    # that here spares the library call for the commonest rejects (`n.v.t.`, `jan@@example.nl`). Measured: 4% of a
    # worker's samples were the library rejecting such values.
    if address.count("@") != 1:
        return None
    if _plain(address):
        return address
    found = _with_idn_domain(address)
    return reference_address(address) if found is False else found


AddressRule = Callable[[str], "str | None"]

# Dummy addresses typed where the screen demands one. A local part that says "none" is never one customer's
# address, at whatever domain (geen@ziggo.nl); a weaker one (x, test) only when the domain name says so too
# (x@x.nl, test@test.nl). Stored, a dummy would tie unrelated customers together.
_NONE_LOCALS: Final = frozenset(
    {"geen", "geenmail", "geenemail", "geen.email", "geen-email", "geen_email", "geen.mail", "nvt", "n.v.t"}
    | {"onbekend", "unknown", "none", "noemail", "no-email", "no.email", "nomail", "no-mail", "heeftgeen"}
)
_WEAK_LOCALS: Final = frozenset({"x", "xx", "xxx", "xxxx", "test", "dummy", "leeg", "niet", "nee", "no", "a", "aa"})
_DUMMY_LOCALS: Final = _NONE_LOCALS | _WEAK_LOCALS
_DUMMY_DOMAINS: Final = _DUMMY_LOCALS | {"email", "e-mail", "mail"}
# The first character, then the first three, of every dummy address (with a local part longer than one letter):
# two cheap look-ups clear nearly every real address before is_dummy() is asked.
_DUMMY_FIRST: Final = "".join(sorted({local[0] for local in _DUMMY_LOCALS}))
_DUMMY_HEADS: Final = frozenset(f"{local}@"[:3] for local in _DUMMY_LOCALS)


def is_dummy(address: str) -> bool:
    """``geen@geen.nl``, ``onbekend@ziggo.nl``, ``x@x.nl``: an address that says there is none."""
    local, _, domain = address.partition("@")
    if local in _NONE_LOCALS:
        return True
    if local not in _WEAK_LOCALS:
        return False
    labels = domain.split(".")
    return len(labels) >= 2 and labels[-2] in _DUMMY_DOMAINS


def _address_fixes(text: str, lowered: str, found: str) -> Fixes:
    fixes: Fixes = (LOWERCASED,) if lowered != text else ()
    return (*fixes, IDN) if found != lowered else fixes


def read_email_with(value: str | None, address_rule: AddressRule) -> Email:
    text, fixes = clean(value)
    if text is None:
        return None, fixes, None
    lowered = text.lower()
    found = address_rule(lowered)
    if found is None:
        return _read_text(text, fixes, address_rule)
    if found[0] in _DUMMY_FIRST and (found[1] == "@" or found[:3] in _DUMMY_HEADS) and is_dummy(found):
        return None, (*fixes, PLACEHOLDER), None
    if found != text:  # inlined _address_fixes(): this runs for every e-mail field of every event
        if lowered != text:
            fixes += (LOWERCASED,)
        if found != lowered:
            fixes += (IDN,)
    return found, fixes, None


# An address as it sits in running text: no spaces and none of the characters people put around or between
# addresses. ":" ends a "mailto:" or "e-mail:" label, "/" separates two addresses (it is legal in a local part,
# but no customer has one).
_TOKEN: Final = re.compile(r"[^\s<>()\[\]{}\",;:/|]+@[^\s<>()\[\]{}\",;:/|]+")
_MAILTO: Final = re.compile(r"mailto:", re.IGNORECASE)
# A word glued to an address by a separator ("jan,jansen@x.nl", "jan;jansen@x.nl": a comma typed for the dot next
# to it): no address, not a list, so none of it is read. "e-mail:jan@x.nl" (a label) and "a@x.nl,b@y.nl" are.
_GLUED: Final = re.compile(r"(?:^|\s)[a-z0-9._%+\-]+[,;/|]$", re.IGNORECASE)
# What may separate two addresses without being text worth a note (brackets, quotes and names are).
_SEPARATORS: Final = re.compile(r"(?:[\s,;/|&]|\b(?:of|en|or|and)\b)+", re.IGNORECASE)


class _Token(NamedTuple):
    address: str | None  # valid and not a dummy
    fixes: Fixes
    dummy: bool


def _token(token: str, address_rule: AddressRule) -> _Token:
    core = token.strip("'")
    fixes: Fixes = (TEXT_REMOVED,) if core != token else ()  # quoted: 'jan@x.nl'
    if core.endswith("."):
        core, fixes = core.rstrip("."), (*fixes, TRAILING_DOT_REMOVED)
    lowered = core.lower()
    found = address_rule(lowered) if lowered.count("@") == 1 else None
    if found is None or is_dummy(found):
        return _Token(None, (), found is not None)
    return _Token(found, fixes + _address_fixes(core, lowered, found), False)


def _read_text(text: str, fixes: Fixes, address_rule: AddressRule) -> Email:
    """The first valid address in a field that is more than one address; the second one comes back as well."""
    found: list[tuple[str, _Token]] = []
    dummy = False
    for match in _TOKEN.finditer(text):
        if _GLUED.search(text, 0, match.start()):
            continue  # "jan,jansen@x.nl": the local part is cut, and "jansen@x.nl" would be somebody else
        raw = match[0]
        token = _token(raw, address_rule)
        dummy = dummy or token.dummy
        if token.address is not None and all(token.address != t.address for _, t in found):
            found.append((raw, token))
    if not found:
        return _spaced(text, fixes, address_rule) or (None, (*fixes, PLACEHOLDER if dummy else REJECTED), None)
    rest = _MAILTO.sub("", text)
    notes = (*fixes, MAILTO_REMOVED) if len(rest) != len(text) else fixes
    for raw, _ in found[:2]:
        rest = rest.replace(raw, "", 1)
    # Between two addresses a separator is only a separator; next to one it is text that was dropped.
    if _SEPARATORS.sub("", rest) if len(found) > 1 else rest.strip():
        notes += (TEXT_REMOVED,)
    first = found[0][1]
    notes += tuple(fix for fix in first.fixes if fix not in notes)
    return first.address, notes, found[1][1].address if len(found) > 1 else None


# Spaces typed next to "@" or a dot, as phone keyboards and hurried typists put them: "jan @ example.nl",
# "jan@example .nl". Only where the field is nothing but that one address: "Jan Jansen @ example.nl" is no address.
_SPACED_AT: Final = re.compile(r"\s*([@.])\s*")


def _spaced(text: str, fixes: Fixes, address_rule: AddressRule) -> Email | None:
    joined = _SPACED_AT.sub(r"\1", text)
    if joined == text or joined.count("@") != 1 or any(c.isspace() for c in joined):
        return None
    token = _token(joined, address_rule)
    if token.dummy:
        return None, (*fixes, PLACEHOLDER), None
    if token.address is None:
        return None
    return token.address, (*fixes, SPACES_REMOVED, *token.fixes), None


def read_email(value: str | None) -> Email:
    """The fast path: the (first) address of a field, its notes and a second address if the field holds one."""
    return read_email_with(value, fast_address)


def read_email_reference(value: str | None) -> Email:
    """The straightforward version: email-validator on every address."""
    return read_email_with(value, reference_address)


def _single(email: Email) -> Result:
    address, fixes, second = email
    return address, (*fixes, SECOND_DROPPED) if second is not None else fixes


def normalise_email(value: str | None) -> Result:
    """Lowercased, syntax-checked address; None with a note when the field holds none. Of two addresses the first
    (a note says the second was dropped)."""
    return _single(read_email(value))


def normalise_email_reference(value: str | None) -> Result:
    """The straightforward version: email-validator on every value."""
    return _single(read_email_reference(value))
