"""Countries as ISO 3166 alpha-2 codes, from a code or a name in English or the country's own language.

pycountry knows the codes and English names; Babel (CLDR) knows what each country calls itself in its official
languages. Pure lookups; nothing here touches the store.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).replace("-", " ").split())


@lru_cache(maxsize=1)
def _endonyms() -> dict[str, str]:
    """Each country's own names for itself, folded → alpha-2. Each language's CLDR data is loaded once and
    dropped from Babel's cache after use: keeping all of them held 85 MB (the peak RSS of a member import)."""
    import pycountry
    from babel import Locale, UnknownLocaleError, localedata
    from babel.languages import get_official_languages

    wanted = [(country.alpha_2, lang) for country in pycountry.countries
              for lang in get_official_languages(country.alpha_2, de_facto=True)]
    by_language: dict[str, list[str]] = {}
    for code, lang in wanted:
        by_language.setdefault(lang, []).append(code)
    found: dict[tuple[str, str], str] = {}
    for lang, codes in by_language.items():
        try:
            territories = Locale.parse(lang).territories
        except (UnknownLocaleError, ValueError):
            continue
        found.update({(code, lang): territories[code] for code in codes if territories.get(code)})
        cache = getattr(localedata, "_cache", {})   # Babel's private cache: if it moves, only memory is lost
        for loaded in [key for key in cache if key != "root"]:
            cache.pop(loaded, None)
    names: dict[str, str] = {}
    for code, lang in wanted:            # the order of before: the first country to claim a name keeps it
        if (code, lang) in found:
            names.setdefault(_fold(found[(code, lang)]), code)
    return names


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
    return _endonyms().get(_fold(text))


def country_name(code: str) -> str:
    import pycountry

    found = pycountry.countries.get(alpha_2=code) if code else None
    return str(getattr(found, "common_name", None) or found.name) if found is not None else code
