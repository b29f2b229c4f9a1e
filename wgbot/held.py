"""held: moderation requests for held posts, without letting a flood of posts flood the contacts. The first
[lists] held_requests_per_hour held posts of a group in an hour are each mailed to the contacts at once;
beyond that a held post waits, and the scheduler (`job_held_digest`, run by wgbot.schedule) mails each
contact one digest of the waiting posts an hour, each with its own approval address.

It works in the caller's transaction and only queues mail; deciding a held post stays with wgbot.lists.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from wgbot.context import claim, local, new_token
from wgbot.groups import contacts
from wgbot.pending import Approval, read, request_approval
from wgbot.store import AuditEntry, Group, PendingAction, token_hash

if TYPE_CHECKING:
    from wgbot.context import Context

DIGEST_ITEMS = 50        # held posts listed in one digest; the rest wait for the next hour's


@dataclass
class HeldPost(Approval):
    """The payload of a held post's moderation request (kind "post", decided in wgbot.lists)."""

    inbound_id: int = 0     # the stored message, sent as it came when approved
    excerpt: str = ""
    reason: str = ""
    digest: bool = False    # waiting for the next digest of held posts: nobody has its token yet


def hold(ctx: Context, group: Group, rule: str, summary: str, post: HeldPost) -> PendingAction:
    """Create the moderation request for a held post: mailed at once while the group is under its hourly
    allowance, else left for the next digest."""
    approvers = [m.address for m in contacts(ctx.session, group)] or list(ctx.cfg.network.secretariat)
    recent = ctx.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "approval-requested:post", AuditEntry.group_slug == group.slug,
        AuditEntry.at > ctx.now - dt.timedelta(hours=1))) or 0
    quiet = recent >= ctx.cfg.lists.held_requests_per_hour
    return request_approval(ctx, "post", group, ctx.sender, approvers, rule, summary,
                            dataclasses.replace(post, digest=quiet), notify=not quiet)


def job_held_digest(ctx: Context) -> int:
    """One digest of the held posts waiting to be mailed, per group and contact, at most once an hour."""
    rows = ctx.session.scalars(select(PendingAction).where(
        PendingAction.action == "approval", PendingAction.used_at.is_(None),
        PendingAction.expires_at > ctx.now).order_by(PendingAction.id)).all()
    waiting: dict[int, list[tuple[PendingAction, HeldPost]]] = {}
    for row in rows:
        post = read(row, HeldPost)
        if post.kind == "post" and post.digest and row.group_id is not None:
            waiting.setdefault(row.group_id, []).append((row, post))
    sent = 0
    hour = local(ctx.cfg, ctx.now).strftime("%Y-%m-%dT%H")
    for group_id, held in waiting.items():
        group = ctx.session.get(Group, group_id)
        if group is None or not claim(ctx.session, f"held-digest:{group.slug}:{hour}", ctx.now):
            continue
        items = [fresh_item(ctx, row, post) for row, post in held[:DIGEST_ITEMS]]
        approvers = dict.fromkeys(a for _, post in held[:DIGEST_ITEMS] for a in post.approvers)
        for approver in approvers:
            ctx.mail("notices/held_digest.txt", {"group": group, "items": items, "more": len(held) - len(items),
                                                 "days": ctx.cfg.lists.hold_days}, approver, kind="approval")
            sent += 1
    return sent


def fresh_item(ctx: Context, row: PendingAction, post: HeldPost) -> dict[str, str]:
    """One held post for a digest. Nobody has seen its request's token: a fresh one goes into the digest (only
    its hash is kept), and the request is marked as mailed."""
    token = new_token()
    row.token_hash = token_hash(token)
    row.payload = {**row.payload, "digest": False}
    local_part, _, domain = ctx.cfg.network.bot_address.partition("@")
    return {"ref": row.public_ref, "summary": post.summary, "token": token, "reason": post.reason,
            "reply_address": f"{local_part}+approval-{token}@{domain}",
            "excerpt": "\n".join(post.excerpt.splitlines()[:5])}
