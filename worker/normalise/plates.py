"""Licence plates (kentekens): Dutch dashes placed by the sidecode of the letter/digit pattern, Belgian plates
of the current series (1-ABC-123) dashed too; typographic dashes read as the dash a person meant."""

from __future__ import annotations

import re
import unicodedata
from typing import Final, NamedTuple

from worker.normalise.text import DASHES, Fixes, clean, collapse

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
# Spaces, dashes and dots as plates are written; underscores, slashes and brackets as DMS fields end up with them
# ("12_ABC_3", "12-ABC-3 (NL)").
_SEPARATORS: Final = re.compile(r"[\s\-._/()]")
_ASCII_ALNUM: Final = re.compile(r"[A-Z0-9]{6}")
# Belgium since 2010: a digit, three letters, three digits; no Dutch sidecode has seven characters.
_BELGIAN: Final = re.compile(r"[1-9][A-Z]{3}[0-9]{3}")
FORMATTED: Final = ("license_plate", "formatted")


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


def belgian_plate(compact: str) -> str | None:
    """The dashed form of a Belgian plate of the current series, or None."""
    if _BELGIAN.fullmatch(compact) is None:
        return None
    return f"{compact[0]}-{compact[1:4]}-{compact[4:]}"


def _with_country_code(compact: str) -> str | None:
    """A Dutch plate written with the country code before or after it (NL 12-ABC-3, 12-ABC-3 NL; as on the
    plate's blue band): Claire matches the plate, not the country. Eight characters are never a Dutch plate."""
    if len(compact) != 8:
        return None
    if compact.startswith("NL"):
        return dutch_plate(compact[2:])
    return dutch_plate(compact[:-2]) if compact.endswith("NL") else None


def _compatible(text: str) -> str:
    compatible = collapse(unicodedata.normalize("NFKC", text).upper().translate(DASHES))
    return compatible or text.upper()


def normalise_plate(value: str | None) -> Plate:
    """Dutch plates dashed by sidecode, Belgian ones as 1-ABC-123; any other plate kept uppercased (typographic
    dashes as "-"), with a note. The key has no separators."""
    text, fixes = clean(value)
    if text is None:
        return Plate(None, None, fixes)
    # Full-width letters and digits (NFKC) and typographic dashes come from word processors, not from the plate.
    upper = text.upper() if text.isascii() else _compatible(text)
    compact = _SEPARATORS.sub("", upper)
    dashed = dutch_plate(compact) or belgian_plate(compact) or _with_country_code(compact)
    if dashed is not None:
        plate_fixes = fixes if dashed == text else (*fixes, FORMATTED)
        return Plate(dashed, dashed.replace("-", ""), plate_fixes)
    key = "".join(c for c in upper if c.isalnum()) or None
    return Plate(upper, key, (*fixes, ("license_plate", "not_dutch_kept")))
