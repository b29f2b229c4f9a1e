"""Reading what a member meant (issue 15): the fields of mail to SLUG-join@, a group's name written without
quotes, a bare Subject verb that only repeats the body's command, and "did you mean" for a verb or a group one
letter off. Called by commands.py while reading and dispatching; it changes nothing in the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wgbot.context import FIELD_LINE, Line, Registry, Spec, find_group, one_letter_off
from wgbot.parse import normalise_word

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def address_command(registry: Registry, verb: str, slug: str, text: str) -> Line:
    """The command that mail to SLUG-join@ or SLUG-leave@ stands for, with the `Field: value` lines its body
    gives (Organisation:, Country:, Replacement:), read up to a signature or quoted text."""
    line = Line(f"{verb} {slug}", verb, [slug], source="address")
    spec = registry.lookup(verb)
    for raw in text.split("\n"):
        if raw.startswith(">") or raw.rstrip("\r") in ("-- ", "--"):
            break
        m = FIELD_LINE.match(raw.strip())
        name = normalise_word(m.group(1)).replace(" ", "") if m else ""
        if m and spec is not None and name in spec.fields and name not in line.fields:
            line.fields[name] = m.group(2).strip()
    return line


def takes_group(spec: Spec) -> bool:
    """Does the command's first argument name a group (its usage says `VERB GROUP ...`)?"""
    words = spec.usage.split()
    return len(words) > 1 and words[1] == "GROUP"


def join_group_name(session: Session, spec: Spec, line: Line) -> None:
    """`info Migrant Inclusion & Rights`: when the first argument is no group but the first words together are a
    group's exact name, take them as one argument (the name the bot itself shows, unquoted). Also repairs a
    name with an apostrophe ("Women's Rights") that shlex read as an unbalanced quote."""
    if not takes_group(spec):
        return
    args = line.raw.split()[1:] if line.error else line.args
    if len(args) < 2 or (not line.error and find_group(session, args[0]) is not None):
        return
    for end in range(min(len(args), 12), 1, -1):   # a group's name is a few words, not a paragraph
        if find_group(session, " ".join(args[:end])) is not None:
            line.args = [" ".join(args[:end]), *args[end:]]
            line.error = ""
            return


def drop_bare_subject(lines: list[Line]) -> list[Line]:
    """A Subject that is only a verb (`join`, `confirm`) the body then gives in full is not a second command."""
    if len(lines) > 1 and lines[0].source == "subject" and not lines[0].args:
        verb = normalise_word(lines[0].verb)
        if any(normalise_word(line.verb) == verb for line in lines[1:]):
            return lines[1:]
    return lines


def similar_verb(registry: Registry, word: str) -> str:
    """The command name one letter off `word` (`joni` → `join`), or ''. Names shorter than four letters get no
    suggestion: too many words are one letter off them ("Sent from my iPhone" is not `set`, "And" not `end`)."""
    word = normalise_word(word)
    if len(word) < 3:
        return ""
    for spec in registry.specs():
        for name in (spec.name, *spec.aliases):
            if len(name) >= 4 and one_letter_off(word, name):
                return spec.name
    return ""
