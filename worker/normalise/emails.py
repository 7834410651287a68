"""E-mail addresses: lowercased and syntax-checked with email-validator (no DNS), IDN domains in Unicode form.

``normalise_email_reference`` is the definition (email-validator on every value). ``normalise_email`` answers
plain ASCII addresses - nearly all of them - with one regex that accepts a strict subset of what
email-validator accepts and produces the same normalised form (a differential test checks it); everything
else goes to email-validator.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Final, Literal

import email_validator

from worker.normalise.text import Fixes, Result, clean

LOWERCASED: Final = ("email", "lowercased")
REJECTED: Final = ("email", "rejected")
IDN: Final = ("email", "idn_normalised")

_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Local part: dot-atom of the common atext characters. Domain: at least two LDH labels, a TLD ending in a letter,
# no "--" anywhere (IDNA's reserved-label rules) - those, and non-ASCII, are left to email-validator.
_PLAIN: Final = re.compile(
    rf"(?P<local>[a-z0-9_%+\-]+(?:\.[a-z0-9_%+\-]+)*)@(?P<domain>(?:{_LABEL}\.)+[a-z0-9-]*[a-z])",
)
_SPECIAL_USE: Final = tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _plain(address: str) -> bool:
    m = _PLAIN.fullmatch(address)
    if m is None or len(address) > 254 or len(m["local"]) > 64 or "--" in m["domain"]:
        return False
    domain = m["domain"]
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


def normalise_email_with(value: str | None, address_rule: AddressRule) -> Result:
    text, fixes = clean(value)
    if text is None:
        return None, fixes
    lowered = text.lower()
    found = address_rule(lowered)
    if found is None:
        return None, (*fixes, REJECTED)
    extra: Fixes = (LOWERCASED,) if lowered != text else ()
    if found != lowered:
        extra += (IDN,)
    return found, fixes + extra


def normalise_email(value: str | None) -> Result:
    """Lowercased, syntax-checked address; None with a note when it is not an address."""
    return normalise_email_with(value, fast_address)


def normalise_email_reference(value: str | None) -> Result:
    """The straightforward version: email-validator on every value."""
    return normalise_email_with(value, reference_address)
