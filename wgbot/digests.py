"""digests: a group's waiting posts as one message per format — MIME (multipart/digest of message/rfc822 parts,
RFC 2046 §5.1.5) or plain text (RFC 1153) — with a table of contents and the list's headers, fanned out to the
members whose delivery is `digest`. The schedule decides when; this module builds and queues, in the caller's
transaction, and marks the posts it included.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from email.message import Message as StdMessage
from email.utils import format_datetime, make_msgid

from sqlalchemy import func, select, update

from wgbot.config import WEEKDAYS
from wgbot.context import Context, at_or_after, local
from wgbot.groups import active_groups
from wgbot.lists import COMPAT, archive_url, fan_out, list_address, list_headers
from wgbot.parse import clean_header_text, parse
from wgbot.render import POLICY, render_fragment
from wgbot.store import Group, Ledger, Membership, Post

FORMATS = ("mime", "plain")


def waiting(ctx: Context, group: Group) -> list[Post]:
    return list(ctx.session.scalars(select(Post).where(Post.group_id == group.id, Post.digested_at.is_(None))
                                    .order_by(Post.id)))


def waiting_size(ctx: Context, group: Group) -> tuple[int, int]:
    """(posts, bytes) waiting for the next digest."""
    row = ctx.session.execute(select(func.count(), func.coalesce(func.sum(func.length(Post.raw)), 0)).where(
        Post.group_id == group.id, Post.digested_at.is_(None))).one()
    return int(row[0]), int(row[1])


def _entries(posts: list[Post]) -> list[dict[str, str]]:
    out = []
    for post in posts:
        try:
            text = parse(post.raw).text
        except Exception:  # an archived post that no longer parses still gets a line in the digest
            text = "(this message could not be shown as text)"
        original = email.message_from_bytes(post.raw, policy=COMPAT)
        out.append({"subject": clean_header_text(post.subject or "(no subject)", 200),
                    "sender": clean_header_text(str(original.get("From", post.sender)), 200),
                    "date": format_datetime(post.posted_at), "text": text.strip()})
    return out


def _base(ctx: Context, group: Group, number: int, fmt: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = f"{group.slug}-request@{ctx.cfg.network.list_domain}"
    msg["To"] = list_address(ctx.cfg, group)
    msg["Subject"] = f"{group.name} digest, issue {number}" + (" (plain text)" if fmt == "plain" else "")
    msg["Date"] = format_datetime(ctx.now)
    msg["Message-ID"] = make_msgid(domain=ctx.cfg.network.list_domain)
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def build(ctx: Context, group: Group, posts: list[Post], number: int, fmt: str) -> bytes:
    entries = _entries(posts)
    common = {"group": group, "entries": entries, "number": number, "network": ctx.cfg.network,
              "address": list_address(ctx.cfg, group), "domain": ctx.cfg.network.list_domain,
              "archive": archive_url(ctx.cfg, group)}
    msg = _base(ctx, group, number, fmt)
    if fmt == "plain":
        # RFC 1153: a table of contents, then each message separated by a line of 30 dashes.
        msg.set_content(render_fragment(ctx.cfg, "lists/_digest_plain.txt", **common) + "\n", charset="utf-8")
    else:
        msg.set_content(render_fragment(ctx.cfg, "lists/_digest_toc.txt", **common) + "\n", charset="utf-8")
        digest = EmailMessage(policy=POLICY)
        digest.make_mixed()
        digest.set_type("multipart/digest")
        for post in posts:
            part = StdMessage()
            part.set_type("message/rfc822")
            del part["MIME-Version"]
            part.set_payload([email.message_from_bytes(post.raw, policy=email.policy.compat32)])
            digest.attach(part)  # type: ignore[arg-type]
        msg.make_mixed()
        msg.attach(digest)
    for name, value in list_headers(ctx.cfg, group):
        del msg[name]
        msg[name] = str(value) if not isinstance(value, str) else value
    return msg.as_bytes(policy=POLICY)


def issue_number(ctx: Context, group: Group) -> int:
    count = ctx.session.scalar(select(func.count()).select_from(Ledger).where(
        Ledger.key.like(f"digest:{group.slug}:%"))) or 0
    return int(count) + 1


def send(ctx: Context, group: Group, key: str) -> int:
    """Send the waiting posts as a digest to digest members, both formats; returns the recipients queued. A
    group nobody reads in digests has its waiting posts marked in one statement, none of them loaded."""
    readers = {fmt: ctx.session.scalar(select(func.count()).select_from(Membership).where(
        Membership.group_id == group.id, Membership.delivery == "digest", Membership.digest_format == fmt)) or 0
        for fmt in FORMATS}
    if not any(readers.values()):
        ctx.session.add(Ledger(key=key, done_at=ctx.now))
        ctx.session.execute(update(Post).where(Post.group_id == group.id, Post.digested_at.is_(None))
                            .values(digested_at=ctx.now))
        return 0
    posts = waiting(ctx, group)
    if not posts:
        return 0
    number = issue_number(ctx, group)
    ctx.session.add(Ledger(key=key, done_at=ctx.now))
    queued = 0
    for fmt in FORMATS:
        if not readers[fmt]:
            continue
        copy = build(ctx, group, posts, number, fmt)
        msgid = str(email.message_from_bytes(copy)["Message-ID"])
        queued += fan_out(ctx.session, ctx.cfg, group, copy, msgid, ctx.now, None, delivery="digest",
                          digest_format=fmt, kind="digest")
    ctx.session.execute(update(Post).where(Post.id.in_([p.id for p in posts])).values(digested_at=ctx.now))
    return queued


def job(ctx: Context) -> int:
    """A digest per group on its schedule (daily at send_at, or weekly), or at once past the size threshold."""
    cfg = ctx.cfg
    here = local(cfg, ctx.now)
    scheduled = at_or_after(cfg, ctx.now, cfg.digests.send_at) and (
        not cfg.digests.weekly_on or WEEKDAYS[here.weekday()] == cfg.digests.weekly_on.lower())
    sent = 0
    for group in active_groups(ctx.session):
        posts, size = waiting_size(ctx, group)
        if not posts:
            continue
        if posts >= cfg.digests.max_posts or size >= cfg.digests.max_bytes:
            first = waiting(ctx, group)[0].id
            key = f"digest:{group.slug}:size:{first}"
        elif scheduled:
            key = f"digest:{group.slug}:{here:%Y-%m-%d}"
        else:
            continue
        if ctx.session.get(Ledger, key) is None:
            sent += send(ctx, group, key)
    return sent
