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
    import pycountry
    from babel import Locale, UnknownLocaleError
    from babel.languages import get_official_languages

    names: dict[str, str] = {}
    for country in pycountry.countries:
        code = country.alpha_2
        for lang in get_official_languages(code, de_facto=True):
            try:
                name = Locale.parse(lang).territories.get(code)
            except (UnknownLocaleError, ValueError):
                continue
            if name:
                names.setdefault(_fold(name), code)
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
