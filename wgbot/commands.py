"""commands: the email command language (SPEC §3): reading commands from a message, running them, and the
general commands (help, groups, info, set, who, confirm, end); the registry and the Context are in context.py.
Each command is one decorated function plus one template `commands/NAME.txt`.

Commands change the store and return a Result; they queue mail through the Context and never touch the
network. A command that fails changes nothing: each runs inside its own SAVEPOINT.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wgbot import leniency, pending
from wgbot.context import (
    FIELD_LINE,
    Context,
    Line,
    Registry,
    Result,
    Spec,
    registry,
    shown,
)
from wgbot.countries import country_name
from wgbot.groups import contacts, supporters
from wgbot.organisations import spellings, spelt
from wgbot.parse import clean_header_text, normalise_word
from wgbot.pending import confirm_token, confirmation
from wgbot.render import render_fragment
from wgbot.rules import formation
from wgbot.store import (
    Delivery,
    Group,
    GroupStatus,
    Member,
    Membership,
    PendingAction,
    Role,
    audit,
    get_member,
    membership,
)

# ---------------------------------------------------------------------------------------------------------
# Reading commands from a message

_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|antw|tr|rif|r|res|enc|odp|vá|回复|回覆|答复|转发|轉寄)\s*"
                     r"(?:\[\d+\]|\(\d+\))?\s*[:：]|\[[^\]]*\])\s*", re.I)
MAX_UNKNOWN = 5


def strip_subject(subject: str) -> str:
    """Subject without Re:, Fwd:, AW:, 回复: and [tags], however many are stacked."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _PREFIX.sub("", subject, count=1)
    return subject.strip()



def _split(raw: str) -> tuple[list[str], str]:
    try:
        return shlex.split(raw, posix=True), ""
    except ValueError:
        return raw.split(), "unbalanced quotes; put an argument with spaces in double quotes"


def _read_fields_and_text(spec: Spec, line: Line, body: list[str], i: int) -> int:
    """Read the `Field: value` lines (and, for a command that takes text, the text up to the signature or a
    quote) that follow a command, from body[i]; returns the index after them."""
    while spec.fields and i < len(body):
        stripped = body[i].strip()
        if not stripped and not line.fields:
            i += 1
            continue
        m = FIELD_LINE.match(stripped)
        if not m or normalise_word(m.group(1)).replace(" ", "") not in spec.fields:
            break
        line.fields[normalise_word(m.group(1)).replace(" ", "")] = m.group(2).strip()
        i += 1
    if spec.takes_text:
        rest: list[str] = []
        while i < len(body):
            cur = body[i]
            if cur.startswith(">") or cur.rstrip("\r") in ("-- ", "--"):
                break
            rest.append(cur.rstrip())
            i += 1
        line.text = "\n".join(rest).strip()
    return i


def _subject_command(registry: Registry, subject: str, body: list[str]) -> tuple[list[Line], int]:
    """The Subject's command when its first word is one, and the body line where the body's commands start."""
    lines: list[Line] = []
    subj = strip_subject(subject)
    if subj:
        words, err = _split(subj)
        if words and registry.lookup(words[0]) is not None and not err:
            lines.append(Line(subj, words[0], words[1:], source="subject"))
    subject_spec = registry.lookup(lines[0].verb) if lines else None
    first = next((b.strip() for b in body if b.strip()), "")
    first_words, _ = _split(first) if first else ([], "")
    if subject_spec is not None and (subject_spec.fields or subject_spec.takes_text) and not (
            first_words and registry.lookup(first_words[0]) is not None):
        # `propose NAME` in the Subject: the body holds its fields and its text.
        return lines, _read_fields_and_text(subject_spec, lines[0], body, 0)
    return lines, 0


def read_commands(registry: Registry, subject: str, text: str, max_lines: int) -> tuple[list[Line], list[str], str]:
    """(commands, unknown lines, why reading stopped) from a Subject and a first text part.

    Reading stops at `end`, a signature line (`-- `), the first quoted line (`>`), after `max_lines` lines
    with text, or after MAX_UNKNOWN unknown lines. Words in the Subject that are not a command are ignored.
    """
    body = text.split("\n")
    lines, i = _subject_command(registry, subject, body)
    unknown: list[str] = []
    stopped = ""
    seen = 0
    while i < len(body):
        raw = body[i].strip()
        i += 1
        if not raw:
            continue
        if body[i - 1].startswith(">") or raw.startswith(">"):
            stopped = "quoted text"
            break
        if body[i - 1].rstrip("\r") in ("-- ", "--") or raw == "--":
            stopped = "signature"
            break
        seen += 1
        if seen > max_lines:
            stopped = f"more than {max_lines} lines"
            break
        words, err = _split(raw)
        spec = registry.lookup(words[0]) if words else None
        if spec is None:
            # The quote attribution ("On Mon, Alice wrote:") precedes a quote: not worth an error.
            nxt = body[i].lstrip() if i < len(body) else ""
            if raw.endswith(":") and nxt.startswith(">"):
                continue
            if len(words) <= 4 and leniency.similar_verb(registry, words[0]):
                lines.append(Line(raw, words[0], words[1:], error=err))  # `joni x`: answered "did you mean"
                continue
            unknown.append(clean_header_text(raw, 120))
            if len(unknown) >= MAX_UNKNOWN:
                stopped = f"{MAX_UNKNOWN} lines that are not commands"
                break
            continue
        if spec.name == "end":
            stopped = "end"
            break
        line = Line(raw, words[0], words[1:], error=err)
        i = _read_fields_and_text(spec, line, body, i)
        if lines and lines[0].source == "subject" and raw.casefold() == lines[0].raw.casefold() and len(lines) == 1:
            continue  # the body repeats the Subject's command: run it once
        lines.append(line)
    return leniency.drop_bare_subject(lines), unknown, stopped


# ---------------------------------------------------------------------------------------------------------
# The registry


# ---------------------------------------------------------------------------------------------------------
# Running a message's commands


def run(ctx: Context, lines: list[Line]) -> list[tuple[str, Result]]:
    """Run each command in its own SAVEPOINT; a failed command is rolled back and changes nothing."""
    results: list[tuple[str, Result]] = []
    for line in lines:
        spec = registry.lookup(line.verb)
        shown_line = shown(line.raw, 200)
        if spec is None:
            results.append((shown_line, Result(False, render_fragment(
                ctx.cfg, "replies/_unknown_command.txt", verb=shown(line.verb),
                suggestion=leniency.similar_verb(registry, line.verb), args=[shown(a) for a in line.args]))))
            continue
        leniency.join_group_name(ctx.session, spec, line)
        if line.error:
            results.append((shown_line, Result(False, f"{line.error}. Usage: {spec.usage}")))
            continue
        low = spec.min_args - 1 if ctx.default_group and spec.min_args else spec.min_args
        if not low <= len(line.args) <= spec.max_args:
            results.append((shown_line, Result(False, f"Wrong number of arguments. Usage: {spec.usage}\n"
                                                      f"Example: {spec.example}")))
            continue
        savepoint = ctx.session.begin_nested()
        try:
            result = spec.func(ctx, line)
        except Exception:
            savepoint.rollback()
            raise
        if result.ok:
            savepoint.commit()
        else:
            savepoint.rollback()
        results.append((shown_line, result))
        if result.stop:
            break
    return results


# ---------------------------------------------------------------------------------------------------------
# The commands of the spine


@registry.command("help", order=0, usage="help", summary="this list of commands, with examples")
def cmd_help(ctx: Context, line: Line) -> Result:
    return ctx.result("help", True, "ok", commands=registry.specs())


@registry.command("groups", order=10, aliases=("lists",), usage="groups",
                  summary="the active groups and the open proposals, with their addresses")
def cmd_groups(ctx: Context, line: Line) -> Result:
    groups = ctx.session.scalars(select(Group).where(Group.status != GroupStatus.CLOSED.value)
                                 .order_by(Group.status, Group.name)).all()
    return ctx.result("groups", True, "ok", groups=groups, domain=ctx.cfg.network.list_domain)


def _by_country(session: Session, group: Group) -> list[tuple[str, list[str]]]:
    rows = session.execute(select(Member.country, Member.organisation).join(Membership)
                           .where(Membership.group_id == group.id).distinct()).all()
    table: dict[str, set[str]] = {}
    spelling = spellings(session)
    for country, org in rows:
        if org:
            table.setdefault(country_name(country) if country else "(country not given)", set()).add(
                spelt(spelling, org))
    return sorted((c, sorted(orgs)) for c, orgs in table.items())


@registry.command("info", order=20, usage="info GROUP", example="info migrant-inclusion",
                  summary="a group's description, status, contacts and member organisations by country",
                  args=(1, 1))
def cmd_info(ctx: Context, line: Line) -> Result:
    group, _, error = ctx.group_arg("info", line)
    if error or group is None:
        return error or Result(False, "")
    count = ctx.session.scalar(select(func.count()).select_from(Membership).where(Membership.group_id == group.id))
    return ctx.result("info", True, "ok", group=group, contacts=contacts(ctx.session, group),
                      countries=_by_country(ctx.session, group), members=count,
                      domain=ctx.cfg.network.list_domain,
                      formation=formation(ctx.rules, supporters(ctx.session, group)))


@registry.command("set", order=50, usage="set GROUP delivery regular|digest|nomail",
                  example="set migrant-inclusion delivery digest",
                  summary="change how list mail reaches you: each post, a digest, or nothing "
                          "(and 'set GROUP digest mime|plain' for the digest's format)", args=(3, 3))
def cmd_set(ctx: Context, line: Line) -> Result:
    group, rest, error = ctx.group_arg("set", line)
    if error or group is None:
        return error or Result(False, "")
    choices = {"delivery": {d.value for d in Delivery}, "digest": {"mime", "plain"}}
    if len(rest) != 2 or rest[0].lower() not in choices or rest[1].lower() not in choices[rest[0].lower()]:
        return ctx.result("set", False, "usage", group=group)
    member = get_member(ctx.session, ctx.sender)
    ms = membership(ctx.session, group, member) if member else None
    if ms is None:
        return ctx.result("set", False, "not_member", group=group)
    setting, value = rest[0].lower(), rest[1].lower()
    current = ms.delivery if setting == "delivery" else ms.digest_format
    if current == value:
        return ctx.result("set", True, "unchanged", group=group, delivery=value, setting=setting)
    what = f"change your delivery in {group.name} to {value}" if setting == "delivery" else \
        f"receive {group.name} digests as {value}"
    change = SetChange(delivery=value) if setting == "delivery" else SetChange(digest=value)
    return confirmation(ctx, "set", "set", group, change, what, delivery=value, setting=setting)


@registry.command("who", order=60, usage="who GROUP", example="who migrant-inclusion",
                  summary="a group's members (addresses only for its contacts and the secretariat)", args=(1, 1))
def cmd_who(ctx: Context, line: Line) -> Result:
    group, _, error = ctx.group_arg("who", line)
    if error or group is None:
        return error or Result(False, "")
    rows = ctx.session.execute(select(Member, Membership.role).join(Membership)
                               .where(Membership.group_id == group.id).order_by(Member.country, Member.organisation,
                                                                                 Member.address_key)).all()
    me = get_member(ctx.session, ctx.sender)
    my = membership(ctx.session, group, me) if me else None
    privileged = ctx.is_secretariat() or (my is not None and my.role == Role.CONTACT.value)
    spelling = spellings(ctx.session)
    members = [{"address": m.address if privileged else "", "organisation": spelt(spelling, m.organisation),
                "country": m.country, "role": role} for m, role in rows]
    result = ctx.result("who", True, "ok", group=group, members=members, privileged=privileged)
    return replace(result, private=privileged)


@registry.command("confirm", order=130, usage="confirm TOKEN", example="confirm 4f3kq2...",
                  summary="confirm a pending request (replying to the confirmation request does the same)",
                  args=(1, 8))
def cmd_confirm(ctx: Context, line: Line) -> Result:
    token = "".join(line.args).lower()  # a MUA may wrap or re-case a long token (mail-safety.md §4.1 item 35)
    return confirm_token(ctx, token)


@registry.command("end", order=200, aliases=("stop",), usage="end", summary="stop reading commands here")
def cmd_end(ctx: Context, line: Line) -> Result:
    return Result(True, ctx.result("end", True, "ok").text, stop=True)


# ---------------------------------------------------------------------------------------------------------
# Confirmation: tokens are single use, expire, and are looked up by their hash


@dataclass
class SetChange(pending.Confirmation):
    """A `set` waiting for confirmation: the new delivery, or the new digest format."""

    delivery: str = ""
    digest: str = ""


@pending.confirmed("set", SetChange)
def _apply_set(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    change = pending.read(row, SetChange)
    member = get_member(ctx.session, change.address)
    ms = membership(ctx.session, group, member) if member else None
    if ms is None:
        return ctx.result("confirm", False, "not_member", ref=row.public_ref, group=group)
    if change.digest:
        ms.digest_format = change.digest
        audit(ctx.session, ctx.now, change.address, "set-digest", group.slug, detail_ref=row.public_ref,
              digest=ms.digest_format)
        return ctx.result("confirm", True, "set_digest", ref=row.public_ref, group=group, digest=ms.digest_format)
    ms.delivery = change.delivery
    ms.delivery_reason = ""
    audit(ctx.session, ctx.now, change.address, "set-delivery", group.slug, detail_ref=row.public_ref,
          delivery=ms.delivery)
    return ctx.result("confirm", True, "set", ref=row.public_ref, group=group, delivery=ms.delivery)



