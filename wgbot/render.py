"""render: Jinja2 templates → the bytes of a message. Every mail wgbot sends is built here.

A template's first line is `Subject: ...`, then a blank line, then the body. Values pass `clean_header_text`
first, so CR, LF and NUL never reach a header. Headers are set through email.headerregistry, except in the
common case where every field is plain ASCII needing no quoting, encoding or folding: those bytes are written
directly, the same bytes the generator writes (tests/unit/test_render.py compares both ways). It queues
nothing and sends nothing.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy, utils
from email.headerregistry import Address
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.runtime

from wgbot.config import Config
from wgbot.parse import Message, clean_header_text
from wgbot.resources import data_dir

POLICY = policy.SMTP.clone(max_line_length=78)


@lru_cache(maxsize=8)
def _environment(override: str) -> jinja2.Environment:
    paths = ([override] if override else []) + [str(data_dir("templates"))]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        autoescape=False,                 # plain-text mail; nothing here is HTML
        undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["indent_block"] = lambda s, n=2: "\n".join((" " * n + line) if line else line
                                                             for line in str(s).splitlines())
    env.filters["day"] = _day_filter
    # "an ECCAR working group", "a Test Network working group": by the first letter, which fits the
    # networks' initialisms read letter by letter (ECCAR, IETM, IGF) and most names.
    env.filters["a_or_an"] = lambda s: "an" if str(s)[:1].upper() in ("A", "E", "I", "O", "U") else "a"
    return env


def day(value: dt.date | dt.datetime, timezone: str = "UTC", *, year: bool = True, time: bool = False) -> str:
    """A date as people write it: `1 November 2027` (no leading zero), a moment in the network's timezone
    (`1 November 2027 at 09:00 CET` with `time`). English month names, whatever the machine's locale."""
    if isinstance(value, dt.datetime):
        value = value.astimezone(zoneinfo.ZoneInfo(timezone)) if value.tzinfo else value
    text = f"{value.day} {_MONTHS[value.month - 1]}" + (f" {value.year}" if year else "")
    if time and isinstance(value, dt.datetime):
        text += f" at {value:%H:%M} {value.tzname() or timezone}"
    return text


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")


@jinja2.pass_context
def _day_filter(context: jinja2.runtime.Context, value: dt.date | dt.datetime, year: bool = True,
                time: bool = False) -> str:
    """`{{ d | day }}`: the template's network timezone comes from its `network` (every template has it)."""
    network = context.get("network")
    return day(value, getattr(network, "timezone", "") or "UTC", year=year, time=time)


def environment(cfg: Config | None = None) -> jinja2.Environment:
    override = str(cfg.resolve(cfg.paths.templates)) if cfg and cfg.paths.templates else ""
    return _environment(override)


def template_names() -> list[str]:
    """Every bundled template, as 'commands/help.txt' and so on."""
    root = data_dir("templates")
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*.txt"))


def render_text(config: Config | None, name: str, /, **context: Any) -> tuple[str, str]:
    """Render template `name` → (subject, body)."""
    text = environment(config).get_template(name).render(**context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"template {name} must start with a 'Subject:' line")
    subject = clean_header_text(first[len("Subject:"):], 250)
    return subject, body.lstrip("\n").rstrip() + "\n"


def render_fragment(config: Config | None, name: str, /, **context: Any) -> str:
    """Render a template that is a piece of a message (no Subject line of its own)."""
    return environment(config).get_template(name).render(**context).strip("\n")


def wrap(body: str, width: int = 76) -> str:
    """Wrap long lines at `width`, keeping each line's indentation (RFC 5322 §2.1.1: SHOULD be ≤78)."""
    out: list[str] = []
    for line in body.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        out.extend(textwrap.wrap(line.strip(), width=width, initial_indent=indent, subsequent_indent=indent,
                                 break_long_words=False, break_on_hyphens=False) or [""])
    return "\n".join(out)


def _address(value: str | Address) -> Address:
    if isinstance(value, Address):
        return value
    name, addr = utils.parseaddr(value)
    return Address(display_name=clean_header_text(name, 100), addr_spec=clean_header_text(addr, 320))


@dataclass(frozen=True)
class Composed:
    """A message ready to queue: its bytes (CRLF line ends) and the header fields it was built from."""

    fields: tuple[tuple[str, str], ...]
    raw: bytes

    def __getitem__(self, name: str) -> str | None:
        for key, value in self.fields:
            if key.lower() == name.lower():
                return value
        return None

    def as_bytes(self, policy: Any = None) -> bytes:
        return self.raw


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*\Z")
_PLAIN_ADDR = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}\Z")


def _plain_address(value: str | Address) -> str | None:
    """`Name <addr>` for the common case (ASCII, nothing to quote or encode); None sends it the long way."""
    if isinstance(value, Address):
        name, addr = value.display_name, value.addr_spec
    else:
        name, addr = utils.parseaddr(value)
        name, addr = clean_header_text(name, 100), clean_header_text(addr, 320)
    name = name.strip()
    if not _PLAIN_ADDR.match(addr) or not _PLAIN_NAME.match(name):
        return None
    return f"{name} <{addr}>" if name else addr


def _plain_addresses(sender: str | Address, recipients: list[str | Address],
                     reply_to: str | None) -> list[tuple[str, str]] | None:
    """From, To and Reply-To written plainly, or None when one of them needs quoting or encoding."""
    plain_from = _plain_address(sender)
    plain_to = [_plain_address(a) for a in recipients]
    plain_reply_to = _plain_address(reply_to) if reply_to else None
    if plain_from is None or None in plain_to or (reply_to and plain_reply_to is None):
        return None
    fields = [("From", plain_from), ("To", ", ".join(str(a) for a in plain_to))]
    return fields + ([("Reply-To", str(plain_reply_to))] if reply_to else [])


def _fast_bytes(fields: list[tuple[str, str]], body: str) -> bytes | None:
    """The bytes email.generator would write for these fields and a text/plain body, when nothing needs
    encoding or folding: ASCII only, every line within 78 characters, no encoded-word lookalike. Writing them
    directly costs a tenth of going through email.headerregistry (two messages for each command)."""
    lines = body.encode("utf-8").splitlines()
    if not body.isascii() or any(len(line) > 78 for line in lines):
        return None
    head = []
    for name, value in fields:
        line = f"{name}: {value}"
        if (len(line) > 78 or not line.isascii() or _CONTROL.search(line) or "=?" in value
                or value != value.strip() or "  " in value):
            return None
        head.append(line)
    head += ['Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 7bit", "MIME-Version: 1.0"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + b"\r\n".join(lines) + b"\r\n"


def compose(
    cfg: Config,
    template: str,
    context: dict[str, Any],
    *,
    to: Iterable[str | Address],
    sender: str | Address | None = None,
    reply_to: str | None = None,
    parent: Message | None = None,
    auto_submitted: str = "auto-generated",
    now: dt.datetime,
    extra_headers: dict[str, str] | None = None,
) -> Composed:
    """Build one message from `template`. With `parent` it is a reply: In-Reply-To and References are set."""
    subject, body = render_text(cfg, template, network=cfg.network, cfg=cfg, **context)
    body = wrap(body)
    sender_value: str | Address = sender if sender else Address(
        display_name=clean_header_text(cfg.network.name, 100), addr_spec=cfg.network.bot_address)
    recipients = list(to)
    others = [("Subject", subject), ("Date", utils.format_datetime(now.astimezone(dt.UTC))),
              ("Message-ID", utils.make_msgid(domain=cfg.network.list_domain))]
    if parent is not None and parent.message_id:
        refs = parent.references or parent.in_reply_to
        others += [("In-Reply-To", parent.message_id), ("References", f"{refs} {parent.message_id}".strip())]
    others += [("Auto-Submitted", auto_submitted), ("X-Loop", cfg.network.bot_address)]
    others += [(name, clean_header_text(value, 900)) for name, value in (extra_headers or {}).items()]
    plain = _plain_addresses(sender_value, recipients, reply_to)
    raw = _fast_bytes(plain + others, body) if plain is not None else None
    if plain is not None and raw is not None:
        return Composed(tuple(plain + others), raw)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(sender_value)
    msg["To"] = [_address(a) for a in recipients]
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    for name, value in others:
        msg[name] = value
    msg.set_content(body, charset="utf-8")
    return Composed(tuple((k, str(v)) for k, v in msg.items()), msg.as_bytes(policy=POLICY))
