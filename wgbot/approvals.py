"""approvals: requests that an approver decides by reply (SPEC §3, §4): one token per request, sent to each
approver in the From/Reply-To address wgbot+approval-TOKEN@; the first decision wins and is applied by the
handler that the owning module registered for the request's kind (`@approvals.kind("post")`).

It sits under groups and the features (wgbot.LAYERS) and imports none of them.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from wgbot.context import Context, Result, new_public_ref, new_token
from wgbot.outbox import enqueue
from wgbot.render import compose
from wgbot.store import Group, PendingAction, address_key, audit, token_hash

APPROVE_WORDS = {"approve", "approved", "yes", "ok"}
REJECT_WORDS = {"reject", "rejected", "no", "decline", "declined"}
REASONED_REJECT = ("reject", "rejected")

# What a decision does for one kind of request: (ctx, request, group, "approve" | "reject", reason) -> what
# happened, in a few words for the notices.
Decide = Callable[[Context, PendingAction, Group, str, str], str]
DECISIONS: dict[str, Decide] = {}


def kind(name: str) -> Callable[[Decide], Decide]:
    """Register the function that applies a decision on requests of kind `name` (one per kind)."""
    def register(func: Decide) -> Decide:
        if name in DECISIONS:
            raise ValueError(f"approval kind {name!r} registered twice")
        DECISIONS[name] = func
        return func
    return register


def request_approval(ctx: Context, kind: str, group: Group, requester: str, approvers: list[str], rule: str,
                     summary: str, payload: dict[str, Any] | None = None, notify: bool = True) -> PendingAction:
    """Ask `approvers` to decide; the token travels in the From/Reply-To address wgbot+approval-TOKEN@.
    Without `notify` nothing is mailed now (a digest mails it later with a fresh token: wgbot.held)."""
    token = new_token()
    ref = new_public_ref()
    row = PendingAction(token_hash=token_hash(token), public_ref=ref, action="approval",
                        address_key=address_key(requester), group_id=group.id,
                        payload={"kind": kind, "requester": requester, "approvers": approvers, "rule": rule,
                                 "summary": summary, **(payload or {})},
                        created_at=ctx.now, expires_at=ctx.now + dt.timedelta(days=ctx.cfg.limits.token_days))
    ctx.session.add(row)
    local, _, domain = ctx.cfg.network.bot_address.partition("@")
    reply_address = f"{local}+approval-{token}@{domain}"
    for approver in approvers if notify else []:
        msg = compose(ctx.cfg, "notices/approval_request.txt",
                      {"group": group, "rules": ctx.rules, "ref": ref, "rule": rule, "summary": summary,
                       "requester": requester, "token": token, "kind": kind, "reply_address": reply_address,
                       "days": ctx.cfg.limits.token_days},
                      to=[approver], sender=f"{ctx.cfg.network.name} <{reply_address}>", reply_to=reply_address,
                      now=ctx.now)
        enqueue(ctx.session, msg, [approver], ctx.cfg.network.bot_address, ctx.now, kind="approval",
                inbound_id=ctx.inbound_id)
    audit(ctx.session, ctx.now, requester, f"approval-requested:{kind}", group.slug, rule=rule, ref=ref,
          approvers=approvers)
    return row


def read_decision(text: str) -> tuple[str, str]:
    """('approve' | 'reject' | '', reason) from a reply: its first non-quoted, non-blank line decides (SPEC §3)."""
    lines = text.replace("\r\n", "\n").split("\n")
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(">") or raw.rstrip() in ("--", "-- "):
            return "", ""
        word = re.sub(r"[.!,;:]+$", "", line).strip().casefold()
        if word in APPROVE_WORDS:
            return "approve", ""
        if word in REJECT_WORDS:
            return "reject", _reason(lines[i + 1:])
        # Only `reject`/`rejected` may carry a reason on the same line: "No longer with the organisation"
        # or "Declined: I am away" (an out-of-office answer) decides nothing (issue 11 item 8).
        first = re.split(r"[\s:,.!;]+", line.casefold(), maxsplit=1)
        if first and first[0] in REASONED_REJECT:
            rest = line[len(first[0]):].lstrip(" :,.!;-")
            return "reject", _reason(lines[i + 1:], rest)
        return "", ""
    return "", ""


def _reason(lines: list[str], first: str = "") -> str:
    """The reason after a reject: the lines up to a quote or a signature."""
    reason_lines = [first] if first else []
    for more in lines:
        if more.startswith(">") or more.rstrip() in ("--", "-- "):
            break
        reason_lines.append(more.rstrip())
    reason = "\n".join(reason_lines).strip()
    # A quote attribution ("On Monday X wrote:") before the quote is not part of the reason.
    return re.sub(r"(^|\n)[^\n]*wrote:\s*$", "", reason).strip()


def decide(ctx: Context, token: str, decision: str, reason: str, hashed: str = "") -> Result:
    """Apply an approver's decision on the request behind `token` (or its stored hash); the first decision wins.
    Whatever the path (a reply to the approval address or an `approve TOKEN` command), a deployment with a
    trusted authserv-id takes a decision only with that MTA's dmarc=pass for the From domain (README)."""
    name = decision
    if ctx.cfg.network.trusted_authserv_id and not ctx.trusted:
        return ctx.result(name, False, "untrusted")
    hashed = hashed or token_hash(token)
    row = ctx.session.scalar(select(PendingAction).where(PendingAction.token_hash == hashed,
                                                         PendingAction.action == "approval"))
    if row is None or not hmac.compare_digest(row.token_hash, hashed):
        return ctx.result(name, False, "unknown")
    approvers = {address_key(a) for a in row.payload.get("approvers", [])}
    if address_key(ctx.sender) not in approvers:
        return ctx.result(name, False, "not_approver", ref=row.public_ref)
    return _decide(ctx, row, decision, reason, approvers)


def _decide(ctx: Context, row: PendingAction, decision: str, reason: str, approvers: set[str]) -> Result:
    name = decision
    if row.used_at is not None:
        return ctx.result(name, False, "decided", ref=row.public_ref, outcome_was=row.outcome)
    if row.expires_at <= ctx.now:
        return ctx.result(name, False, "expired", ref=row.public_ref)
    outcome = f"approved by {ctx.sender}" if decision == "approve" else f"rejected by {ctx.sender}"
    claimed = ctx.session.execute(update(PendingAction).where(
        PendingAction.id == row.id, PendingAction.used_at.is_(None)).values(used_at=ctx.now, outcome=outcome))
    if not getattr(claimed, "rowcount", 1):
        return ctx.result(name, False, "decided", ref=row.public_ref, outcome_was="decided")
    group = ctx.session.get(Group, row.group_id) if row.group_id else None
    assert group is not None
    kind = row.payload["kind"]
    rule = row.payload.get("rule", "")
    audit(ctx.session, ctx.now, ctx.sender, f"{decision}:{kind}", group.slug, rule=rule, ref=row.public_ref,
          reason=reason)
    applied = DECISIONS[kind](ctx, row, group, decision, reason)
    others = [a for a in row.payload.get("approvers", []) if address_key(a) != address_key(ctx.sender)]
    context = {"ref": row.public_ref, "decision": decision, "reason": reason, "decider": ctx.sender,
               "summary": row.payload.get("summary", ""), "outcome": applied}
    for other in others:
        msg = compose(ctx.cfg, "notices/decided.txt", {"group": group, "rules": ctx.rules, **context}, to=[other],
                      now=ctx.now)
        enqueue(ctx.session, msg, [other], ctx.cfg.network.bot_address, ctx.now, kind="notice",
                inbound_id=ctx.inbound_id)
    requester = row.payload.get("requester", "")
    if requester and address_key(requester) not in approvers:
        msg = compose(ctx.cfg, "notices/outcome.txt", {"group": group, "rules": ctx.rules, **context},
                      to=[requester], now=ctx.now)
        enqueue(ctx.session, msg, [requester], ctx.cfg.network.bot_address, ctx.now, kind="notice",
                inbound_id=ctx.inbound_id)
    return ctx.result(name, True, "done", ref=row.public_ref, group=group, reason=reason, applied=applied,
                      summary=row.payload.get("summary", ""))
