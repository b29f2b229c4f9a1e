"""workgroups: what no list manager does — proposals, formation rules, approvals by reply, contacts, closing.

The email commands of SPEC §3 for working groups (propose, support, contact, continue, close, withdraw,
approve, reject) and the state machine forming → pending → active → closed. The rules decide (wgbot.rules,
pure); this module applies their decisions in the caller's transaction, queues the mail they cause and
writes each decision and the rule that fired to the audit log. It never touches the network.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from wgbot import rules as R
from wgbot.commands import (
    ACTIONS,
    Context,
    Line,
    Result,
    _fields,
    new_public_ref,
    new_token,
    registry,
    shown,
    slugify,
)
from wgbot.invitations import invite
from wgbot.names import name_problem
from wgbot.organisations import canonical, check_support
from wgbot.outbox import enqueue
from wgbot.render import compose
from wgbot.store import (
    Declaration,
    Delivery,
    Group,
    GroupStatus,
    Member,
    Membership,
    PendingAction,
    Role,
    address_key,
    audit,
    get_member,
    get_or_create_member,
    membership,
    token_hash,
)

_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
APPROVE_WORDS = {"approve", "approved", "yes", "ok"}
REJECT_WORDS = {"reject", "rejected", "no", "decline", "declined"}
REASONED_REJECT = ("reject", "rejected")


# ---------------------------------------------------------------------------------------------------------
# Facts about a group


def contacts(session: Session, group: Group) -> list[Member]:
    return list(session.scalars(select(Member).join(Membership).where(
        Membership.group_id == group.id, Membership.role == Role.CONTACT.value).order_by(Membership.id)))


def supporters(session: Session, group: Group) -> list[R.Supporter]:
    rows = session.execute(select(Member.organisation, Member.country, Member.address, Membership.verified)
                           .join(Membership).where(Membership.group_id == group.id).order_by(Membership.id)).all()
    return [R.Supporter(org, country, address, verified) for org, country, address, verified in rows]


def audience(ctx: Context, names: Iterable[str], group: Group | None, exclude: Iterable[str] = ()) -> list[str]:
    """The addresses of the named audiences of SPEC §4's 'who is told of what'."""
    out: dict[str, str] = {}
    for name in names:
        found: list[str] = []
        if name == "secretariat":
            found = list(ctx.cfg.network.secretariat)
        elif name == "proposer" and group is not None and group.proposer:
            found = [group.proposer]
        elif name == "contacts" and group is not None:
            found = [m.address for m in contacts(ctx.session, group)]
        elif name in ("supporters", "members") and group is not None:
            found = list(ctx.session.scalars(select(Member.address).join(Membership)
                                             .where(Membership.group_id == group.id)))
        elif name == "network":
            found = list(ctx.session.scalars(select(Member.address).join(Membership).distinct()))
        for address in found:
            out.setdefault(address_key(address), address)
    for address in exclude:
        out.pop(address_key(address), None)
    return list(out.values())


def tell(ctx: Context, names: Iterable[str], group: Group | None, template: str, context: dict[str, Any],
         exclude: Iterable[str] = ()) -> list[str]:
    """Queue a notice to each address of the named audiences (not rate-limited: these follow confirmed acts)."""
    sent = []
    for address in audience(ctx, names, group, exclude):
        msg = compose(ctx.cfg, template, {"group": group, "rules": ctx.rules, **context}, to=[address], now=ctx.now)
        enqueue(ctx.session, msg, [address], ctx.cfg.network.bot_address, ctx.now, kind="notice",
                inbound_id=ctx.inbound_id)
        sent.append(address)
    return sent


def is_contact(ctx: Context, group: Group, address: str | None = None) -> bool:
    member = get_member(ctx.session, address or ctx.sender)
    ms = membership(ctx.session, group, member) if member else None
    return ms is not None and ms.role == Role.CONTACT.value


# ---------------------------------------------------------------------------------------------------------
# Approval requests: one token per request, sent to each approver; the first decision wins


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
    applied = APPLY_DECISION[kind](ctx, row, group, decision, reason)
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


def _decide_group(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    if group.status != GroupStatus.PENDING.value:
        return f"nothing changed: the group is {group.status}"
    if decision == "approve":
        activate(ctx, group, row.payload.get("rule", ""))
        return "the group is active and its introduction is public"
    close_group(ctx, group, f"proposal rejected by {ctx.sender}" + (f": {reason}" if reason else ""))
    return "the proposal is closed"


def _decide_join(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    if decision != "approve":
        return "the request to join was declined"
    add_member(ctx, group, row.payload["requester"], row.payload)
    return f"{row.payload['requester']} joined the group"


def _decide_keep(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    if decision == "approve":
        return "the group stays open; it needs a new contact (the secretariat can add one with 'contact')"
    close_group(ctx, group, f"closed by {ctx.sender} after its last contact left" + (f": {reason}" if reason else ""))
    return "the group is closed"


def _decide_post(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    from wgbot.lists import decide_post

    return decide_post(ctx, row, group, decision, reason)


def _decide_report(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    from wgbot.reports import decide_report

    return decide_report(ctx, row, group, decision, reason)


def _decide_organisation(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    from wgbot.organisations import decide_organisation

    return decide_organisation(ctx, row, group, decision, reason)


def _decide_invitations(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    from wgbot.invitations import decide_invitations

    return decide_invitations(ctx, row, group, decision, reason)


APPLY_DECISION = {"group": _decide_group, "join": _decide_join, "keep_group": _decide_keep, "post": _decide_post,
                  "report": _decide_report, "organisation": _decide_organisation,
                  "invitations": _decide_invitations}


# ---------------------------------------------------------------------------------------------------------
# State changes


def activate(ctx: Context, group: Group, rule: str) -> None:
    group.status = GroupStatus.ACTIVE.value
    group.activated_at = ctx.now
    audit(ctx.session, ctx.now, "wgbot", "constituted", group.slug, rule=rule)
    tell(ctx, ctx.rules.notify.constituted, group, "notices/constituted.txt",
         {"domain": ctx.cfg.network.list_domain, "contacts": contacts(ctx.session, group)})


def close_group(ctx: Context, group: Group, reason: str) -> None:
    if group.status == GroupStatus.CLOSED.value:
        return
    tell(ctx, ctx.rules.notify.closed, group, "notices/closed.txt", {"reason": reason})
    group.status = GroupStatus.CLOSED.value
    group.closed_at = ctx.now
    group.closed_reason = reason[:500]
    # Requests about a closed group can no longer be decided.
    ctx.session.execute(update(PendingAction).where(PendingAction.group_id == group.id,
                                                    PendingAction.used_at.is_(None))
                        .values(used_at=ctx.now, outcome="group closed"))
    audit(ctx.session, ctx.now, ctx.sender, "closed", group.slug, reason=reason)


def evaluate_formation(ctx: Context, group: Group) -> R.Decision:
    """Recount the supporters; on reaching the threshold constitute the group as the rules say."""
    decision = R.formation(ctx.rules, supporters(ctx.session, group))
    if not decision.ok or group.status != GroupStatus.FORMING.value:
        return decision
    status = R.constitution_status(ctx.rules)
    audit(ctx.session, ctx.now, "wgbot", "threshold-reached", group.slug, rule=decision.rule, facts=decision.reason)
    if status == GroupStatus.ACTIVE.value:
        activate(ctx, group, decision.rule)
    else:
        group.status = GroupStatus.PENDING.value
        request_approval(ctx, "group", group, group.proposer, list(ctx.cfg.network.secretariat),
                         f"formation.constituted_by={ctx.rules.formation.constituted_by}",
                         f"constitute the working group {group.name}")
    return decision


def add_member(ctx: Context, group: Group, address: str, fields: dict[str, Any], role: str = Role.MEMBER.value,
               delivery: str = Delivery.REGULAR.value) -> Membership:
    member = get_or_create_member(ctx.session, address, ctx.now)
    if fields.get("organisation"):
        member.organisation = canonical(ctx.session, fields["organisation"])
    if fields.get("country"):
        member.country = fields["country"]
    ms = membership(ctx.session, group, member)
    if ms is None:
        ms = Membership(group_id=group.id, member_id=member.id, role=role,
                        delivery=fields.get("delivery", delivery), joined_at=ctx.now)
        ctx.session.add(ms)
        ctx.session.flush()
    elif role == Role.CONTACT.value:
        ms.role = role
    return ms


def expire_proposals(ctx: Context) -> list[str]:
    """Close forming proposals older than formation.proposal_expiry_days (run by the schedule); their slugs."""
    limit = ctx.now - dt.timedelta(days=ctx.rules.formation.proposal_expiry_days)
    expired = ctx.session.scalars(select(Group).where(Group.status == GroupStatus.FORMING.value,
                                                      Group.created_at <= limit)).all()
    for group in expired:
        decision = R.formation(ctx.rules, supporters(ctx.session, group))
        close_group(ctx, group, f"the proposal expired after {ctx.rules.formation.proposal_expiry_days} days "
                                f"(formation.proposal_expiry_days): {decision.reason}")
    return [g.slug for g in expired]


# ---------------------------------------------------------------------------------------------------------
# Commands


def _addresses(value: str) -> list[str]:
    return [a.strip("<>") for a in re.split(r"[\s,;]+", value) if a.strip("<>")]


@registry.command("propose", order=70, usage="propose NAME", example="propose Migrant Inclusion",
                  summary="propose a working group; fields Organisation:, Country:, Supporters: may follow, "
                          "then the introduction text",
                  fields=("organisation", "organization", "country", "supporters"), takes_text=True, args=(1, 20))
def cmd_propose(ctx: Context, line: Line) -> Result:
    name = " ".join(" ".join(line.args).split())
    slug = slugify(name)
    from wgbot.groups import check_slug

    problem = check_slug(slug, ctx.cfg) if len(name) <= 200 else "the name is longer than 200 characters"
    if problem:
        return ctx.result("propose", False, "bad_name", value=shown(name), problem=problem)
    existing = ctx.session.scalar(select(Group).where(Group.slug == slug))
    if existing is not None:
        return ctx.result("propose", False, "exists", group=existing)
    problem = name_problem(ctx.session, name)
    if problem:
        return ctx.result("propose", False, "bad_name", value=shown(name), problem=problem)
    fields, error = _fields(ctx, "propose", line)
    if error:
        return error
    checks = [R.supporter_fields(ctx.rules, fields.get("organisation", ""), fields.get("country", ""), False),
              R.introduction(ctx.rules, line.text)]
    refused = [d for d in checks if not d.ok]
    if refused:
        return ctx.result("propose", False, "refused", decisions=refused)
    invited = _addresses(line.fields.get("supporters", ""))
    bad = [a for a in invited if not _ADDRESS.match(a)]
    if bad or len(invited) > 20:
        return ctx.result("propose", False, "bad_supporters", value=shown(", ".join(bad)) if bad else "more than 20")
    return ctx.pending("propose", "propose", None,
                       {"name": name, "introduction": line.text, "supporters": invited, **fields},
                       f"propose the working group {name}", name=name)


def _apply_propose(ctx: Context, row: PendingAction, _: Group | None) -> Result:
    p = row.payload
    slug = slugify(p["name"])
    if ctx.session.scalar(select(Group.id).where(Group.slug == slug)) is not None:
        return ctx.result("propose", False, "exists", group=ctx.session.scalar(select(Group).where(Group.slug == slug)))
    problem = name_problem(ctx.session, p["name"])
    if problem:  # a look-alike proposed and confirmed in the meantime
        return ctx.result("propose", False, "bad_name", value=shown(p["name"]), problem=problem)
    group = Group(slug=slug, name=p["name"], status=GroupStatus.FORMING.value, introduction=p.get("introduction", ""),
                  proposer=p["address"], proposal_ref=row.public_ref, created_at=ctx.now)
    ctx.session.add(group)
    ctx.session.flush()
    ms = add_member(ctx, group, p["address"], p, role=Role.CONTACT.value)
    audit(ctx.session, ctx.now, p["address"], "proposed", slug, rule=f"rules={ctx.rules.network.name}",
          ref=row.public_ref)
    unverified = check_support(ctx, group, ms, p["address"])
    decision = evaluate_formation(ctx, group)
    invited = None
    if group.status == GroupStatus.FORMING.value:
        context = {"decision": decision, "domain": ctx.cfg.network.list_domain, "ref": row.public_ref}
        tell(ctx, ctx.rules.notify.proposed, group, "notices/proposed.txt", context, exclude=[p["address"]])
        invited = invite(ctx, group, p["address"], p.get("supporters", []), context)
    return ctx.result("propose", True, "created", group=group, decision=decision, ref=row.public_ref,
                      domain=ctx.cfg.network.list_domain, unverified=unverified, invited=invited)


def _newcomer_fields(ctx: Context, name: str, group: Group, line: Line,
                     joining: bool) -> tuple[dict[str, str], Result | None]:
    """The Organisation: and Country: of someone supporting or joining `group`, or the answer to give instead:
    they belong already, a field is invalid, or the rules need fields they did not give."""
    member = get_member(ctx.session, ctx.sender)
    if member is not None and membership(ctx.session, group, member) is not None:
        return {}, ctx.result(name, True, "already", group=group)
    fields, error = _fields(ctx, name, line)
    if error:
        return {}, error
    decision = R.supporter_fields(ctx.rules, fields.get("organisation") or (member.organisation if member else ""),
                                  fields.get("country") or (member.country if member else ""), joining)
    if not decision.ok:
        return {}, ctx.result(name, False, "refused", decisions=[decision], group=group)
    return fields, None


@registry.command("support", order=80, aliases=("second",), usage="support GROUP", example="support migrant-inclusion",
                  summary="add your organisation to a proposal (fields Organisation: and Country: may follow)",
                  fields=("organisation", "organization", "country"), args=(1, 1))
def cmd_support(ctx: Context, line: Line) -> Result:
    group, _, error = ctx.group_arg("support", line)
    if error or group is None:
        return error or Result(False, "")
    if group.status != GroupStatus.FORMING.value:
        return ctx.result("support", False, "not_forming", group=group)
    fields, refusal = _newcomer_fields(ctx, "support", group, line, joining=False)
    if refusal is not None:
        return refusal
    return ctx.pending("support", "support", group, fields, f"support the proposed group {group.name}")


def _apply_support(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    if group.status != GroupStatus.FORMING.value:
        return ctx.result("support", False, "not_forming", group=group)
    ms = add_member(ctx, group, row.payload["address"], row.payload)
    audit(ctx.session, ctx.now, row.payload["address"], "supported", group.slug, ref=row.public_ref)
    unverified = check_support(ctx, group, ms, row.payload["address"])
    decision = evaluate_formation(ctx, group)
    return ctx.result("support", True, "counted", group=group, decision=decision, domain=ctx.cfg.network.list_domain,
                      unverified=unverified)


@registry.command("contact", order=90, usage="contact GROUP add|remove ADDRESS",
                  example="contact migrant-inclusion add deputy@city.example",
                  summary="a contact (or the secretariat) adds or removes one of the group's contacts", args=(3, 3))
def cmd_contact(ctx: Context, line: Line) -> Result:
    group, rest, error = ctx.group_arg("contact", line)
    if error or group is None:
        return error or Result(False, "")
    if len(rest) != 2 or rest[0].lower() not in ("add", "remove") or not _ADDRESS.match(rest[1]):
        return ctx.result("contact", False, "usage", group=group)
    if not (is_contact(ctx, group) or ctx.is_secretariat()):
        return ctx.result("contact", False, "not_allowed", group=group)
    verb, address = rest[0].lower(), rest[1]
    current = contacts(ctx.session, group)
    keys = {address_key(m.address) for m in current}
    if verb == "add" and address_key(address) in keys:
        return ctx.result("contact", True, "already", group=group, address=address)
    if verb == "remove":
        if address_key(address) not in keys:
            return ctx.result("contact", False, "not_contact", group=group, address=address)
        if len(current) - 1 < ctx.rules.contacts.minimum:
            return ctx.result("contact", False, "minimum", group=group, address=address,
                              minimum=ctx.rules.contacts.minimum)
    return ctx.pending("contact", f"contact-{verb}", group, {"target": address},
                       f"{verb} {address} as a {ctx.rules.network.contact} of {group.name}", verb=verb, address=address)


def _apply_contact(ctx: Context, row: PendingAction, group: Group | None, verb: str) -> Result:
    assert group is not None
    target = row.payload["target"]
    if verb == "add":
        add_member(ctx, group, target, {}, role=Role.CONTACT.value)
    else:
        current = contacts(ctx.session, group)
        if len(current) - 1 < ctx.rules.contacts.minimum:
            return ctx.result("contact", False, "minimum", group=group, address=target,
                              minimum=ctx.rules.contacts.minimum)
        member = get_member(ctx.session, target)
        ms = membership(ctx.session, group, member) if member else None
        if ms is not None:
            ms.role = Role.MEMBER.value
    audit(ctx.session, ctx.now, row.payload["address"], f"contact-{verb}", group.slug, rule="contacts",
          target=target, ref=row.public_ref)
    tell(ctx, ctx.rules.notify.contact_changed, group, "notices/contact_changed.txt",
         {"verb": verb, "address": target, "by": row.payload["address"]}, exclude=[row.payload["address"]])
    return ctx.result("contact", True, "done", group=group, verb=verb, address=target)


def _declare(ctx: Context, line: Line, verb: str) -> Result:
    group, _, error = ctx.group_arg(verb, line)
    if error or group is None:
        return error or Result(False, "")
    if group.status == GroupStatus.CLOSED.value:
        return ctx.result(verb, False, "closed", group=group)
    if not is_contact(ctx, group):
        return ctx.result(verb, False, "not_contact", group=group)
    return ctx.pending(verb, verb, group, {"year": ctx.now.year}, f"declare that {group.name} "
                       + ("continues next year" if verb == "continue" else "should close"))


@registry.command("continue", order=100, usage="continue GROUP", example="continue migrant-inclusion",
                  summary="a contact declares that the group continues next year", args=(1, 1))
def cmd_continue(ctx: Context, line: Line) -> Result:
    return _declare(ctx, line, "continue")


@registry.command("close", order=110, usage="close GROUP", example="close migrant-inclusion",
                  summary="a contact closes the group (its members are told)", args=(1, 1))
def cmd_close(ctx: Context, line: Line) -> Result:
    return _declare(ctx, line, "close")


def _apply_declaration(ctx: Context, row: PendingAction, group: Group | None, verb: str) -> Result:
    assert group is not None
    ctx.session.add(Declaration(group_id=group.id, year=int(row.payload.get("year", ctx.now.year)), decision=verb,
                                declared_by=row.payload["address"], declared_at=ctx.now))
    audit(ctx.session, ctx.now, row.payload["address"], f"declared-{verb}", group.slug,
          rule="reports.yearly_declaration", ref=row.public_ref)
    if verb == "close":
        close_group(ctx, group, f"closed by its {ctx.rules.network.contact} {row.payload['address']}")
    return ctx.result(verb, True, "done", group=group)


@registry.command("withdraw", order=120, usage="withdraw REF", example="withdraw R-7K2QXAB",
                  summary="cancel a pending request of yours (REF is shown in every mail about it)", args=(1, 1))
def cmd_withdraw(ctx: Context, line: Line) -> Result:
    ref = line.args[0].upper()
    key = address_key(ctx.sender)
    group = ctx.session.scalar(select(Group).where(Group.proposal_ref == ref))
    if group is not None and address_key(group.proposer) == key and group.status in (
            GroupStatus.FORMING.value, GroupStatus.PENDING.value):
        return ctx.pending("withdraw", "withdraw", group, {"ref": ref}, f"withdraw the proposal {group.name} ({ref})",
                           what=group.name)
    row = ctx.session.scalar(select(PendingAction).where(PendingAction.public_ref == ref,
                                                         PendingAction.address_key == key,
                                                         PendingAction.used_at.is_(None)))
    if row is None:
        return ctx.result("withdraw", False, "unknown", ref=shown(ref, 20))
    target = ctx.session.get(Group, row.group_id) if row.group_id else None
    return ctx.pending("withdraw", "withdraw", target, {"ref": ref}, f"withdraw your request {ref}",
                       what=row.payload.get("summary", ref))


def _apply_withdraw(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    ref = row.payload["ref"]
    key = address_key(row.payload["address"])
    if group is not None and group.proposal_ref == ref and address_key(group.proposer) == key:
        close_group(ctx, group, f"withdrawn by its proposer {row.payload['address']}")
        return ctx.result("withdraw", True, "done", ref=ref, what=group.name)
    target = ctx.session.scalar(select(PendingAction).where(PendingAction.public_ref == ref,
                                                            PendingAction.address_key == key,
                                                            PendingAction.used_at.is_(None)))
    if target is None:
        return ctx.result("withdraw", False, "unknown", ref=ref)
    if (target.action == "approval" and target.payload.get("kind") == "group" and group is not None
            and group.status in (GroupStatus.FORMING.value, GroupStatus.PENDING.value)):
        # The approval request's reference names the proposal as well as the group's own: withdrawing it
        # withdraws the proposal (else it would wait for ever for a decision nobody can take, its slug taken).
        close_group(ctx, group, f"withdrawn by its proposer {row.payload['address']} ({ref})")
        return ctx.result("withdraw", True, "done", ref=ref, what=group.name)
    target.used_at = ctx.now
    target.outcome = "withdrawn"
    audit(ctx.session, ctx.now, row.payload["address"], "withdrawn", group.slug if group else "", ref=ref)
    return ctx.result("withdraw", True, "done", ref=ref, what=target.payload.get("summary", ref))


@registry.command("approve", order=140, usage="approve TOKEN", example="approve 4f3kq2...",
                  summary="an approver approves a request (replying 'approve' to the request does the same)",
                  args=(1, 8))
def cmd_approve(ctx: Context, line: Line) -> Result:
    return decide(ctx, "".join(line.args).lower(), "approve", "")


@registry.command("reject", order=150, usage="reject TOKEN [reason]", example="reject 4f3kq2... out of scope for us",
                  summary="an approver rejects a request, with a reason for the requester", args=(1, 50))
def cmd_reject(ctx: Context, line: Line) -> Result:
    return decide(ctx, line.args[0].lower(), "reject", " ".join(line.args[1:]))


@registry.command("join", order=30, aliases=("subscribe",), usage="join GROUP [digest|nomail]",
                  example="join migrant-inclusion digest",
                  summary="join a group and its list (fields Organisation: and Country: may follow)",
                  fields=("organisation", "organization", "country"), args=(1, 2))
def cmd_join(ctx: Context, line: Line) -> Result:
    group, rest, error = ctx.group_arg("join", line)
    if error or group is None:
        return error or Result(False, "")
    delivery = rest[0].lower() if rest else Delivery.REGULAR.value
    if delivery not in {d.value for d in Delivery}:
        return ctx.result("join", False, "bad_delivery", group=group, value=shown(rest[0]))
    if group.status != GroupStatus.ACTIVE.value:
        return ctx.result("join", False, "not_active", group=group)
    fields, refusal = _newcomer_fields(ctx, "join", group, line, joining=True)
    if refusal is not None:
        return refusal
    return ctx.pending("join", "join", group, {"delivery": delivery, **fields},
                       f"join the group {group.name} ({delivery} delivery)", delivery=delivery)


def _apply_join(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    payload = row.payload
    if group.status != GroupStatus.ACTIVE.value:
        return ctx.result("confirm", False, "group_gone", ref=row.public_ref, group=group)
    requester = payload["address"]
    if ctx.rules.joining.policy == "approval" and not ctx.is_secretariat(requester):
        approvers = [m.address for m in contacts(ctx.session, group)] or list(ctx.cfg.network.secretariat)
        request = request_approval(ctx, "join", group, requester, approvers, "joining.policy=approval",
                                   f"let {requester} join {group.name}", payload)
        return ctx.result("join", True, "awaiting_approval", group=group, ref=request.public_ref)
    add_member(ctx, group, requester, payload)
    audit(ctx.session, ctx.now, requester, "join", group.slug, rule=f"joining.policy={ctx.rules.joining.policy}",
          ref=row.public_ref, delivery=payload.get("delivery", "regular"))
    member = get_member(ctx.session, requester)
    tell(ctx, ctx.rules.joining.notify, group, "notices/joined.txt", {"member": member}, exclude=[requester])
    return ctx.result("confirm", True, "joined", ref=row.public_ref, group=group,
                      delivery=payload.get("delivery", "regular"), domain=ctx.cfg.network.list_domain)


@registry.command("leave", order=40, aliases=("unsubscribe",), usage="leave GROUP", example="leave migrant-inclusion",
                  summary="leave a group and its list (a last contact adds a line Replacement: ADDRESS)",
                  fields=("replacement",), args=(1, 1))
def cmd_leave(ctx: Context, line: Line) -> Result:
    group, _, error = ctx.group_arg("leave", line)
    if error or group is None:
        return error or Result(False, "")
    member = get_member(ctx.session, ctx.sender)
    ms = membership(ctx.session, group, member) if member else None
    if ms is None:
        return ctx.result("leave", False, "not_member", group=group)
    payload: dict[str, Any] = {}
    replacement = line.fields.get("replacement", "").strip().strip("<>")
    if replacement:
        if not _ADDRESS.match(replacement) or address_key(replacement) == address_key(ctx.sender):
            return ctx.result("leave", False, "bad_replacement", group=group, value=shown(replacement))
        payload["replacement"] = replacement
    last = ms.role == Role.CONTACT.value and len(contacts(ctx.session, group)) <= ctx.rules.contacts.minimum
    if last and not replacement and group.status == GroupStatus.ACTIVE.value \
            and ctx.rules.contacts.last_leaves == "refuse":
        return ctx.result("leave", False, "last_contact", group=group)
    return ctx.pending("leave", "leave", group, payload, f"leave the group {group.name}", last=last)


def _apply_leave(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    from wgbot.leaving import leave

    outcome = leave(ctx, group, row.payload["address"], row.payload.get("replacement", ""), row.public_ref)
    if outcome == "last_contact":
        return ctx.result("leave", False, "last_contact", group=group)
    return ctx.result("confirm", True, "left" if outcome == "not_member" else outcome, ref=row.public_ref,
                      group=group)


ACTIONS.update({
    "join": _apply_join,
    "leave": _apply_leave,
    "propose": _apply_propose,
    "support": _apply_support,
    "contact-add": lambda ctx, row, g: _apply_contact(ctx, row, g, "add"),
    "contact-remove": lambda ctx, row, g: _apply_contact(ctx, row, g, "remove"),
    "continue": lambda ctx, row, g: _apply_declaration(ctx, row, g, "continue"),
    "close": lambda ctx, row, g: _apply_declaration(ctx, row, g, "close"),
    "withdraw": _apply_withdraw,
})

