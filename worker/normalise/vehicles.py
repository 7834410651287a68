"""Vehicle identity and fuel: VIN (chassisnummer) and the fuel vocabulary."""

from __future__ import annotations

import functools
import re
from typing import Final

from worker.normalise.text import Result, clean

# Pure rules on values that repeat across customers (cities, titles, house numbers, fuels): remembered.
_CACHE_SIZE: Final = 4096

# ISO 3779: 17 characters, no I, O or Q. The North-American check digit (position 9) is not used in Europe.
_VIN: Final = re.compile(r"[A-HJ-NPR-Z0-9]{17}")
_VIN_SEPARATORS: Final = re.compile(r"[\s\-]")


def normalise_vin(value: str | None) -> tuple[str | None, bool, tuple[tuple[str, str], ...]]:
    """``(vin, valid, fixes)``: uppercased without spaces or dashes; an invalid one (old chassis numbers exist)
    is kept, with a note."""
    text, fixes = clean(value)
    if text is None:
        return None, False, fixes
    vin = _VIN_SEPARATORS.sub("", text.upper())
    if _VIN.fullmatch(vin) is None:
        return vin, False, (*fixes, ("vin", "invalid_kept"))
    return vin, True, fixes if vin == text else (*fixes, ("vin", "formatted"))


FUELS: Final = ("petrol", "diesel", "electric", "hybrid", "plugin_hybrid", "lpg", "cng", "lng", "hydrogen", "other")

# Keyed by the lowercase spelling without spaces, dashes, underscores and dots. Dutch, English and RDW
# (brandstof_omschrijving) spellings; RDW writes a hybrid as its two fuels.
_FUEL_SPELLINGS: Final = {
    **{f.replace("_", ""): f for f in FUELS},
    "benzine": "petrol",
    "gasoline": "petrol",
    "euro95": "petrol",
    "euro98": "petrol",
    "e10": "petrol",
    "superbenzine": "petrol",
    "dieselolie": "diesel",
    "elektriciteit": "electric",
    "elektrisch": "electric",
    "electricity": "electric",
    "ev": "electric",
    "bev": "electric",
    "volledigelektrisch": "electric",
    "hybride": "hybrid",
    "hev": "hybrid",
    "fullhybrid": "hybrid",
    "mildhybrid": "hybrid",
    "mhev": "hybrid",
    "benzine/elektriciteit": "hybrid",
    "diesel/elektriciteit": "hybrid",
    "benzine/elektrisch": "hybrid",
    "pluginhybride": "plugin_hybrid",
    "phev": "plugin_hybrid",
    "autogas": "lpg",
    "lpgg3": "lpg",
    "benzine/lpg": "lpg",
    "aardgas": "cng",
    "groengas": "cng",
    "naturalgas": "cng",
    "benzine/cng": "cng",
    "vloeibaaraardgas": "lng",
    "waterstof": "hydrogen",
    "h2": "hydrogen",
    "fcev": "hydrogen",
    "alcohol": "other",
    "ethanol": "other",
    "e85": "other",
    "overig": "other",
    "overige": "other",
    "anders": "other",
}
_FUEL_IGNORED: Final = re.compile(r"[\s\-_.]")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def normalise_fuel(value: str | None) -> Result:
    """One of FUELS; an unknown spelling becomes ``other`` with a note."""
    text, fixes = clean(value)
    if text is None:
        return None, fixes
    key = _FUEL_IGNORED.sub("", text.lower()).replace("+", "/")
    fuel = _FUEL_SPELLINGS.get(key)
    if fuel is None:
        return "other", (*fixes, ("fuel", "unrecognised"))
    return fuel, fixes if fuel == text else (*fixes, ("fuel", "mapped"))
