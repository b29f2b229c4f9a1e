"""Regenerates wgbot/country_names.json, the countries' own names for themselves, from Babel's CLDR data.

Run `python -m scripts.country_names` after upgrading Babel; tests/unit/test_countries.py checks that the shipped
table still matches Babel. wgbot itself never imports Babel at run time: loading a CLDR locale per official
language costs about 85 MB that Python does not give back (issue 15).
"""

from __future__ import annotations

import json
from pathlib import Path

from wgbot.countries import TABLE, fold


def build() -> dict[str, str]:
    """Folded endonym → ISO 3166 alpha-2, for each country's official languages (de facto ones included). When
    two countries share a name in their languages, the first one in pycountry's order keeps it."""
    import pycountry
    from babel import Locale, UnknownLocaleError
    from babel.languages import get_official_languages

    wanted = [(country.alpha_2, lang) for country in pycountry.countries
              for lang in get_official_languages(country.alpha_2, de_facto=True)]
    territories: dict[str, dict[str, str]] = {}
    for lang in sorted({lang for _, lang in wanted}):
        try:
            territories[lang] = dict(Locale.parse(lang).territories)
        except (UnknownLocaleError, ValueError):
            continue
    names: dict[str, str] = {}
    for code, lang in wanted:
        name = territories.get(lang, {}).get(code)
        if name:
            names.setdefault(fold(name), code)
    return dict(sorted(names.items()))


def main() -> None:
    table = build()
    Path(TABLE).write_text(json.dumps(table, ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(table)} names to {TABLE}")


if __name__ == "__main__":
    main()
