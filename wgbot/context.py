"""context: what every command and feature shares, under all of them (wgbot.LAYERS): the Context a command or
job runs in, its Result, a command's Line and Spec, the registry, tokens and references, finding a group, and
the ledger of jobs done once.

It imports no feature module: features register their commands in `registry` when they are imported (by
inbox, the place that imports the features); requests that wait for a person are wgbot.pending's.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import unicodedata
import zoneinfo
from base64 import b32encode
from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from wgbot import outbox
from wgbot.config import Config
from wgbot.parse import Message, clean_header_text, normalise_word
from wgbot.render import render_fragment
from wgbot.rules import NetworkRules, Rules, cached_rules
from wgbot.store import Group, GroupStatus, Ledger, address_key, prepared

# `Field: value`, a line of a command's fields (SPEC §3).
FIELD_LINE = re.compile(r"^([A-Za-z][A-Za-z -]{0,30}):\s*(.*)$")


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


def similar_group(session: Session, value: str) -> Group | None:
    """The open group whose slug is one letter off `value`, for "did you mean"; None when there is none."""
    word = value.strip().casefold()
    if len(word) < 3 or len(word) > 60:
        return None
    groups = session.scalars(select(Group).where(Group.status != GroupStatus.CLOSED.value).order_by(Group.id))
    return next((g for g in groups if one_letter_off(word, g.slug)), None)


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

    def result(self, name: str, ok: bool, outcome: str, /, **context: Any) -> Result:
        text = render_fragment(self.cfg, f"commands/{name}.txt", outcome=outcome, network=self.cfg.network,
                               cfg=self.cfg, sender=self.sender, rules=self.rules, **context)
        return Result(ok, text)

    def mail(self, template: str, context: dict[str, Any], to: str, *, per_day: int | None = None,
             kind: str = "notice", reply_to: str | None = None, sender: str | Address | None = None,
             parent: Message | None = None, auto_submitted: str = "auto-generated", envelope_from: str = "",
             extra_headers: dict[str, str] | None = None, finish: Callable[[bytes], bytes] | None = None,
             ) -> int | None:
        """Queue one message from `template` to `to` in this command's transaction (wgbot.outbox.mail); the
        template also sees `rules`. `per_day`: the recipient's daily allowance of automatic mail, for mail a
        stranger could cause (replies, confirmation requests); None for notices that follow confirmed acts."""
        return outbox.mail(self.session, self.cfg, self.now, template, {"rules": self.rules, **context}, to,
                           per_day=per_day, kind=kind, inbound_id=self.inbound_id, sender=sender,
                           reply_to=reply_to, parent=parent, auto_submitted=auto_submitted,
                           envelope_from=envelope_from, extra_headers=extra_headers, finish=finish)

    def group_in(self, name: str, line: Line, status: str, refusal: str) -> Group | Result:
        """The group named by `line` (as group_arg finds it) when its status is `status`; else the answer to
        give: no such group, or the `refusal` outcome of the command's template."""
        group, _, error = self.group_arg(name, line)
        if error is not None or group is None:
            return error or Result(False, "")
        return group if group.status == status else self.result(name, False, refusal, group=group)

    def mail_each(self, template: str, context: dict[str, Any], to: list[str]) -> int:
        """`mail` to each address in turn (notices, not rate-limited); how many were queued."""
        for address in to:
            self.mail(template, context, address)
        return len(to)

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
                                           similar=similar_group(self.session, args[0]))
        if self.default_group:
            group = find_group(self.session, self.default_group)
            if group is not None:
                return group, [], None
        return None, [], self.result(name, False, "missing_group")


def job_context(session: Session, cfg: Config, now: dt.datetime) -> Context:
    """A Context for jobs that act on the bot's own behalf (no inbound message)."""
    msg = Message(sender=cfg.network.bot_address, display_name="", subject="", text="", text_from_html=False,
                  message_id="", in_reply_to="", references="")
    return Context(session=session, cfg=cfg, now=now, msg=msg, sender=cfg.network.bot_address,
                   reply_address=cfg.network.bot_address, rules=cached_rules(str(cfg.rules_path)))


def claim(session: Session, key: str, now: dt.datetime) -> bool:
    """True the first time `key` is claimed; the row is written in the caller's transaction."""
    if session.get(Ledger, key) is not None:
        return False
    session.add(Ledger(key=key, done_at=now))
    session.flush()
    return True


def local(cfg: Config, now: dt.datetime) -> dt.datetime:
    return now.astimezone(zoneinfo.ZoneInfo(cfg.network.timezone))


def at_or_after(cfg: Config, now: dt.datetime, hhmm: str) -> bool:
    """Whether `now` is at or after the time of day `hhmm` in the network's timezone."""
    here = local(cfg, now)
    hour, minute = (int(x) for x in hhmm.split(":"))
    return (here.hour, here.minute) >= (hour, minute)
