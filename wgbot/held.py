"""held: moderation requests for held posts, without letting a flood of posts flood the contacts. The first
[lists] held_requests_per_hour held posts of a group in an hour are each mailed to the contacts at once;
beyond that a held post waits, and the scheduler (`job_held_digest`, run by wgbot.schedule) mails each
contact one digest of the waiting posts an hour, each with its own approval address.

It works in the caller's transaction and only queues mail; deciding a held post stays with wgbot.lists.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from wgbot.context import claim, local, new_token
from wgbot.groups import contacts
from wgbot.outbox import enqueue
from wgbot.pending import request_approval
from wgbot.render import compose
from wgbot.store import AuditEntry, Group, PendingAction, token_hash

if TYPE_CHECKING:
    from wgbot.context import Context

DIGEST_ITEMS = 50        # held posts listed in one digest; the rest wait for the next hour's


def hold(ctx: Context, group: Group, rule: str, summary: str, payload: dict[str, Any]) -> PendingAction:
    """Create the moderation request for a held post: mailed at once while the group is under its hourly
    allowance, else left for the next digest."""
    approvers = [m.address for m in contacts(ctx.session, group)] or list(ctx.cfg.network.secretariat)
    recent = ctx.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "approval-requested:post", AuditEntry.group_slug == group.slug,
        AuditEntry.at > ctx.now - dt.timedelta(hours=1))) or 0
    quiet = recent >= ctx.cfg.lists.held_requests_per_hour
    return request_approval(ctx, "post", group, ctx.sender, approvers, rule, summary,
                            {**payload, "digest": quiet}, notify=not quiet)


def job_held_digest(ctx: Context) -> int:
    """One digest of the held posts waiting to be mailed, per group and contact, at most once an hour."""
    rows = ctx.session.scalars(select(PendingAction).where(
        PendingAction.action == "approval", PendingAction.used_at.is_(None),
        PendingAction.expires_at > ctx.now).order_by(PendingAction.id)).all()
    waiting: dict[int, list[PendingAction]] = {}
    for row in rows:
        if row.payload.get("kind") == "post" and row.payload.get("digest") and row.group_id is not None:
            waiting.setdefault(row.group_id, []).append(row)
    sent = 0
    hour = local(ctx.cfg, ctx.now).strftime("%Y-%m-%dT%H")
    for group_id, held in waiting.items():
        group = ctx.session.get(Group, group_id)
        if group is None or not claim(ctx.session, f"held-digest:{group.slug}:{hour}", ctx.now):
            continue
        items = [_fresh_item(ctx, row) for row in held[:DIGEST_ITEMS]]
        approvers = dict.fromkeys(a for row in held[:DIGEST_ITEMS] for a in row.payload.get("approvers", []))
        for approver in approvers:
            msg = compose(ctx.cfg, "notices/held_digest.txt",
                          {"group": group, "items": items, "more": len(held) - len(items),
                           "days": ctx.cfg.lists.hold_days}, to=[approver], now=ctx.now)
            enqueue(ctx.session, msg, [approver], ctx.cfg.network.bot_address, ctx.now, kind="approval")
            sent += 1
    return sent


def _fresh_item(ctx: Context, row: PendingAction) -> dict[str, str]:
    """One held post for a digest. Nobody has seen its request's token: a fresh one goes into the digest (only
    its hash is kept), and the request is marked as mailed."""
    token = new_token()
    row.token_hash = token_hash(token)
    row.payload = {**row.payload, "digest": False}
    local_part, _, domain = ctx.cfg.network.bot_address.partition("@")
    return {"ref": row.public_ref, "summary": row.payload.get("summary", ""), "token": token,
            "reason": row.payload.get("reason", ""), "reply_address": f"{local_part}+approval-{token}@{domain}",
            "excerpt": "\n".join(str(row.payload.get("excerpt", "")).splitlines()[:5])}
