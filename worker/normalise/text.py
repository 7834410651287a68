"""Field-level text rules shared by every normaliser: whitespace, placeholders and the note vocabulary.

A field rule takes the cleaned value and returns ``(value, fixes)``; a fix is ``(rule, action)`` and the caller
attaches the field name. Fixes describe what happened, never the value (AVG/GDPR).
"""

from __future__ import annotations

import unicodedata
from typing import Final

Fix = tuple[str, str]
Fixes = tuple[Fix, ...]
Result = tuple[str | None, Fixes]

NO_FIXES: Final[Fixes] = ()
WHITESPACE: Final[Fix] = ("whitespace", "collapsed")
PLACEHOLDER: Final[Fix] = ("placeholder", "nulled")

# What DMS users type when a field is required on screen but unknown. Compared case-insensitively.
PLACEHOLDERS: Final = frozenset(
    {
        "",
        "-",
        "--",
        "---",
        ".",
        "..",
        "...",
        "?",
        "0",
        "x",
        "xx",
        "xxx",
        "n.v.t.",
        "n.v.t",
        "nvt",
        "n/a",
        "na",
        "onbekend",
        "geen",
        "unknown",
        "none",
        "null",
    }
)


# Hyphen, non-breaking hyphen, figure dash, en dash, em dash, horizontal bar, minus sign, small and full-width
# hyphen-minus: what word processors and phone keyboards put where a person typed "-".
DASHES: Final = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"))


def collapse(value: str) -> str:
    """Trim and collapse every run of (Unicode) whitespace into one space."""
    return " ".join(value.split())


INVISIBLE: Final[Fix] = ("invisible", "removed")

# Zero-width joiner and non-joiner: part of how some scripts and emoji sequences are written, not copy-paste debris.
_JOINERS: Final = frozenset("\u200c\u200d")


def _visible(text: str) -> str:
    """Without invisible format characters (Unicode category Cf: zero-width space, soft hyphen, byte order mark,
    direction marks and embeddings). ``clean`` then composes what is left (NFC).

    They arrive with text copied from web pages, mail and chat, cannot be seen on any screen, and yet a zero-width
    space splits a phone number in two (``06<ZWSP>12345678`` was read as a Belgian landline) or voids an e-mail
    address. NFC makes a name typed on a Mac (``A`` + combining diaeresis) the same string as ``Ä`` typed elsewhere.
    """
    return "".join(c for c in text if c in _JOINERS or unicodedata.category(c) != "Cf")


def clean(value: str | None) -> Result:
    """Invisible characters, whitespace and placeholders: what every free-text field goes through first."""
    if value is None:
        return None, NO_FIXES
    visible, fixes = value, NO_FIXES
    if not value.isascii():
        kept = _visible(value)
        fixes = (INVISIBLE,) if len(kept) < len(value) else NO_FIXES
        visible = unicodedata.normalize("NFC", kept)
    text = " ".join(visible.split())  # collapse(), inlined: this runs for every field of every event
    if text.lower() in PLACEHOLDERS:
        return None, (PLACEHOLDER,)
    return text, (*fixes, WHITESPACE) if text != visible else fixes


def clean_id(value: str | None) -> Result:
    # Ids are opaque keys that must match exactly across events: whitespace only, no placeholder rule.
    if value is None:
        return None, NO_FIXES
    text = value.strip()
    fixes = (("whitespace", "trimmed"),) if text != value else NO_FIXES
    return text or None, fixes
