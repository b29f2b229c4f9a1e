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

import dataclasses
import datetime as dt
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from wgbot.context import Context, Result, new_public_ref, new_token
from wgbot.store import Group, PendingAction, address_key, audit, prepared, token_hash

APPROVE_WORDS = {"approve", "approved", "yes", "ok"}
REJECT_WORDS = {"reject", "rejected", "no", "decline", "declined"}
REASONED_REJECT = ("reject", "rejected")


# ---------------------------------------------------------------------------------------------------------
# Payloads: what a request carries, typed. Stored as JSON in PendingAction.payload under the same keys as
# before they were typed, so rows written by an older wgbot read as they always did (no migration).


@dataclass
class Payload:
    """The base of every request's payload. `load` takes the fields the class knows from the stored JSON (a
    field the row predates gets its default; a key the class does not know is left alone)."""

    @classmethod
    def load(cls, stored: Mapping[str, Any]) -> Self:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})

    def dump(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Confirmation(Payload):
    """What every confirmation carries: the address that must confirm (and whose request it is)."""

    address: str = ""


@dataclass
class Approval(Payload):
    """What every approval carries: its kind, who asked, who may decide, the rule that asks, a summary."""

    kind: str = ""
    requester: str = ""
    approvers: list[str] = field(default_factory=list)
    rule: str = ""
    summary: str = ""


P = TypeVar("P", bound=Payload)


def read(row: PendingAction, cls: type[P]) -> P:
    """The row's payload as `cls`."""
    return cls.load(row.payload or {})


# What a confirmation does: (ctx, request, its group or None) -> the answer to the requester.
Confirm = Callable[[Context, PendingAction, "Group | None"], Result]
# What a decision does: (ctx, request, group, "approve" | "reject", reason) -> what happened, in a few words for
# the notices.
Decide = Callable[[Context, PendingAction, Group, str, str], str]
# What an approval's expiry does beyond marking it expired: (ctx, request, its group or None) -> mails queued.
Expire = Callable[[Context, PendingAction, "Group | None"], int]


@dataclass
class Kind:
    """One kind of request, as registered by the module that owns it."""

    name: str
    confirm: Confirm | None = None      # stored with action = name
    confirm_payload: type[Confirmation] = Confirmation
    decide: Decide | None = None        # stored with action = "approval" and payload kind = name
    decide_payload: type[Approval] = Approval
    expire: Expire | None = None        # replaces the requester's "your request expired" notice
    lifetime: Callable[[Context], dt.timedelta] | None = None  # from creation, instead of [limits] token_days
    remind: bool = True                 # one reminder to whoever must act, before expiry


KINDS: dict[str, Kind] = {}


def _slot(name: str, which: str) -> Kind:
    entry = KINDS.setdefault(name, Kind(name))
    if getattr(entry, which) is not None:
        raise ValueError(f"request kind {name!r}: {which} registered twice")
    return entry


F = TypeVar("F", bound=Callable[..., Any])


def _registrar(name: str, slot: str, **beside: Any) -> Callable[[F], F]:
    """A decorator that makes the function it decorates the `slot` of kind `name` (once), with `beside`."""
    def register(func: F) -> F:
        entry = _slot(name, slot)
        for key, value in {slot: func, **beside}.items():
            setattr(entry, key, value)
        return func
    return register


def confirmed(name: str, payload: type[Confirmation] = Confirmation) -> Callable[[Confirm], Confirm]:
    """Register what happens when the requester confirms a request of kind `name`, whose payload is `payload`."""
    return _registrar(name, "confirm", confirm_payload=payload)


def decided(name: str, payload: type[Approval] = Approval) -> Callable[[Decide], Decide]:
    """Register what happens when an approver decides a request of kind `name`, whose payload is `payload`."""
    return _registrar(name, "decide", decide_payload=payload)


def expires(name: str, *, lifetime: Callable[[Context], dt.timedelta] | None = None,
            remind: bool = True) -> Callable[[Expire], Expire]:
    """Register what happens when an approval of kind `name` expires undecided (the sweep marks it and calls
    this instead of telling the requester), with an optional lifetime and no reminder when `remind` is off."""
    return _registrar(name, "expire", lifetime=lifetime, remind=remind)


def _registered(kind: Kind | None, payload: Payload, which: str) -> None:
    expected = getattr(kind, which) if kind is not None else None
    if expected is None or type(payload) is not expected:
        raise TypeError(f"request kind {kind.name if kind else '?'}: payload {type(payload).__name__} is not the "
                        f"registered {expected.__name__ if expected else 'kind'}")


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


def confirmation(ctx: Context, template: str, action: str, group: Group | None, payload: Confirmation,
                 description: str, /, **context: Any) -> Result:
    """A state change that needs the sender's confirmation (SPEC §3, Identity); applied at once when the
    message carries a trusted DMARC pass for its From domain."""
    if ctx.trusted:
        token, _, _ = request_confirmation(ctx, action, group, payload, description, send=False)
        return confirm_token(ctx, token)
    _, ref, sent = request_confirmation(ctx, action, group, payload, description)
    return ctx.result(template, True, "pending", group=group, ref=ref, sent=sent, **context)


def request_confirmation(ctx: Context, action: str, group: Group | None, payload: Confirmation,
                         description: str, send: bool = True) -> tuple[str, str, bool]:
    """Create a pending action for the sender and mail them the confirmation request: (token, ref, sent)."""
    _registered(KINDS.get(action), payload, "confirm_payload")
    key = address_key(ctx.sender)
    group_id = group.id if group else None
    # One pending request per address, action and group: a new request replaces the old one.
    ctx.session.execute(prepared(ctx.session, _replace_pending),
                        {"b_key": key, "b_action": action, "b_group": group_id, "b_now": ctx.now})
    token = new_token()
    ref = new_public_ref()
    ctx.session.execute(prepared(ctx.session, _insert_pending), {
        "token_hash": token_hash(token), "public_ref": ref, "action": action, "address_key": key,
        "group_id": group_id, "payload": dataclasses.replace(payload, address=ctx.sender).dump(), "created_at": ctx.now,
        "expires_at": ctx.now + dt.timedelta(days=ctx.cfg.limits.token_days), "used_at": None,
        "outcome": "", "reminded_at": None})
    if not send:
        return token, ref, False
    local, _, domain = ctx.cfg.network.bot_address.partition("@")
    sent = ctx.mail("notices/confirm.txt",
                    {"token": token, "ref": ref, "description": description, "address": ctx.sender,
                     "days": ctx.cfg.limits.token_days},
                    ctx.sender, per_day=ctx.cfg.limits.replies_per_day, reply_to=f"{local}+confirm-{token}@{domain}",
                    kind="confirm")
    return token, ref, sent is not None


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
                     summary: str, payload: Approval | None = None, notify: bool = True) -> PendingAction:
    """Ask `approvers` to decide; the token travels in the From/Reply-To address wgbot+approval-TOKEN@.
    `payload` is the kind's registered Approval subclass, its common fields filled here. Without `notify`
    nothing is mailed now (a digest mails it later with a fresh token: wgbot.held)."""
    registered = KINDS.get(kind)
    body = payload if payload is not None else (registered.decide_payload() if registered else Approval())
    _registered(registered, body, "decide_payload")
    body = dataclasses.replace(body, kind=kind, requester=requester, approvers=approvers, rule=rule, summary=summary)
    token = new_token()
    ref = new_public_ref()
    row = PendingAction(token_hash=token_hash(token), public_ref=ref, action="approval",
                        address_key=address_key(requester), group_id=group.id, payload=body.dump(),
                        created_at=ctx.now, expires_at=ctx.now + dt.timedelta(days=ctx.cfg.limits.token_days))
    ctx.session.add(row)
    local, _, domain = ctx.cfg.network.bot_address.partition("@")
    reply_address = f"{local}+approval-{token}@{domain}"
    for approver in approvers if notify else []:
        ctx.mail("notices/approval_request.txt",
                 {"group": group, "ref": ref, "rule": rule, "summary": summary, "requester": requester,
                  "token": token, "kind": kind, "reply_address": reply_address, "days": ctx.cfg.limits.token_days},
                 approver, kind="approval", sender=f"{ctx.cfg.network.name} <{reply_address}>", reply_to=reply_address)
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
    approvers = {address_key(a) for a in read(row, Approval).approvers}
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
    request = read(row, Approval)
    audit(ctx.session, ctx.now, ctx.sender, f"{decision}:{request.kind}", group.slug, rule=request.rule,
          ref=row.public_ref, reason=reason)
    apply = KINDS[request.kind].decide
    assert apply is not None, f"no decision registered for requests of kind {request.kind!r}"
    applied = apply(ctx, row, group, decision, reason)
    context = {"group": group, "ref": row.public_ref, "decision": decision, "reason": reason, "decider": ctx.sender,
               "summary": request.summary, "outcome": applied}
    for other in request.approvers:
        if address_key(other) != address_key(ctx.sender):
            ctx.mail("notices/decided.txt", context, other)
    if request.requester and address_key(request.requester) not in approvers:
        ctx.mail("notices/outcome.txt", context, request.requester)
    return ctx.result(name, True, "done", ref=row.public_ref, group=group, reason=reason, applied=applied,
                      summary=request.summary)


# ---------------------------------------------------------------------------------------------------------
# Reminders and expiry: run by the schedule once a tick


def sweep(ctx: Context) -> int:
    """Every open request: one reminder to whoever must act ([schedule] reminder_days_before_expiry before it
    expires), then its expiry. An approval's kind may give it another lifetime and its own expiry
    (`@pending.expires`); by default the requester is told it expired. Returns the mails and expiries done."""
    done = 0
    soon = ctx.now + dt.timedelta(days=ctx.cfg.schedule.reminder_days_before_expiry)
    rows = ctx.session.scalars(select(PendingAction).where(PendingAction.used_at.is_(None))
                               .order_by(PendingAction.id)).all()
    for row in rows:
        approval = read(row, Approval) if row.action == "approval" else None
        kind = KINDS.get(approval.kind) if approval is not None else None
        due = row.created_at + kind.lifetime(ctx) if kind is not None and kind.lifetime else row.expires_at
        if due <= ctx.now:
            row.used_at, row.outcome = ctx.now, "expired"
            group = ctx.session.get(Group, row.group_id) if row.group_id else None
            done += kind.expire(ctx, row, group) if kind is not None and kind.expire else expired(ctx, row, group)
        elif due <= soon and row.reminded_at is None and (kind is None or kind.remind):
            row.reminded_at = ctx.now
            to = approval.approvers if approval is not None else [read(row, Confirmation).address]
            for address in (a for a in to if a):
                ctx.mail("notices/pending_reminder.txt", {"ref": row.public_ref, "expires": row.expires_at,
                                                          "approval": approval is not None,
                                                          "summary": approval.summary if approval else row.action},
                         address)
                done += 1
    return done


def expired(ctx: Context, row: PendingAction, group: Group | None) -> int:
    """What an expiry does unless its kind says otherwise: the audit log, and the requester of an approval is
    told. Returns 1 and the mails queued."""
    approval = read(row, Approval) if row.action == "approval" else None
    kind = f":{approval.kind}" if approval is not None and approval.kind else ""
    audit(ctx.session, ctx.now, "wgbot", f"expired:{row.action}{kind}", group.slug if group else "",
          ref=row.public_ref)
    if approval is None or not approval.kind or not approval.requester:
        return 1
    ctx.mail("notices/request_expired.txt", {"ref": row.public_ref, "summary": approval.summary},
             approval.requester)
    return 2
