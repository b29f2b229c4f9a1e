"""Countries as ISO 3166 alpha-2 codes, from a code or a name in English or the country's own language.

pycountry knows the codes and English names; a table built once from Babel's CLDR data (scripts/country_names.py)
knows what each country calls itself in its official languages. Pure lookups; nothing here touches the store.
"""

from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("country_names.json")


def fold(text: str) -> str:
    """A name as compared: case-folded, accents and invisible format characters dropped (the zero-width
    joiner of Sinhala's ශ්‍රී ලංකාව, which mail cleaning may remove), hyphens and runs of spaces made single."""
    text = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(c for c in text if not unicodedata.combining(c) and unicodedata.category(c) != "Cf")
    return " ".join(kept.replace("-", " ").split())


@lru_cache(maxsize=1)
def _endonyms() -> dict[str, str]:
    """Each country's own names for itself, folded → alpha-2: a table built from Babel's CLDR data by
    scripts/country_names.py and shipped with the package (about 300 names, a few KB in memory). Loading
    Babel's locales here instead raised a running bot from 63 to 153 MB for good (issue 15)."""
    loaded: dict[str, str] = json.loads(TABLE.read_text(encoding="utf-8"))
    return loaded


@lru_cache(maxsize=4096)
def normalise_country(value: str) -> str | None:
    """The alpha-2 code for `value` (IT, ITA, Italy, Italia, italia), or None when it names no country."""
    import pycountry

    text = " ".join(value.split())
    if not text or len(text) > 80:
        return None
    if len(text) in (2, 3) and text.isascii() and text.isalpha():
        code = text.upper()
        found = pycountry.countries.get(alpha_2=code) if len(code) == 2 else pycountry.countries.get(alpha_3=code)
        if found is not None:
            return str(found.alpha_2)
        if text.upper() == "UK":
            return "GB"
    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        pass
    return _endonyms().get(fold(text))


def country_name(code: str) -> str:
    import pycountry

    found = pycountry.countries.get(alpha_2=code) if code else None
    return str(getattr(found, "common_name", None) or found.name) if found is not None else code
