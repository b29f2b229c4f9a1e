"""pending: requests that wait for a person, one engine for both kinds of wait (SPEC §3, §4). A confirmation
waits for its requester (wgbot+confirm-TOKEN@, or `confirm TOKEN`); an approval waits for one of its approvers
(wgbot+approval-TOKEN@, `approve`/`reject TOKEN`), and the first decision wins. Either is a PendingAction row
with a token kept only as its hash, a public reference, an expiry and one single-use claim (`claim`).

What a confirmation or a decision does is registered by the module that owns the kind of request:
`@pending.confirmed("set")`, `@pending.decided("post")`; a kind may have both (a `join` is confirmed by its
requester, then, under joining.policy=approval, decided by a contact). It sits under groups and the features
(wgbot.LAYERS) and imports none of them.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from wgbot.context import Context, Result, new_public_ref, new_token
from wgbot.outbox import enqueue
from wgbot.render import compose
from wgbot.store import Group, PendingAction, address_key, audit, prepared, token_hash

APPROVE_WORDS = {"approve", "approved", "yes", "ok"}
REJECT_WORDS = {"reject", "rejected", "no", "decline", "declined"}
REASONED_REJECT = ("reject", "rejected")

# What a confirmation does: (ctx, request, its group or None) -> the answer to the requester.
Confirm = Callable[[Context, PendingAction, "Group | None"], Result]
# What a decision does: (ctx, request, group, "approve" | "reject", reason) -> what happened, in a few words for
# the notices.
Decide = Callable[[Context, PendingAction, Group, str, str], str]


@dataclass
class Kind:
    """One kind of request, as registered by the module that owns it."""

    name: str
    confirm: Confirm | None = None      # stored with action = name
    decide: Decide | None = None        # stored with action = "approval" and payload kind = name


KINDS: dict[str, Kind] = {}


def _slot(name: str, which: str) -> Kind:
    entry = KINDS.setdefault(name, Kind(name))
    if getattr(entry, which) is not None:
        raise ValueError(f"request kind {name!r}: {which} registered twice")
    return entry


def confirmed(name: str) -> Callable[[Confirm], Confirm]:
    """Register what happens when the requester confirms a request of kind `name`."""
    def register(func: Confirm) -> Confirm:
        _slot(name, "confirm").confirm = func
        return func
    return register


def decided(name: str) -> Callable[[Decide], Decide]:
    """Register what happens when an approver decides a request of kind `name`."""
    def register(func: Decide) -> Decide:
        _slot(name, "decide").decide = func
        return func
    return register


def claim(session: Session, row: PendingAction, now: dt.datetime, outcome: str) -> bool:
    """Single use, atomically: True only for the one transaction that marks `row` used; only it may act."""
    claimed = session.execute(update(PendingAction).where(
        PendingAction.id == row.id, PendingAction.used_at.is_(None)).values(used_at=now, outcome=outcome))
    return getattr(claimed, "rowcount", 1) == 1


def find(session: Session, hashed: str, action: str | None = None) -> PendingAction | None:
    """The request whose token has the hash `hashed` (compared in constant time), of `action` when given."""
    query = select(PendingAction).where(PendingAction.token_hash == hashed)
    row = session.scalar(query if action is None else query.where(PendingAction.action == action))
    return row if row is not None and hmac.compare_digest(row.token_hash, hashed) else None


# ---------------------------------------------------------------------------------------------------------
# Confirmations: the requester confirms


def confirmation(ctx: Context, template: str, action: str, group: Group | None, payload: dict[str, Any],
                 description: str, /, **context: Any) -> Result:
    """A state change that needs the sender's confirmation (SPEC §3, Identity); applied at once when the
    message carries a trusted DMARC pass for its From domain."""
    if ctx.trusted:
        token, _, _ = request_confirmation(ctx, action, group, payload, description, send=False)
        return confirm_token(ctx, token)
    _, ref, sent = request_confirmation(ctx, action, group, payload, description)
    return ctx.result(template, True, "pending", group=group, ref=ref, sent=sent, **context)


def request_confirmation(ctx: Context, action: str, group: Group | None, payload: dict[str, Any],
                         description: str, send: bool = True) -> tuple[str, str, bool]:
    """Create a pending action for the sender and mail them the confirmation request: (token, ref, sent)."""
    key = address_key(ctx.sender)
    group_id = group.id if group else None
    # One pending request per address, action and group: a new request replaces the old one.
    ctx.session.execute(prepared(ctx.session, _replace_pending),
                        {"b_key": key, "b_action": action, "b_group": group_id, "b_now": ctx.now})
    token = new_token()
    ref = new_public_ref()
    ctx.session.execute(prepared(ctx.session, _insert_pending), {
        "token_hash": token_hash(token), "public_ref": ref, "action": action, "address_key": key,
        "group_id": group_id, "payload": {"address": ctx.sender, **payload}, "created_at": ctx.now,
        "expires_at": ctx.now + dt.timedelta(days=ctx.cfg.limits.token_days), "used_at": None,
        "outcome": "", "reminded_at": None})
    if not send:
        return token, ref, False
    local, _, domain = ctx.cfg.network.bot_address.partition("@")
    sent = ctx.send("notices/confirm.txt",
                    {"token": token, "ref": ref, "description": description, "address": ctx.sender,
                     "days": ctx.cfg.limits.token_days},
                    ctx.sender, reply_to=f"{local}+confirm-{token}@{domain}", kind="confirm")
    return token, ref, sent


def _replace_pending(_insert: Any) -> Any:
    t: Any = PendingAction.__table__
    return (update(t).where(t.c.address_key == bindparam("b_key"), t.c.action == bindparam("b_action"),
                            t.c.group_id.is_not_distinct_from(bindparam("b_group")), t.c.used_at.is_(None))
            .values(used_at=bindparam("b_now"), outcome="replaced"))


def _insert_pending(_insert: Any) -> Any:
    return insert(PendingAction.__table__)  # type: ignore[arg-type]


def confirm_token(ctx: Context, token: str, hashed: str = "") -> Result:
    """Apply the pending action behind `token` (or behind `hashed`, its hash as stored with a masked address)."""
    row = find(ctx.session, hashed or token_hash(token))
    if row is None:
        return ctx.result("confirm", False, "unknown")
    if row.used_at is not None:
        return ctx.result("confirm", False, "used", ref=row.public_ref, outcome_was=row.outcome)
    if row.expires_at <= ctx.now:
        return ctx.result("confirm", False, "expired", ref=row.public_ref)
    apply = KINDS[row.action].confirm if row.action in KINDS else None
    if apply is None:
        return ctx.result("confirm", False, "not_confirmable", ref=row.public_ref)
    if not claim(ctx.session, row, ctx.now, "confirmed"):
        return ctx.result("confirm", False, "used", ref=row.public_ref, outcome_was="confirmed")
    group = ctx.session.get(Group, row.group_id) if row.group_id else None
    return apply(ctx, row, group)


# ---------------------------------------------------------------------------------------------------------
# Approvals: an approver decides




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
    row = find(ctx.session, hashed or token_hash(token), "approval")
    if row is None:
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
    if not claim(ctx.session, row, ctx.now, outcome):
        return ctx.result(name, False, "decided", ref=row.public_ref, outcome_was="decided")
    group = ctx.session.get(Group, row.group_id) if row.group_id else None
    assert group is not None
    kind = row.payload["kind"]
    rule = row.payload.get("rule", "")
    audit(ctx.session, ctx.now, ctx.sender, f"{decision}:{kind}", group.slug, rule=rule, ref=row.public_ref,
          reason=reason)
    apply = KINDS[kind].decide
    assert apply is not None, f"no decision registered for requests of kind {kind!r}"
    applied = apply(ctx, row, group, decision, reason)
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
