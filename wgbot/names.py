"""names: is a new group name safe to show next to the others? Look-alikes (Unicode TR 39 §4 skeletons),
mixed scripts (TR 39 §5.2, "highly restrictive") and invisible or bidi control characters are refused.

It reads the groups' names from the store and decides; it never changes anything and never sends mail. The
confusables and script data are Unicode's (confusables.txt, Scripts.txt), as shipped by confusable-homoglyphs.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from wgbot.store import Group

# Scripts that may be mixed with Latin in one name (TR 39 §5.2 "highly restrictive": Japanese, Chinese with
# Bopomofo, Korean). COMMON and INHERITED (digits, punctuation, combining marks) go with any script.
_ALLOWED_MIXES = ({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}, {"LATIN", "HAN", "BOPOMOFO"}, {"LATIN", "HAN", "HANGUL"})
_NEUTRAL = {"COMMON", "INHERITED"}
# Default-ignorable code points that are not format characters (Cf) but show as nothing (DerivedCoreProperties).
_BLANKS = {0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F, 0x2800, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F}


def invisible(name: str) -> list[str]:
    """The invisible, control or bidi characters in `name`, as U+XXXX (Cc, Cf, Co, Cs, Cn, variation selectors)."""
    found = []
    for char in name:
        code = ord(char)
        if (unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn") or code in _BLANKS
                or 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF):
            found.append(f"U+{code:04X}")
    return found


def scripts(name: str) -> set[str]:
    """The scripts of `name`'s letters (COMMON and INHERITED left out)."""
    from confusable_homoglyphs import categories

    return {categories.alias(c) for c in name} - _NEUTRAL


def mixed_script(name: str) -> bool:
    found = scripts(name)
    return len(found) > 1 and not any(found <= allowed for allowed in _ALLOWED_MIXES)


@lru_cache(maxsize=1)
def _prototypes() -> tuple[dict[str, str], dict[str, str]]:
    """(single character → the representative of its confusable class, character → multi-character prototype).

    confusables.txt maps each source character to a prototype; the packaged data holds each pair in both
    directions, so the classes are the connected components of the single-character pairs, and a character
    paired with a string of several characters is that string's source (sources are single code points)."""
    from confusable_homoglyphs.utils import load

    data = load("confusables.json")
    parent: dict[str, str] = {}

    def find(c: str) -> str:
        while parent.get(c, c) != c:
            parent[c] = parent.get(parent[c], parent[c])
            c = parent[c]
        return c

    expand: dict[str, str] = {}
    for key, entries in data.items():
        for entry in entries:
            other = entry["c"].replace("\u200e", "").replace("\u200f", "")
            if len(key) == 1 and len(other) == 1:
                a, b = find(key), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            elif len(key) == 1 and len(other) > 1:
                expand[key] = other
    return {c: find(c) for c in parent}, expand


def skeleton(name: str) -> str:
    """TR 39 §4's skeleton, made blind to case and spacing: NFD, each character replaced by its confusable
    prototype, NFD again, then case-folded; two names with the same skeleton look alike."""
    classes, expand = _prototypes()
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name))
    text = "".join(expand.get(c, c) for c in text)
    text = "".join(classes.get(c, c) for c in unicodedata.normalize("NFD", text))
    return "".join(unicodedata.normalize("NFD", text).casefold().split())


def skeletons(name: str) -> set[str]:
    """The skeletons of `name` as written and in lower case (`I` looks like `l`, `i` does not)."""
    return {skeleton(name), skeleton(name.casefold())}


def name_problem(session: Session, name: str) -> str | None:
    """Why `name` cannot name a new group (invisible characters, mixed scripts, a look-alike of an existing
    group's name), or None."""
    hidden = invisible(name)
    if hidden:
        return f"it contains invisible or control characters ({', '.join(hidden[:5])})"
    mine = skeletons(name)
    for existing in session.scalars(select(Group.name)):
        if skeletons(existing) & mine:
            return f"it looks like the name of the existing group {existing!r}"
    if mixed_script(name):
        return f"it mixes scripts ({', '.join(sorted(scripts(name)))}); write it in one script"
    return None
