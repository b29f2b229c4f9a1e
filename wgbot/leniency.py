"""Reading what a member meant (issue 15): the fields of mail to SLUG-join@, a group's name written without
quotes, a bare Subject verb that only repeats the body's command, and "did you mean" for a verb or a group one
letter off. Called by commands.py while reading and dispatching; it changes nothing in the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from wgbot.commands import Line, Registry, Spec
    from wgbot.store import Group


def address_command(registry: Registry, verb: str, slug: str, text: str) -> Line:
    """The command that mail to SLUG-join@ or SLUG-leave@ stands for, with the `Field: value` lines its body
    gives (Organisation:, Country:, Replacement:), read up to a signature or quoted text."""
    from wgbot.commands import _FIELD, Line
    from wgbot.parse import normalise_word

    line = Line(f"{verb} {slug}", verb, [slug], source="address")
    spec = registry.lookup(verb)
    for raw in text.split("\n"):
        if raw.startswith(">") or raw.rstrip("\r") in ("-- ", "--"):
            break
        m = _FIELD.match(raw.strip())
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
    from wgbot.commands import find_group

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
        from wgbot.parse import normalise_word

        verb = normalise_word(lines[0].verb)
        if any(normalise_word(line.verb) == verb for line in lines[1:]):
            return lines[1:]
    return lines


def one_letter_off(a: str, b: str) -> bool:
    """True when `a` becomes `b` by one inserted, deleted or changed letter, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diffs) == 1 or (len(diffs) == 2 and diffs[1] == diffs[0] + 1
                                   and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def similar_verb(registry: Registry, word: str) -> str:
    """The command name one letter off `word` (`joni` → `join`), or ''. Names shorter than four letters get no
    suggestion: too many words are one letter off them ("Sent from my iPhone" is not `set`, "And" not `end`)."""
    from wgbot.parse import normalise_word

    word = normalise_word(word)
    if len(word) < 3:
        return ""
    for spec in registry.specs():
        for name in (spec.name, *spec.aliases):
            if len(name) >= 4 and one_letter_off(word, name):
                return spec.name
    return ""


def similar_group(session: Session, value: str) -> Group | None:
    """The open group whose slug is one letter off `value`, for "did you mean"; None when there is none."""
    from wgbot.store import Group, GroupStatus

    word = value.strip().casefold()
    if len(word) < 3 or len(word) > 60:
        return None
    groups = session.scalars(select(Group).where(Group.status != GroupStatus.CLOSED.value).order_by(Group.id))
    return next((g for g in groups if one_letter_off(word, g.slug)), None)
