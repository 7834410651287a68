"""Forms of address (aanhef): only the unambiguous Dutch ones are mapped, nothing is inferred from names."""

from __future__ import annotations

import functools
import re
from typing import Final

from worker.normalise.text import Result, clean

# Pure rules on values that repeat across customers (cities, titles, house numbers, fuels): remembered.
_CACHE_SIZE: Final = 4096

# Keyed by the lowercase text without dots and spaces. "mr." is deliberately absent: in Dutch it is the law
# degree (meester in de rechten), not "Mister". Gender is never guessed from a first name.
_TITLES: Final = {
    "deheer": "dhr.",
    "dhr": "dhr.",
    "heer": "dhr.",
    "hr": "dhr.",
    "meneer": "dhr.",
    "mevrouw": "mevr.",
    "mevr": "mevr.",
    "mw": "mevr.",
}
_IGNORED: Final = re.compile(r"[.\s]")


@functools.lru_cache(maxsize=_CACHE_SIZE)
def normalise_title(value: str | None) -> Result:
    """``dhr.`` or ``mevr.`` for their common spellings; any other title is kept as typed (whitespace only)."""
    text, fixes = clean(value)
    if text is None:
        return None, fixes
    mapped = _TITLES.get(_IGNORED.sub("", text.lower()))
    if mapped is None or mapped == text:
        return text, fixes
    return mapped, (*fixes, ("title", "mapped"))
