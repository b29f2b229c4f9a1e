"""Shared test helpers: building raw messages, reading what the bot queued, a capturing SMTP relay."""

from __future__ import annotations

import datetime as dt
import email
import os
import socket
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

NOW = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Skip a test whose real server is missing, except under CI=true, where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} is not available here")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mail(body: str = "", subject: str = "", sender: str = "Alice <alice@example.com>",
         to: str = "wgbot@lists.example.org", msgid: str | None = "<m1@example.com>",
         headers: dict[str, str] | None = None) -> bytes:
    """A plain-text message as raw bytes (CRLF line ends)."""
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}"]
    if msgid:
        lines.append(f"Message-ID: {msgid}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    lines += ["Content-Type: text/plain; charset=utf-8", "", body]
    return "\r\n".join(lines).encode("utf-8")


def queued(sessions: sessionmaker[Session], kind: str | None = None) -> list[tuple[str, EmailMessage]]:
    """(recipient, message) for everything in the outbox, oldest first."""
    from wgbot.store import OutboxEntry, OutgoingMessage

    with sessions() as session:
        q = (select(OutboxEntry.recipient, OutgoingMessage.raw, OutgoingMessage.kind)
             .join(OutgoingMessage).order_by(OutboxEntry.id))
        rows = session.execute(q).all()
    return [(r, email.message_from_bytes(raw, policy=policy.default))  # type: ignore[misc]
            for r, raw, k in rows if kind is None or k == kind]


def body_of(msg: Any) -> str:
    return str(msg.get_body(preferencelist=("plain",)).get_content())


@dataclass
class Captured:
    envelope_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any = None

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Relay:
    """An aiosmtpd server on loopback that records what it is sent (and can be told to refuse)."""

    host: str
    port: int
    messages: list[Captured] = field(default_factory=list)
    rcpt_reply: dict[str, str] = field(default_factory=dict)   # address → "450 ..." / "550 ..."
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_data: Any = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        reply = self.rcpt_reply.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(Captured(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content),
                                          session.peer))
            count = len(self.messages)
        if self.on_data is not None:
            self.on_data(count)
        return "250 2.0.0 Ok"


def feed(sessions: sessionmaker[Session], cfg: Any, raw: bytes, to: str = "wgbot@lists.example.org",
         envelope: str | None = None, now: dt.datetime = NOW) -> list[Any]:
    """Accept and process one message as the listener would; returns the outcomes."""
    from wgbot import inbox

    with sessions.begin() as session:
        ids = inbox.accept(session, raw, [to], envelope, now)
    results = inbox.process_pending(sessions, cfg, lambda: now, ids=ids)
    return [results.get(i) for i in ids]


def outbox_count(sessions: sessionmaker[Session]) -> int:
    return len(queued(sessions))


def last_reply(sessions: sessionmaker[Session]) -> str:
    """The body of the newest results reply, with white space folded (replies are wrapped at 76 columns)."""
    replies = queued(sessions, "reply")
    assert replies, "no reply was queued"
    return " ".join(body_of(replies[-1][1]).split())


def token_from(sessions: sessionmaker[Session]) -> str:
    """The token of the newest confirmation request."""
    confirms = queued(sessions, "confirm")
    assert confirms, "no confirmation request was queued"
    subject = str(confirms[-1][1]["Subject"])
    assert subject.startswith("confirm ")
    return subject.split()[1]


def make_group(sessions: sessionmaker[Session], cfg: Any, name: str = "Migrant Inclusion",
               contact: str = "chair@city.example") -> str:
    from wgbot.groups import create_group

    with sessions.begin() as session:
        return create_group(session, cfg, name, contact=contact, organisation="City of Bologna", country="IT",
                            now=NOW).slug


def approval_token(sessions: sessionmaker[Session]) -> str:
    """The token of the newest approval request (from its Reply-To address)."""
    requests = queued(sessions, "approval")
    assert requests, "no approval request was queued"
    reply_to = str(requests[-1][1]["Reply-To"])
    return reply_to.split("+approval-")[1].split("@")[0]


def confirm(sessions: sessionmaker[Session], cfg: Any, sender: str, now: dt.datetime = NOW) -> None:
    """Reply to the newest confirmation request, as `sender`."""
    token = token_from(sessions)
    feed(sessions, cfg, mail("yes", subject=f"Re: confirm {token}", sender=sender,
                             msgid=f"<confirm-{token[:8]}@example.com>"),
         to=f"wgbot+confirm-{token}@lists.example.org", now=now)


def notices_to(sessions: sessionmaker[Session], address: str) -> list[str]:
    """Subjects of the notices and approval requests queued for `address`."""
    return [str(m["Subject"]) for r, m in queued(sessions) if r == address and not str(m["Subject"]).startswith(
        ("confirm ", "Results of"))]


def dsn(recipient: str, status: str = "5.1.1", action: str = "failed",
        diagnostic: str = "smtp; 550 5.1.1 <{r}>: Recipient address rejected: User unknown",
        to: str = "grp-bounces@lists.example.org", msgid: str = "<dsn1@mx.example.net>") -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes them."""
    diag = diagnostic.format(r=recipient)
    return (
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: {to}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: {msgid}\r\nAuto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n\r\n"
        "--BB\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be "
        "delivered.\r\n\r\n"
        "--BB\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822; {recipient}\r\nAction: {action}\r\n"
        f"Status: {status}\r\nDiagnostic-Code: {diag}\r\n\r\n"
        "--BB\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: Alice via grp <grp@lists.example.org>\r\n"
        "Subject: [grp] hello\r\n\r\n--BB--\r\n").encode()


def add_members(sessions: sessionmaker[Session], slug: str, members: dict[str, str]) -> None:
    """Add members with the given delivery (regular, digest, nomail) directly."""
    from wgbot.store import Group, Membership, get_or_create_member

    with sessions.begin() as session:
        group = session.scalars(select(Group).where(Group.slug == slug)).one()
        for address, delivery in members.items():
            member = get_or_create_member(session, address, NOW)
            session.add(Membership(group_id=group.id, member_id=member.id, role="member", delivery=delivery,
                                   joined_at=NOW))


def signed_verp(sessions: sessionmaker[Session], slug: str, address: str, probe: bool = False) -> str:
    """The return path the list signs for `address`'s copies (or its probe), with the database's secret."""
    from wgbot.bounces import verp_tag
    from wgbot.route import verp_encode
    from wgbot.store import secret_key

    with sessions.begin() as session:
        tag = verp_tag(secret_key(session), slug, address, probe)
    return f"{slug}-bounces+{verp_encode(address)}={tag}@lists.example.org"
