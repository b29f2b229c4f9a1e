"""commands: the email command language (SPEC §3): reading commands from a message, the registry, and the
commands themselves. Each command is one decorated function plus one template `commands/NAME.txt`.

Commands change the store and return a Result; they queue mail through the Context and never touch the
network. A command that fails changes nothing: each runs inside its own SAVEPOINT.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import shlex
import unicodedata
from base64 import b32encode
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from wgbot import leniency
from wgbot.config import Config
from wgbot.countries import country_name, normalise_country
from wgbot.outbox import allow_reply, enqueue
from wgbot.parse import Message, clean_header_text, normalise_word
from wgbot.render import compose, render_fragment
from wgbot.rules import NetworkRules, Rules
from wgbot.store import (
    Delivery,
    Group,
    GroupStatus,
    Member,
    Membership,
    PendingAction,
    Role,
    address_key,
    audit,
    get_member,
    membership,
    prepared,
    token_hash,
)

# ---------------------------------------------------------------------------------------------------------
# Reading commands from a message

_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|wg|sv|vs|antw|tr|rif|r|res|enc|odp|vá|回复|回覆|答复|转发|轉寄)\s*"
                     r"(?:\[\d+\]|\(\d+\))?\s*[:：]|\[[^\]]*\])\s*", re.I)
_FIELD = re.compile(r"^([A-Za-z][A-Za-z -]{0,30}):\s*(.*)$")
MAX_UNKNOWN = 5


def strip_subject(subject: str) -> str:
    """Subject without Re:, Fwd:, AW:, 回复: and [tags], however many are stacked."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _PREFIX.sub("", subject, count=1)
    return subject.strip()


@dataclass
class Line:
    """One command as read: the verb as written, its arguments and fields."""

    raw: str
    verb: str
    args: list[str]
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""
    source: str = "body"
    error: str = ""


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
        m = _FIELD.match(stripped)
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


def read_commands(registry: Registry, subject: str, text: str, max_lines: int) -> tuple[list[Line], list[str], str]:
    """(commands, unknown lines, why reading stopped) from a Subject and a first text part.

    Reading stops at `end`, a signature line (`-- `), the first quoted line (`>`), after `max_lines` lines
    with text, or after MAX_UNKNOWN unknown lines. Words in the Subject that are not a command are ignored.
    """
    lines: list[Line] = []
    unknown: list[str] = []
    stopped = ""
    subj = strip_subject(subject)
    if subj:
        words, err = _split(subj)
        if words and registry.lookup(words[0]) is not None and not err:
            lines.append(Line(subj, words[0], words[1:], source="subject"))
    body = text.split("\n")
    i = 0
    seen = 0
    subject_spec = registry.lookup(lines[0].verb) if lines else None
    first = next((b.strip() for b in body if b.strip()), "")
    first_words, _ = _split(first) if first else ([], "")
    if subject_spec is not None and (subject_spec.fields or subject_spec.takes_text) and not (
            first_words and registry.lookup(first_words[0]) is not None):
        # `propose NAME` in the Subject: the body holds its fields and its text.
        i = _read_fields_and_text(subject_spec, lines[0], body, 0)
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


@dataclass(frozen=True)
class Result:
    """What one command did: `ok` is False when it changed nothing because of an error."""

    ok: bool
    text: str
    stop: bool = False
    private: bool = False   # shows what only a contact, an approver or the secretariat may see: sent to From only


Handler = Callable[["Context", Line], Result]


@dataclass(frozen=True)
class Spec:
    name: str
    func: Handler
    usage: str
    summary: str
    example: str
    aliases: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    takes_text: bool = False
    min_args: int = 0
    max_args: int = 0
    order: int = 100


class Registry:
    """Commands by name and alias; `help`, dispatch and argument-count checks all come from here."""

    def __init__(self) -> None:
        self._specs: dict[str, Spec] = {}
        self._names: dict[str, Spec] = {}

    def command(self, name: str, *, usage: str, summary: str, example: str = "", aliases: tuple[str, ...] = (),
                fields: tuple[str, ...] = (), takes_text: bool = False,
                args: tuple[int, int] = (0, 0), order: int = 100) -> Callable[[Handler], Handler]:
        def register(func: Handler) -> Handler:
            spec = Spec(name, func, usage, summary, example or usage, aliases, fields, takes_text, *args, order)
            self._specs[name] = spec
            for n in (name, *aliases):
                if n in self._names:
                    raise ValueError(f"command name {n!r} registered twice")
                self._names[n] = spec
            return func
        return register

    def lookup(self, verb: str) -> Spec | None:
        return self._names.get(normalise_word(verb))

    def specs(self) -> list[Spec]:
        """Every command, in the order `help` shows them."""
        return sorted(self._specs.values(), key=lambda spec: spec.order)


registry = Registry()

# ---------------------------------------------------------------------------------------------------------
# The context a command runs in


def new_token() -> str:
    """160 random bits as 32 lower-case base32 characters (survives MTAs that change case; SPEC §3)."""
    return b32encode(secrets.token_bytes(20)).decode("ascii").lower()


_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def new_public_ref() -> str:
    return "R-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(7))


def shown(value: str, limit: int = 60) -> str:
    """A user-supplied value made safe and short enough to echo in a reply."""
    value = clean_header_text(value, limit + 1)
    return value if len(value) <= limit else value[:limit] + "…"


_SLUG_CHARS = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def slugify(name: str) -> str:
    """A group's slug (SPEC §2): NFKC, accents dropped, lower-case ASCII letters, digits and single hyphens, ≤40."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text.encode("ascii", "ignore").decode()).strip("-")
    if len(slug) > 40:
        slug = slug[:40].rsplit("-", 1)[0] if "-" in slug[:40] else slug[:40]
    return slug.strip("-")


def _group_by_slug(_insert: Any) -> Any:
    return select(Group).where(Group.slug == bindparam("b_slug"))


def find_group(session: Session, value: str) -> Group | None:
    """The group whose slug or exact name is `value`; look-alike and invisible characters never match."""
    text = unicodedata.normalize("NFKC", value).strip()
    if not text or len(text) > 200:
        return None
    lowered = text.casefold()
    if _SLUG_CHARS.match(lowered):
        group: Group | None = session.scalar(prepared(session, _group_by_slug), {"b_slug": lowered})
        if group is not None:
            return group
    if not text.isprintable():
        return None
    return session.scalar(select(Group).where(func.lower(Group.name) == text.lower()))


@dataclass
class Context:
    """Everything a command may use: the store session, the configuration, `now`, the message and the sender."""

    session: Session
    cfg: Config
    now: dt.datetime
    msg: Message
    sender: str                 # the From addr-spec: the identity
    reply_address: str          # where replies go (the envelope sender, else From)
    default_group: str = ""     # from SLUG-request@
    inbound_id: int | None = None
    rules: Rules = field(default_factory=lambda: Rules(NetworkRules(name="network")))
    trusted: bool = False       # a trusted Authentication-Results says dmarc=pass: no confirmation needed
    sent: list[str] = field(default_factory=list)

    def result(self, name: str, ok: bool, outcome: str, /, **context: Any) -> Result:
        text = render_fragment(self.cfg, f"commands/{name}.txt", outcome=outcome, network=self.cfg.network,
                               cfg=self.cfg, sender=self.sender, rules=self.rules, **context)
        return Result(ok, text)

    def send(self, template: str, context: dict[str, Any], to: str, *, reply_to: str | None = None,
             kind: str = "notice", auto_submitted: str = "auto-generated") -> bool:
        """Queue one mail to `to`, unless the daily limit for that address is reached."""
        if not allow_reply(self.session, to, self.now, self.cfg.limits.replies_per_day):
            return False
        msg = compose(self.cfg, template, context, to=[to], reply_to=reply_to, now=self.now,
                      auto_submitted=auto_submitted)
        enqueue(self.session, msg, [to], self.cfg.network.bot_address, self.now, kind=kind, inbound_id=self.inbound_id)
        self.sent.append(to)
        return True

    def is_secretariat(self, address: str | None = None) -> bool:
        key = address_key(address or self.sender)
        return key in {address_key(a) for a in self.cfg.network.secretariat}

    def group_arg(self, name: str, line: Line) -> tuple[Group | None, list[str], Result | None]:
        """The group named by the first argument (or the SLUG-request default), the other arguments, or an error."""
        args = list(line.args)
        if args:
            group = find_group(self.session, args[0])
            if group is not None:
                return group, args[1:], None
            if self.default_group:
                group = find_group(self.session, self.default_group)
                spec = registry.lookup(name)
                if group is not None and spec is not None and len(args) < spec.max_args:
                    return group, args, None
            return None, args, self.result(name, False, "no_such_group", value=shown(args[0]),
                                           similar=leniency.similar_group(self.session, args[0]))
        if self.default_group:
            group = find_group(self.session, self.default_group)
            if group is not None:
                return group, [], None
        return None, [], self.result(name, False, "missing_group")

    def pending(self, template: str, action: str, group: Group | None, payload: dict[str, Any], description: str,
                /, **context: Any) -> Result:
        """A state change that needs the sender's confirmation (SPEC §3, Identity); applied at once when the
        message carries a trusted DMARC pass for its From domain."""
        if self.trusted:
            token, _, _ = self.request_confirmation(action, group, payload, description, send=False)
            return confirm_token(self, token)
        _, ref, sent = self.request_confirmation(action, group, payload, description)
        return self.result(template, True, "pending", group=group, ref=ref, sent=sent, **context)

    def request_confirmation(self, action: str, group: Group | None, payload: dict[str, Any],
                             description: str, send: bool = True) -> tuple[str, str, bool]:
        """Create a pending action for the sender and mail them the confirmation request: (token, ref, sent)."""
        key = address_key(self.sender)
        group_id = group.id if group else None
        # One pending request per address, action and group: a new request replaces the old one.
        self.session.execute(prepared(self.session, _replace_pending),
                             {"b_key": key, "b_action": action, "b_group": group_id, "b_now": self.now})
        token = new_token()
        ref = new_public_ref()
        self.session.execute(prepared(self.session, _insert_pending), {
            "token_hash": token_hash(token), "public_ref": ref, "action": action, "address_key": key,
            "group_id": group_id, "payload": {"address": self.sender, **payload}, "created_at": self.now,
            "expires_at": self.now + dt.timedelta(days=self.cfg.limits.token_days), "used_at": None,
            "outcome": "", "reminded_at": None})
        if not send:
            return token, ref, False
        local, _, domain = self.cfg.network.bot_address.partition("@")
        sent = self.send("notices/confirm.txt",
                         {"token": token, "ref": ref, "description": description, "address": self.sender,
                          "days": self.cfg.limits.token_days},
                         self.sender, reply_to=f"{local}+confirm-{token}@{domain}", kind="confirm")
        return token, ref, sent


def _replace_pending(_insert: Any) -> Any:
    t: Any = PendingAction.__table__
    return (update(t).where(t.c.address_key == bindparam("b_key"), t.c.action == bindparam("b_action"),
                            t.c.group_id.is_not_distinct_from(bindparam("b_group")), t.c.used_at.is_(None))
            .values(used_at=bindparam("b_now"), outcome="replaced"))


def _insert_pending(_insert: Any) -> Any:
    return insert(PendingAction.__table__)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# Running a message's commands


@dataclass
class Transcript:
    results: list[tuple[str, Result]]
    unknown: list[str]
    stopped: str


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


def _contacts(session: Session, group: Group) -> list[Member]:
    return list(session.scalars(select(Member).join(Membership).where(
        Membership.group_id == group.id, Membership.role == Role.CONTACT.value).order_by(Membership.id)))


def _by_country(session: Session, group: Group) -> list[tuple[str, list[str]]]:
    from wgbot.organisations import spellings, spelt

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
    from wgbot.rules import formation
    from wgbot.workgroups import supporters

    count = ctx.session.scalar(select(func.count()).select_from(Membership).where(Membership.group_id == group.id))
    return ctx.result("info", True, "ok", group=group, contacts=_contacts(ctx.session, group),
                      countries=_by_country(ctx.session, group), members=count,
                      domain=ctx.cfg.network.list_domain,
                      formation=formation(ctx.rules, supporters(ctx.session, group)))


def _fields(ctx: Context, name: str, line: Line) -> tuple[dict[str, str], Result | None]:
    out: dict[str, str] = {}
    if "organisation" in line.fields or "organization" in line.fields:
        org = " ".join((line.fields.get("organisation") or line.fields.get("organization") or "").split())
        if len(org) > 200 or not org.isprintable():
            return out, ctx.result(name, False, "bad_organisation", value=shown(org))
        out["organisation"] = org
    if "country" in line.fields:
        code = normalise_country(line.fields["country"])
        if code is None:
            return out, ctx.result(name, False, "bad_country", value=shown(line.fields["country"]))
        out["country"] = code
    return out, None


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
    return ctx.pending("set", "set", group, {setting: value}, what, delivery=value, setting=setting)


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
    from wgbot.organisations import spellings, spelt

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


def confirm_token(ctx: Context, token: str, hashed: str = "") -> Result:
    """Apply the pending action behind `token` (or behind `hashed`, its hash as stored with a masked address)."""
    hashed = hashed or token_hash(token)
    row = ctx.session.scalar(select(PendingAction).where(PendingAction.token_hash == hashed))
    if row is None or not hmac.compare_digest(row.token_hash, hashed):
        return ctx.result("confirm", False, "unknown")
    if row.used_at is not None:
        return ctx.result("confirm", False, "used", ref=row.public_ref, outcome_was=row.outcome)
    if row.expires_at <= ctx.now:
        return ctx.result("confirm", False, "expired", ref=row.public_ref)
    if row.action not in ACTIONS:
        return ctx.result("confirm", False, "not_confirmable", ref=row.public_ref)
    # Single use, atomically: only the transaction that flips used_at applies the action.
    claimed = ctx.session.execute(update(PendingAction).where(
        PendingAction.id == row.id, PendingAction.used_at.is_(None)).values(used_at=ctx.now, outcome="confirmed"))
    if getattr(claimed, "rowcount", 1) != 1:
        return ctx.result("confirm", False, "used", ref=row.public_ref, outcome_was="confirmed")
    group = ctx.session.get(Group, row.group_id) if row.group_id else None
    return ACTIONS[row.action](ctx, row, group)


def _requested_membership(ctx: Context, row: PendingAction, group: Group | None) -> tuple[Group, Membership | None]:
    """The group and the requester's membership in it, for a confirmed leave or set."""
    assert group is not None
    member = get_member(ctx.session, row.payload["address"])
    return group, membership(ctx.session, group, member) if member else None


def _apply_set(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    group, ms = _requested_membership(ctx, row, group)
    if ms is None:
        return ctx.result("confirm", False, "not_member", ref=row.public_ref, group=group)
    if "digest" in row.payload:
        ms.digest_format = row.payload["digest"]
        audit(ctx.session, ctx.now, row.payload["address"], "set-digest", group.slug, detail_ref=row.public_ref,
              digest=ms.digest_format)
        return ctx.result("confirm", True, "set_digest", ref=row.public_ref, group=group, digest=ms.digest_format)
    ms.delivery = row.payload["delivery"]
    ms.delivery_reason = ""
    audit(ctx.session, ctx.now, row.payload["address"], "set-delivery", group.slug, detail_ref=row.public_ref,
          delivery=ms.delivery)
    return ctx.result("confirm", True, "set", ref=row.public_ref, group=group, delivery=ms.delivery)


ApplyAction = Callable[[Context, PendingAction, "Group | None"], Result]
ACTIONS: dict[str, ApplyAction] = {"set": _apply_set}

# The working-group commands (and join and leave, which follow the rules) register themselves here.
from wgbot import reports, workgroups  # noqa: E402,F401
