"""lists: one mailing list per active group — the list copy (RFC 2369/2919/8058 headers, subject prefix, footer,
DMARC From policy), streaming fan-out with VERP, moderation by reply, owner mail, the archive (bounces: bounces.py).

Like the commands it works inside the caller's transaction and only queues mail; it never touches the network.
Members are read in keyset-paged batches, so a 100,000-member list never needs 100,000 objects in memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import fnmatch
import hashlib
import hmac
import re
from collections.abc import Iterator
from email.charset import QP, Charset
from email.header import Header
from email.message import Message as StdMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from wgbot import archive, pending
from wgbot.bounces import verp_address
from wgbot.config import Config
from wgbot.context import Context
from wgbot.groups import contacts
from wgbot.held import HeldPost, hold
from wgbot.mimesafe import message_id_for, reencode_headers, transport_safe
from wgbot.outbox import enqueue_raw, note_queued
from wgbot.parse import Message, clean_header_text, parse
from wgbot.render import render_fragment
from wgbot.route import verp_encode
from wgbot.store import (
    Delivery,
    Group,
    GroupStatus,
    InboundMessage,
    InboundStatus,
    Member,
    Membership,
    OutboxEntry,
    OutgoingMessage,
    PendingAction,
    Post,
    address_key,
    audit,
    get_member,
    membership,
    secret_key,
)

# Headers a list replaces or removes on its copy (mail-safety.md §2.2: only the list sets List-Id). Another list's
# X-BeenThere stays: it is how that list sees its own post come back through us (issue 11 item 8).
_STRIP = ("list-id", "list-post", "list-help", "list-subscribe", "list-unsubscribe", "list-unsubscribe-post",
          "list-archive", "list-owner", "precedence", "return-path", "delivered-to",
          "x-original-to", "errors-to", "x-loop")
_CONTENT = ("content-type", "content-transfer-encoding", "content-disposition", "content-description",
            "content-id", "mime-version")
COMPAT = email.policy.compat32.clone(linesep="\r\n", max_line_length=78)


def list_address(cfg: Config, group: Group) -> str:
    return f"{group.slug}@{cfg.network.list_domain}"


def list_id(cfg: Config, group: Group) -> str:
    """RFC 2919: label.namespace, stable over the life of the list."""
    return f"{group.slug}.{cfg.network.list_domain}"


def bounce_address(cfg: Config, group: Group, member: str | None = None, key: bytes = b"") -> str:
    """The signed VERP return path SLUG-bounces+alice=example.org=TAG@ (bounces.py), or SLUG-bounces@ when
    batched or for mail that is not a member's copy (reports to it are never scored)."""
    if member:
        return verp_address(cfg, group.slug, key, member)
    return f"{group.slug}-bounces@{cfg.network.list_domain}"


def unsubscribe_token(key: bytes, slug: str, address: str) -> str:
    """An opaque, hard-to-forge id for one-click unsubscribe (RFC 8058 §3): an HMAC over list and member, keyed
    with the installation's random secret."""
    return hmac.new(key, f"{slug}\0{address_key(address)}".encode(), hashlib.sha256).hexdigest()[:32]


def unsubscribe_url(cfg: Config, key: bytes, slug: str, address: str) -> str:
    return (f"{cfg.network.base_url.rstrip('/')}/unsubscribe/{slug}/{verp_encode(address)}/"
            f"{unsubscribe_token(key, slug, address)}")


def _header(value: str) -> str | Header:
    value = clean_header_text(value, 900)
    return value if value.isascii() else Header(value, "utf-8")


def _set(msg: StdMessage, name: str, value: str | Header) -> None:
    del msg[name]
    msg[name] = value  # type: ignore[assignment]  # compat32 takes Header objects too


def _charset(text: str) -> Charset:
    cs = Charset("utf-8" if not text.isascii() else "us-ascii")
    if not text.isascii():
        cs.body_encoding = QP
    return cs


def _footer_part(footer: str) -> MIMEText:
    part = MIMEText(footer, "plain", "utf-8" if not footer.isascii() else "us-ascii")
    part["Content-Disposition"] = "inline"
    return part


def _split_container(msg: StdMessage) -> tuple[StdMessage, StdMessage]:
    """(outer container with the message's headers, inner part with its content), for wrapping the content."""
    inner = email.message_from_bytes(b"", policy=COMPAT)
    for name in _CONTENT:
        if name == "mime-version":
            continue
        for value in msg.get_all(name, []):
            inner[name] = value
    cte = str(msg.get("content-transfer-encoding", "")).strip().lower()
    # The content's bytes as they came, in their transfer encoding: get_payload() would give 8-bit text decoded
    # (an HTML-only post in 8-bit UTF-8 then failed to serialise with UnicodeEncodeError).
    identity = cte in ("", "7bit", "8bit", "binary") and not msg.is_multipart()
    inner.set_payload(msg.get_payload(decode=True) if identity else msg.get_payload())
    outer = MIMEMultipart("mixed")
    del outer["MIME-Version"]
    for name, value in msg.items():
        if name.lower() not in _CONTENT:
            outer[name] = value
    outer["MIME-Version"] = "1.0"
    return outer, inner


def add_footer(msg: StdMessage, footer: str) -> StdMessage:
    """Add the footer without breaking the MIME structure: appended to a single text/plain part, as a last part
    of multipart/mixed, else by wrapping the content in multipart/mixed. Signed and encrypted mail is left
    alone (a footer would break the signature)."""
    ctype = msg.get_content_type()
    if ctype in ("multipart/signed", "multipart/encrypted"):
        return msg
    if ctype == "text/plain" and not msg.is_multipart():
        payload = msg.get_payload(decode=True)
        charset = msg.get_content_charset() or "us-ascii"
        try:
            text = payload.decode(charset, "replace") if isinstance(payload, bytes) else ""
        except LookupError:
            text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        text = text.rstrip("\r\n") + "\n\n-- \n" + footer.strip() + "\n"
        del msg["Content-Transfer-Encoding"]
        msg.set_payload(text, _charset(text))
        return msg
    if ctype == "multipart/mixed" and isinstance(msg.get_payload(), list):
        msg.attach(_footer_part(footer))
        return msg
    outer, inner = _split_container(msg)
    outer.attach(inner)
    outer.attach(_footer_part(footer))
    return outer


def prefixed(subject: str, slug: str) -> str:
    """`[slug] Subject`, not doubled on replies (`Re: [slug] x` stays as it is)."""
    tag = f"[{slug}]"
    return subject if tag in subject.lower() else f"{tag} {subject}".strip()


def _raw_value(msg: StdMessage, name: str) -> str:
    """A header's value as it came (get() turns undeclared 8-bit text into an unknown-8bit Header that cannot be
    re-encoded any more)."""
    return next((str(v) for n, v in msg.raw_items() if n.lower() == name.lower()), "")


def build_copy(cfg: Config, group: Group, raw: bytes, msg: Message, poster_name: str = "") -> bytes:
    """The list copy of a post, shared by every recipient."""
    original = email.message_from_bytes(raw, policy=COMPAT)
    for name in _STRIP:
        del original[name]
    policy = group.from_policy or cfg.lists.from_policy
    name = clean_header_text(poster_name or msg.display_name or msg.sender.split("@")[0], 80)
    via = formataddr((f"{name} via {group.name}", list_address(cfg, group)), charset="utf-8")
    footer = render_fragment(cfg, "lists/_footer.txt", group=group, network=cfg.network,
                             address=list_address(cfg, group), domain=cfg.network.list_domain,
                             archive=archive_url(cfg, group))
    if policy == "wrap":
        outer = MIMEMultipart("mixed")
        outer["From"] = via
        for header in ("To", "Cc", "Date", "Message-ID", "In-Reply-To", "References"):
            for value in original.get_all(header, []):
                outer[header] = value
        outer["Reply-To"] = _raw_value(original, "From") or msg.sender
        _set(outer, "Subject", _header(prefixed(msg.subject, group.slug)))
        intro = MIMEText(footer + "\n", "plain", "utf-8" if not footer.isascii() else "us-ascii")
        outer.attach(intro)
        wrapped = email.message_from_bytes(b"", policy=COMPAT)
        wrapped["Content-Type"] = "message/rfc822"
        wrapped["Content-Disposition"] = "inline"
        original_copy = email.message_from_bytes(raw, policy=COMPAT)
        reencode_headers(original_copy)
        wrapped.set_payload([original_copy])
        outer.attach(wrapped)
        copy: StdMessage = outer
    else:
        if policy == "munge":
            if not original.get("Reply-To"):
                original["Reply-To"] = _raw_value(original, "From") or msg.sender
            _set(original, "From", via)
        _set(original, "Subject", _header(prefixed(msg.subject, group.slug)))
        copy = add_footer(original, footer)
    for header_name, header_value in list_headers(cfg, group):
        if header_name == "X-BeenThere":
            copy[header_name] = header_value  # type: ignore[assignment]  # added below the others, never replacing
        else:
            _set(copy, header_name, header_value)
    reencode_headers(copy)
    transport_safe(copy)
    return copy.as_bytes(policy=COMPAT)


def archive_url(cfg: Config, group: Group) -> str:
    return f"{cfg.lists.archive_url.rstrip('/')}/{group.slug}/" if cfg.lists.archive_url else ""


def list_headers(cfg: Config, group: Group) -> list[tuple[str, str | Header]]:
    """RFC 2369 and RFC 2919 headers of a list copy (the one-click https URL is added per recipient)."""
    domain = cfg.network.list_domain
    headers: list[tuple[str, str | Header]] = [
        ("List-Id", _header(f"{group.name} <{list_id(cfg, group)}>")),
        ("List-Post", f"<mailto:{list_address(cfg, group)}>"),
        ("List-Help", f"<mailto:{cfg.network.bot_address}?subject=help>"),
        ("List-Subscribe", f"<mailto:{group.slug}-join@{domain}>"),
        ("Precedence", "list"),
        ("X-BeenThere", list_address(cfg, group)),
    ]
    if not cfg.network.base_url:
        headers.append(("List-Unsubscribe", f"<mailto:{group.slug}-leave@{domain}>"))
    if cfg.lists.archive_url:
        headers.append(("List-Archive", f"<{archive_url(cfg, group)}>"))
    return headers


def recipient_headers(cfg: Config, key: bytes, group: Group, address: str) -> str:
    """Per-recipient header lines: List-Unsubscribe with an https one-click URL (RFC 8058) when base_url is set."""
    if not cfg.network.base_url:
        return ""
    url = unsubscribe_url(cfg, key, group.slug, address)
    return (f"List-Unsubscribe: <mailto:{group.slug}-leave@{cfg.network.list_domain}>,\r\n <{url}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")


def _members(session: Session, group: Group, batch: int, delivery: str,
             digest_format: str | None = None) -> Iterator[list[str]]:
    """The addresses of members with this delivery, in keyset-paged batches (never all at once)."""
    last = 0
    while True:
        q = (select(Membership.id, Member.address).join(Member)
             .where(Membership.group_id == group.id, Membership.id > last, Membership.delivery == delivery)
             .order_by(Membership.id).limit(batch))
        if digest_format is not None:
            q = q.where(Membership.digest_format == digest_format)
        rows = session.execute(q).all()
        if not rows:
            return
        last = rows[-1][0]
        yield [address for _, address in rows]


def fan_out(session: Session, cfg: Config, group: Group, copy: bytes, message_id: str, now: dt.datetime,
            inbound_id: int | None, delivery: str = Delivery.REGULAR.value, digest_format: str | None = None,
            kind: str = "post") -> int:
    """Queue `copy` for every member with this delivery: one outbox row each, inserted in batches."""
    out = OutgoingMessage(message_id=message_id, kind=kind, raw=copy, created_at=now, inbound_id=inbound_id)
    session.add(out)
    session.flush()
    personalize = cfg.lists.personalize
    shared_from = bounce_address(cfg, group)
    key = secret_key(session) if cfg.network.base_url or personalize else b""
    count = 0
    for addresses in _members(session, group, cfg.lists.fanout_batch, delivery, digest_format):
        note_queued(session)
        session.execute(insert(OutboxEntry), [
            {"message_fk": out.id, "recipient": a,
             "envelope_from": bounce_address(cfg, group, a, key) if personalize else shared_from,
             "headers": recipient_headers(cfg, key, group, a), "status": "queued", "attempts": 0,
             "next_attempt_at": now, "last_error": "", "created_at": now, "lease_owner": ""}
            for a in addresses])
        count += len(addresses)
    return count


def distribute(ctx: Context, group: Group, raw: bytes, msg: Message, inbound_id: int | None) -> int:
    """Archive a post and queue its list copy for every regular member."""
    if not msg.message_id:   # the archive, the copies and replies to them need one to thread by
        message_id = message_id_for(raw, ctx.cfg.network.list_domain)
        raw = f"Message-ID: {message_id}\r\n".encode() + raw
        msg = dataclasses.replace(msg, message_id=message_id)
    post = Post(group_id=group.id, message_id=msg.message_id, sender=msg.sender, subject=msg.subject[:998], raw=raw,
                posted_at=ctx.now)
    ctx.session.add(post)
    ctx.session.flush()
    archive.record(ctx.session, post_id=post.id, group_id=group.id, slug=group.slug, raw=raw, message_id=msg.message_id,
                   in_reply_to=msg.in_reply_to, references=msg.references, sender=msg.sender,
                   display_name=msg.display_name, subject=msg.subject, posted_at=ctx.now)
    copy = build_copy(ctx.cfg, group, raw, msg)
    count = fan_out(ctx.session, ctx.cfg, group, copy, msg.message_id, ctx.now, inbound_id)
    audit(ctx.session, ctx.now, msg.sender, "post", group.slug, message_id=msg.message_id, recipients=count)
    return count


# ---------------------------------------------------------------------------------------------------------
# Receiving a post


def _types(raw: bytes) -> list[str]:
    parsed = email.message_from_bytes(raw, policy=COMPAT)
    return [part.get_content_type() for part in parsed.walk()]


def hold_reason(ctx: Context, group: Group, raw: bytes) -> str:
    """Why a post must wait for the contacts, or "" to send it at once."""
    member = get_member(ctx.session, ctx.sender)
    ms = membership(ctx.session, group, member) if member else None
    if ms is None:
        return f"{ctx.sender} is not a member of {group.name}"
    if ms.moderated:
        return f"{ctx.sender}'s posts to {group.name} are moderated"
    if len(raw) > ctx.cfg.lists.max_post_bytes:
        return f"the post is {len(raw)} bytes; the limit is {ctx.cfg.lists.max_post_bytes}"
    for ctype in _types(raw):
        if not any(fnmatch.fnmatch(ctype, pattern) for pattern in ctx.cfg.lists.allowed_types):
            return f"it has an attachment of type {ctype}, which {group.name} does not take"
    return ""


def looped(ctx: Context, group: Group) -> str:
    """Why a post has already been through one of our lists, or "". Any marker we add counts (X-BeenThere and
    X-Loop naming an address of ours, our List-Id), and, since a list or forwarder between two of ours may strip
    those, a Message-ID this list already distributed."""
    domain = ctx.cfg.network.list_domain.lower()
    for value in ctx.msg.all("x-beenthere") + ctx.msg.all("x-loop"):
        if "@" + domain in value.lower():
            return f"it has already been through {clean_header_text(value, 80)}"
    if any(re.search(rf"\.{re.escape(domain)}\s*>?\s*$", v.lower()) for v in ctx.msg.all("list-id")):
        return "it carries one of our List-Ids"
    if ctx.msg.message_id and ctx.session.scalar(select(Post.id).where(
            Post.group_id == group.id, Post.message_id == ctx.msg.message_id).limit(1)) is not None:
        return f"{group.slug} already distributed {clean_header_text(ctx.msg.message_id, 80)}"
    return ""


def receive_post(ctx: Context, group: Group, raw: bytes, inbound_id: int) -> tuple[InboundStatus, str]:
    """A message to SLUG@: (status, outcome). Loops and automated mail are dropped; others sent or held."""
    msg = ctx.msg
    loop = looped(ctx, group)
    if loop:
        return InboundStatus.IGNORED, f"loop: {loop}"
    auto = msg.header("auto-submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return InboundStatus.IGNORED, f"automated mail (Auto-Submitted: {auto}) is not posted"
    if group.status != GroupStatus.ACTIVE.value:
        tell_poster(ctx, group, "lists/not_active.txt", {})
        return InboundStatus.DONE, f"not posted: {group.slug} is {group.status}"
    reason = hold_reason(ctx, group, raw)
    if reason:
        excerpt = "\n".join(msg.text.splitlines()[:20])
        request = hold(ctx, group, f"moderation: {reason}",
                       f"let the post \u201c{clean_header_text(msg.subject, 80)}\u201d from {ctx.sender}"
                       f" through to {group.name}", HeldPost(inbound_id=inbound_id, excerpt=excerpt, reason=reason))
        tell_poster(ctx, group, "lists/held.txt", {"reason": reason, "ref": request.public_ref})
        return InboundStatus.DONE, f"held for the contacts: {reason}"
    count = distribute(ctx, group, raw, msg, inbound_id)
    return InboundStatus.DONE, f"posted to {count} member(s)"


def tell_poster(ctx: Context, group: Group, template: str, context: dict[str, Any]) -> None:
    ctx.mail(template, {"group": group, "address": list_address(ctx.cfg, group), **context}, ctx.reply_address,
             per_day=ctx.cfg.limits.replies_per_day, kind="reply", parent=ctx.msg, auto_submitted="auto-replied")


@pending.decided("post", HeldPost)
def decide_post(ctx: Context, request: PendingAction, group: Group, decision: str, reason: str) -> str:
    """The contacts' decision on a held post: approved posts go out; rejected ones are not sent."""
    if decision != "approve":
        return "the post was not sent to the list"
    inbound = ctx.session.get(InboundMessage, pending.read(request, HeldPost).inbound_id)
    if inbound is None:
        return "the held post is gone"
    msg = parse(inbound.raw)
    count = distribute(ctx, group, inbound.raw, msg, inbound.id)
    return f"the post was sent to {count} member(s)"


@pending.expires("post", lifetime=lambda ctx: dt.timedelta(days=ctx.cfg.lists.hold_days), remind=False)
def expire_post(ctx: Context, row: PendingAction, group: Group | None) -> int:
    """A held post nobody decided on within [lists] hold_days expires; its poster is told."""
    post = pending.read(row, HeldPost)
    ctx.mail("lists/expired.txt", {"group": group, "ref": row.public_ref, "days": ctx.cfg.lists.hold_days,
                                   "summary": post.summary}, post.requester)
    audit(ctx.session, ctx.now, "wgbot", "held-post-expired", group.slug if group else "", ref=row.public_ref)
    return 1


# ---------------------------------------------------------------------------------------------------------
# Owner mail (bounces are read in bounces.py)


def to_owners(ctx: Context, group: Group, raw: bytes) -> tuple[InboundStatus, str]:
    """SLUG-owner@ reaches the group's contacts (forwarded as it came, bounces to the list's bounce address)."""
    owners = [m.address for m in contacts(ctx.session, group)] or list(ctx.cfg.network.secretariat)
    if any(list_address(ctx.cfg, group).lower() in v.lower() for v in ctx.msg.all("x-beenthere")):
        return InboundStatus.IGNORED, "loop: mail from this list to its own owners"
    enqueue_raw(ctx.session, b"X-Original-To: " + f"{group.slug}-owner@{ctx.cfg.network.list_domain}".encode()
                + b"\r\n" + raw, ctx.msg.message_id, owners, bounce_address(ctx.cfg, group), ctx.now, "owner",
                ctx.inbound_id)
    return InboundStatus.DONE, f"forwarded to {len(owners)} contact(s)"
