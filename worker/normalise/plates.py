"""Dutch licence plates (kentekens): dashes placed by the sidecode of the letter/digit pattern."""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from worker.normalise.text import Fixes, clean

# Sidecodes 1-14 as letter (L) / digit (D) patterns with the group lengths their dashes separate.
_SIDECODES: Final = {
    "LLDDDD": (2, 2, 2),  # 1  XX-99-99
    "DDDDLL": (2, 2, 2),  # 2  99-99-XX
    "DDLLDD": (2, 2, 2),  # 3  99-XX-99
    "LLDDLL": (2, 2, 2),  # 4  XX-99-XX
    "LLLLDD": (2, 2, 2),  # 5  XX-XX-99
    "DDLLLL": (2, 2, 2),  # 6  99-XX-XX
    "DDLLLD": (2, 3, 1),  # 7  99-XXX-9
    "DLLLDD": (1, 3, 2),  # 8  9-XXX-99
    "LLDDDL": (2, 3, 1),  # 9  XX-999-X
    "LDDDLL": (1, 3, 2),  # 10 X-999-XX
    "LLLDDL": (3, 2, 1),  # 11 XXX-99-X
    "LDDLLL": (1, 2, 3),  # 12 X-99-XXX
    "DLLDDD": (1, 2, 3),  # 13 9-XX-999
    "DDDLLD": (3, 2, 1),  # 14 999-XX-9
}
_SEPARATORS: Final = re.compile(r"[\s\-.]")
_ASCII_ALNUM: Final = re.compile(r"[A-Z0-9]{6}")


class Plate(NamedTuple):
    plate: str | None
    key: str | None
    fixes: Fixes


_SHAPE: Final = str.maketrans("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", "D" * 10 + "L" * 26)


def _shape(compact: str) -> str:
    return compact.translate(_SHAPE)


def dutch_plate(compact: str) -> str | None:
    """The dashed form of six uppercase letters/digits, or None when no sidecode has that pattern."""
    if _ASCII_ALNUM.fullmatch(compact) is None:
        return None
    groups = _SIDECODES.get(_shape(compact))
    if groups is None:
        return None
    a, b, _ = groups
    return f"{compact[:a]}-{compact[a : a + b]}-{compact[a + b :]}"


def normalise_plate(value: str | None) -> Plate:
    """Dutch plates dashed by sidecode; any other plate kept uppercased, with a note. The key has no separators."""
    text, fixes = clean(value)
    if text is None:
        return Plate(None, None, fixes)
    upper = text.upper()
    dutch = dutch_plate(_SEPARATORS.sub("", upper))
    if dutch is not None:
        plate_fixes = fixes if dutch == text else (*fixes, ("license_plate", "formatted"))
        return Plate(dutch, dutch.replace("-", ""), plate_fixes)
    key = "".join(c for c in upper if c.isalnum()) or None
    return Plate(upper, key, (*fixes, ("license_plate", "not_dutch_kept")))
