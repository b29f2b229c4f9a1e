"""render: Jinja2 templates → email.message.EmailMessage. Every mail wgbot sends is built here.

A template's first line is `Subject: ...`, then a blank line, then the body. Headers are set through
email.headerregistry only (never pasted together), and values pass `clean_header_text` first, so CR, LF
and NUL never reach a header. It queues nothing and sends nothing.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterable
from email import policy, utils
from email.headerregistry import Address
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

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
    return env


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
) -> EmailMessage:
    """Build one message from `template`. With `parent` it is a reply: In-Reply-To and References are set."""
    subject, body = render_text(cfg, template, network=cfg.network, cfg=cfg, **context)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(sender) if sender else Address(
        display_name=clean_header_text(cfg.network.name, 100), addr_spec=cfg.network.bot_address)
    msg["To"] = [_address(a) for a in to]
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    msg["Subject"] = subject
    msg["Date"] = utils.format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = utils.make_msgid(domain=cfg.network.list_domain)
    if parent is not None and parent.message_id:
        msg["In-Reply-To"] = parent.message_id
        refs = parent.references or parent.in_reply_to
        msg["References"] = f"{refs} {parent.message_id}".strip()
    msg["Auto-Submitted"] = auto_submitted
    msg["X-Loop"] = cfg.network.bot_address
    for name, value in (extra_headers or {}).items():
        msg[name] = clean_header_text(value, 900)
    msg.set_content(wrap(body), charset="utf-8")
    return msg
