"""Vehicle identity and fuel: VIN (chassisnummer) and the fuel vocabulary."""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Final

from worker.normalise.text import PLACEHOLDER, PLACEHOLDERS, Result, clean

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
    if not vin.isascii():
        vin = unicodedata.normalize("NFC", vin)  # marks a space kept apart are composed (and ordered) once joined
    if vin != text and vin.lower() in PLACEHOLDERS:  # "0-", "X X": a placeholder once the separators are gone
        return None, False, (*fixes, PLACEHOLDER)
    if _VIN.fullmatch(vin) is None:
        return vin, False, (*fixes, ("vin", "invalid_kept"))
    return vin, True, fixes if vin == text else (*fixes, ("vin", "formatted"))


FUELS: Final = ("petrol", "diesel", "electric", "hybrid", "plugin_hybrid", "lpg", "cng", "lng", "hydrogen", "other")

# Keyed by the lowercase spelling without spaces, dashes, underscores and dots. Dutch, Flemish, French, German and
# English spellings, trade shorthand, the EU pump labels (E5/E10 petrol, B7/XTL diesel, H2) and the RDW's
# brandstof_omschrijving values (Benzine, Diesel, Elektriciteit, LPG, CNG, LNG, Waterstof, Alcohol) and hybrid
# classes (OVC-HEV is a plug-in, NOVC-HEV not). "Gas" at a Dutch garage means LPG (autogas), not natural gas.
_PETROL: Final = ("benzine", "benz", "benzin", "gasoline", "essence", "super", "superbenzine", "euro95", "euro98")
_PETROL_LABELS: Final = (
    "e5",
    "e10",
    "sp95",
    "sp98",
    "super95",
    "super98",
    "superplus",
    "loodvrij",
    "ongelood",
    "unleaded",
)
_DIESEL: Final = ("dieselolie", "gasolie", "gasoil", "gazole", "b7", "b10", "xtl", "hvo", "hvo100")
_ELECTRIC: Final = ("elektriciteit", "elektrisch", "elektro", "electric", "electricity", "electrique", "électrique")
_ELECTRIC_SHORT: Final = ("elec", "ev", "bev", "volledigelektrisch", "fullelectric", "100%elektrisch", "stroom")
_HYBRID: Final = ("hybride", "hev", "fhev", "fullhybrid", "mildhybrid", "mildhybride", "mhev", "novchev")
_PLUGIN: Final = ("pluginhybride", "pluginhybrid", "plugin", "phev", "ovchev", "oplaadbarehybride")
_OTHER: Final = ("alcohol", "ethanol", "bioethanol", "e85", "flexfuel", "overig", "overige", "anders")
_FUEL_SPELLINGS: Final = {
    **{f.replace("_", ""): f for f in FUELS},
    **dict.fromkeys(_PETROL + _PETROL_LABELS, "petrol"),
    **dict.fromkeys(_DIESEL, "diesel"),
    **dict.fromkeys(_ELECTRIC + _ELECTRIC_SHORT, "electric"),
    **dict.fromkeys(_HYBRID, "hybrid"),
    **dict.fromkeys(_PLUGIN, "plugin_hybrid"),
    **dict.fromkeys(("gas", "autogas", "lpgg3", "g3", "gpl"), "lpg"),
    **dict.fromkeys(("aardgas", "erdgas", "groengas", "biogas", "naturalgas", "gnc", "gnv", "cbg"), "cng"),
    **dict.fromkeys(("vloeibaaraardgas", "lbg"), "lng"),
    **dict.fromkeys(("waterstof", "h2", "wasserstoff", "hydrogene", "hydrogène", "fcev"), "hydrogen"),
    **dict.fromkeys(_OTHER, "other"),
}


def _combinations() -> dict[frozenset[str], str]:
    """Fuels written together ("Benzine/Elektriciteit", as the RDW lists a hybrid; "Diesel/Elektro", "Benzine +
    LPG", "Hybride (benzine)", "Plug-in hybride benzine"): what the combination means. Anything else (petrol and
    diesel together) is unrecognised."""
    engines: tuple[frozenset[str], ...] = (frozenset(), frozenset({"petrol"}), frozenset({"diesel"}))
    table: dict[frozenset[str], str] = {}
    for engine in engines:
        for extra in (frozenset(), frozenset({"electric"})):
            table[engine | extra | {"plugin_hybrid"}] = "plugin_hybrid"
            table[engine | extra | {"plugin_hybrid", "hybrid"}] = "plugin_hybrid"
            table[engine | extra | {"hybrid"}] = "hybrid"
        if engine:
            table[engine | {"electric"}] = "hybrid"
    return table | {
        frozenset({"petrol", "lpg"}): "lpg",
        frozenset({"petrol", "cng"}): "cng",
        frozenset({"electric", "hydrogen"}): "hydrogen",
    }


_FUEL_COMBINATIONS: Final = _combinations()
_FUEL_IGNORED: Final = re.compile(r"[\s\-_.]")
# "Diesel Euro 6": the emission class says nothing about the fuel (unlike "Euro 95", a petrol).
_EMISSION_CLASS: Final = re.compile(r"\beuro ?[1-6][a-z]*\b")
# Where one fuel name ends and the next begins, once the whole spelling is not known as one name.
_FUEL_JOINS: Final = re.compile(r"[\s/+,&;()]+|\b(?:en|and|und|et)\b")


def _fuel(text: str) -> str | None:
    lowered = text.lower()
    fuel = _FUEL_SPELLINGS.get(_FUEL_IGNORED.sub("", lowered))
    if fuel is not None:
        return fuel
    parts = {_FUEL_IGNORED.sub("", part) for part in _FUEL_JOINS.split(_EMISSION_CLASS.sub("", lowered))} - {""}
    fuels = frozenset(_FUEL_SPELLINGS.get(part, "") for part in parts)
    if "" in fuels or not fuels:
        return None
    return next(iter(fuels)) if len(fuels) == 1 else _FUEL_COMBINATIONS.get(fuels)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def normalise_fuel(value: str | None) -> Result:
    """One of FUELS; an unknown spelling becomes ``other`` with a note."""
    text, fixes = clean(value)
    if text is None:
        return None, fixes
    fuel = _fuel(text)
    if fuel is None:
        return "other", (*fixes, ("fuel", "unrecognised"))
    return fuel, fixes if fuel == text else (*fixes, ("fuel", "mapped"))
