"""workgroups: what no list manager does — the email commands of SPEC §3 for working groups (propose, support,
join, leave, contact, continue, close, withdraw, approve, reject), what their confirmations apply, and the
decisions on the requests they open (a join, an unverified support).

The rules decide (wgbot.rules, pure); the group facts and the state machine forming → pending → active →
closed are in wgbot.groups, requests that wait for a person in wgbot.pending, both below this module (wgbot.LAYERS).
It works in the caller's transaction, queues mail and writes the audit log; it never touches the network.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from sqlalchemy import select

from wgbot import pending
from wgbot import rules as R
from wgbot.context import Context, Line, Result, registry, shown, slugify
from wgbot.countries import country_name, normalise_country
from wgbot.groups import (
    add_member,
    check_slug,
    close_group,
    contacts,
    evaluate_formation,
    is_contact,
    tell,
)
from wgbot.invitations import invite
from wgbot.leaving import leave
from wgbot.names import name_problem
from wgbot.organisations import has_register, registered, verify
from wgbot.pending import confirmation, decide, request_approval
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
    membership,
)

_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


# ---------------------------------------------------------------------------------------------------------
# Decisions on the requests this module opens


@dataclass
class Newcomer(pending.Confirmation):
    """Someone supporting a proposal (or joining, or proposing): the organisation and country they gave."""

    organisation: str = ""
    country: str = ""


@dataclass
class JoinRequest(Newcomer):
    """A `join` waiting for confirmation, with the delivery asked for."""

    delivery: str = Delivery.REGULAR.value


@dataclass
class JoinApproval(pending.Approval):
    """A confirmed join waiting for a contact (joining.policy = approval)."""

    organisation: str = ""
    country: str = ""
    delivery: str = Delivery.REGULAR.value


@dataclass
class Proposal(Newcomer):
    """A `propose` waiting for confirmation: the group, its introduction, whom to invite."""

    name: str = ""
    introduction: str = ""
    supporters: list[str] = field(default_factory=list)   # addresses to invite


@dataclass
class OrganisationCheck(pending.Approval):
    """An unverified support waiting for the office (wgbot.organisations)."""

    member_id: int = 0


@dataclass
class ContactChange(pending.Confirmation):
    """A `contact GROUP add|remove ADDRESS` waiting for confirmation."""

    target: str = ""


@dataclass
class DeclarationRequest(pending.Confirmation):
    """A `continue` or `close` declaration waiting for confirmation, for its year."""

    year: int = 0


@dataclass
class Withdrawal(pending.Confirmation):
    """A `withdraw REF` waiting for confirmation."""

    ref: str = ""


@dataclass
class Leaving(pending.Confirmation):
    """A `leave` waiting for confirmation; a last contact names who takes over."""

    replacement: str = ""


@pending.decided("join", JoinApproval)
def _decide_join(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    if decision != "approve":
        return "the request to join was declined"
    request = pending.read(row, JoinApproval)
    add_member(ctx, group, request.requester, organisation=request.organisation, country=request.country,
               delivery=request.delivery)
    return f"{request.requester} joined the group"


# ---------------------------------------------------------------------------------------------------------
# Verifying a support against the register of organisations (wgbot.organisations)


def check_support(ctx: Context, group: Group, ms: Membership, address: str) -> str:
    """Where a register exists and the supporter's organisation is not verified by their mail domain, the
    support stops counting and the office is asked to accept it; returns why ("" when it counts)."""
    member = ctx.session.get(Member, ms.member_id)
    if member is None or not has_register(ctx.session):
        return ""
    ok, why = verify(ctx.session, address, member.organisation)
    if ok:
        org = registered(ctx.session, member.organisation)
        member.organisation = org.name if org is not None else member.organisation
        return ""
    ms.verified = False
    where = f", {country_name(member.country)}" if member.country else ""
    request_approval(ctx, "organisation", group, address, list(ctx.cfg.network.secretariat), "organisations",
                     f"count {address} as {member.organisation or '(no organisation)'}{where} in support of "
                     f"{group.name} (unverified: {why})", OrganisationCheck(member_id=member.id))
    return why


@pending.decided("organisation", OrganisationCheck)
def decide_organisation(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    """The office accepts (the support counts from now) or refuses an unverified support."""
    member_id = pending.read(row, OrganisationCheck).member_id
    ms = ctx.session.scalar(select(Membership).where(Membership.group_id == group.id,
                                                     Membership.member_id == member_id))
    if ms is None:
        return "nothing changed: the supporter has left"
    if decision != "approve":
        return "the support stays unverified and does not count"
    ms.verified = True
    ctx.session.flush()
    decision_now = evaluate_formation(ctx, group)
    return f"the support counts: {decision_now.reason}"


# ---------------------------------------------------------------------------------------------------------
# Commands


def _fields(ctx: Context, name: str, line: Line) -> tuple[dict[str, str], Result | None]:
    out: dict[str, str] = {}
    if "organisation" in line.fields or "organization" in line.fields:
        org = " ".join((line.fields.get("organisation") or line.fields.get("organization") or "").split())
        if len(org) > 200 or not org.isprintable():
            return out, ctx.result(name, False, "bad_organisation", value=shown(org))
        out["organisation"] = org
    if "country" in line.fields:
        code = normalise_country(line.fields["country"])
        if code is None:
            return out, ctx.result(name, False, "bad_country", value=shown(line.fields["country"]))
        out["country"] = code
    return out, None


def _addresses(value: str) -> list[str]:
    return [a.strip("<>") for a in re.split(r"[\s,;]+", value) if a.strip("<>")]


@registry.command("propose", order=70, usage="propose NAME", example="propose Migrant Inclusion",
                  summary="propose a working group; fields Organisation:, Country:, Supporters: may follow, "
                          "then the introduction text",
                  fields=("organisation", "organization", "country", "supporters"), takes_text=True, args=(1, 20))
def cmd_propose(ctx: Context, line: Line) -> Result:
    name = " ".join(" ".join(line.args).split())
    slug = slugify(name)
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
    return confirmation(ctx, "propose", "propose", None,
                        Proposal(name=name, introduction=line.text, supporters=invited, **fields),
                        f"propose the working group {name}", name=name)


@pending.confirmed("propose", Proposal)
def _apply_propose(ctx: Context, row: PendingAction, _: Group | None) -> Result:
    p = pending.read(row, Proposal)
    slug = slugify(p.name)
    if ctx.session.scalar(select(Group.id).where(Group.slug == slug)) is not None:
        return ctx.result("propose", False, "exists", group=ctx.session.scalar(select(Group).where(Group.slug == slug)))
    problem = name_problem(ctx.session, p.name)
    if problem:  # a look-alike proposed and confirmed in the meantime
        return ctx.result("propose", False, "bad_name", value=shown(p.name), problem=problem)
    group = Group(slug=slug, name=p.name, status=GroupStatus.FORMING.value, introduction=p.introduction,
                  proposer=p.address, proposal_ref=row.public_ref, created_at=ctx.now)
    ctx.session.add(group)
    ctx.session.flush()
    ms = add_member(ctx, group, p.address, organisation=p.organisation, country=p.country, role=Role.CONTACT.value)
    audit(ctx.session, ctx.now, p.address, "proposed", slug, rule=f"rules={ctx.rules.network.name}",
          ref=row.public_ref)
    unverified = check_support(ctx, group, ms, p.address)
    decision = evaluate_formation(ctx, group)
    invited = None
    if group.status == GroupStatus.FORMING.value:
        context = {"decision": decision, "domain": ctx.cfg.network.list_domain, "ref": row.public_ref}
        tell(ctx, ctx.rules.notify.proposed, group, "notices/proposed.txt", context, exclude=[p.address])
        invited = invite(ctx, group, p.address, p.supporters, context)
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
    group = ctx.group_in("support", line, GroupStatus.FORMING.value, "not_forming")
    if isinstance(group, Result):
        return group
    fields, refusal = _newcomer_fields(ctx, "support", group, line, joining=False)
    if refusal is not None:
        return refusal
    return confirmation(ctx, "support", "support", group, Newcomer(**fields),
                        f"support the proposed group {group.name}")


@pending.confirmed("support", Newcomer)
def _apply_support(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    if group.status != GroupStatus.FORMING.value:
        return ctx.result("support", False, "not_forming", group=group)
    who = pending.read(row, Newcomer)
    ms = add_member(ctx, group, who.address, organisation=who.organisation, country=who.country)
    audit(ctx.session, ctx.now, who.address, "supported", group.slug, ref=row.public_ref)
    unverified = check_support(ctx, group, ms, who.address)
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
    return confirmation(ctx, "contact", f"contact-{verb}", group, ContactChange(target=address),
                        f"{verb} {address} as a {ctx.rules.network.contact} of {group.name}", verb=verb,
                        address=address)


def _apply_contact(ctx: Context, row: PendingAction, group: Group | None, verb: str) -> Result:
    assert group is not None
    change = pending.read(row, ContactChange)
    target = change.target
    if verb == "add":
        add_member(ctx, group, target, role=Role.CONTACT.value)
    else:
        current = contacts(ctx.session, group)
        if len(current) - 1 < ctx.rules.contacts.minimum:
            return ctx.result("contact", False, "minimum", group=group, address=target,
                              minimum=ctx.rules.contacts.minimum)
        member = get_member(ctx.session, target)
        ms = membership(ctx.session, group, member) if member else None
        if ms is not None:
            ms.role = Role.MEMBER.value
    audit(ctx.session, ctx.now, change.address, f"contact-{verb}", group.slug, rule="contacts",
          target=target, ref=row.public_ref)
    tell(ctx, ctx.rules.notify.contact_changed, group, "notices/contact_changed.txt",
         {"verb": verb, "address": target, "by": change.address}, exclude=[change.address])
    return ctx.result("contact", True, "done", group=group, verb=verb, address=target)


def _declare(ctx: Context, line: Line, verb: str) -> Result:
    group, _, error = ctx.group_arg(verb, line)
    if error or group is None:
        return error or Result(False, "")
    if group.status == GroupStatus.CLOSED.value:
        return ctx.result(verb, False, "closed", group=group)
    if not is_contact(ctx, group):
        return ctx.result(verb, False, "not_contact", group=group)
    return confirmation(ctx, verb, verb, group, DeclarationRequest(year=ctx.now.year), f"declare that {group.name} "
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
    request = pending.read(row, DeclarationRequest)
    ctx.session.add(Declaration(group_id=group.id, year=request.year or ctx.now.year, decision=verb,
                                declared_by=request.address, declared_at=ctx.now))
    audit(ctx.session, ctx.now, request.address, f"declared-{verb}", group.slug,
          rule="reports.yearly_declaration", ref=row.public_ref)
    if verb == "close":
        close_group(ctx, group, f"closed by its {ctx.rules.network.contact} {request.address}")
    return ctx.result(verb, True, "done", group=group)


@registry.command("withdraw", order=120, usage="withdraw REF", example="withdraw R-7K2QXAB",
                  summary="cancel a pending request of yours (REF is shown in every mail about it)", args=(1, 1))
def cmd_withdraw(ctx: Context, line: Line) -> Result:
    ref = line.args[0].upper()
    key = address_key(ctx.sender)
    group = ctx.session.scalar(select(Group).where(Group.proposal_ref == ref))
    if group is not None and address_key(group.proposer) == key and group.status in (
            GroupStatus.FORMING.value, GroupStatus.PENDING.value):
        return confirmation(ctx, "withdraw", "withdraw", group, Withdrawal(ref=ref),
                            f"withdraw the proposal {group.name} ({ref})", what=group.name)
    row = ctx.session.scalar(select(PendingAction).where(PendingAction.public_ref == ref,
                                                         PendingAction.address_key == key,
                                                         PendingAction.used_at.is_(None)))
    if row is None:
        return ctx.result("withdraw", False, "unknown", ref=shown(ref, 20))
    target = ctx.session.get(Group, row.group_id) if row.group_id else None
    return confirmation(ctx, "withdraw", "withdraw", target, Withdrawal(ref=ref), f"withdraw your request {ref}",
                        what=_summary(row, ref))


def _summary(row: PendingAction, default: str) -> str:
    """What a request is about, in the words its mails use (an approval's summary), else `default`."""
    return (pending.read(row, pending.Approval).summary or default) if row.action == "approval" else default


@pending.confirmed("withdraw", Withdrawal)
def _apply_withdraw(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    withdrawal = pending.read(row, Withdrawal)
    ref, address = withdrawal.ref, withdrawal.address
    key = address_key(address)
    if group is not None and group.proposal_ref == ref and address_key(group.proposer) == key:
        close_group(ctx, group, f"withdrawn by its proposer {address}")
        return ctx.result("withdraw", True, "done", ref=ref, what=group.name)
    target = ctx.session.scalar(select(PendingAction).where(PendingAction.public_ref == ref,
                                                            PendingAction.address_key == key,
                                                            PendingAction.used_at.is_(None)))
    if target is None:
        return ctx.result("withdraw", False, "unknown", ref=ref)
    if (target.action == "approval" and pending.read(target, pending.Approval).kind == "group" and group is not None
            and group.status in (GroupStatus.FORMING.value, GroupStatus.PENDING.value)):
        # The approval request's reference names the proposal as well as the group's own: withdrawing it
        # withdraws the proposal (else it would wait for ever for a decision nobody can take, its slug taken).
        close_group(ctx, group, f"withdrawn by its proposer {address} ({ref})")
        return ctx.result("withdraw", True, "done", ref=ref, what=group.name)
    target.used_at = ctx.now
    target.outcome = "withdrawn"
    audit(ctx.session, ctx.now, address, "withdrawn", group.slug if group else "", ref=ref)
    return ctx.result("withdraw", True, "done", ref=ref, what=_summary(target, ref))


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
    return confirmation(ctx, "join", "join", group, JoinRequest(delivery=delivery, **fields),
                        f"join the group {group.name} ({delivery} delivery)", delivery=delivery)


@pending.confirmed("join", JoinRequest)
def _apply_join(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    join = pending.read(row, JoinRequest)
    if group.status != GroupStatus.ACTIVE.value:
        return ctx.result("confirm", False, "group_gone", ref=row.public_ref, group=group)
    requester = join.address
    if ctx.rules.joining.policy == "approval" and not ctx.is_secretariat(requester):
        approvers = [m.address for m in contacts(ctx.session, group)] or list(ctx.cfg.network.secretariat)
        request = request_approval(ctx, "join", group, requester, approvers, "joining.policy=approval",
                                   f"let {requester} join {group.name}",
                                   JoinApproval(organisation=join.organisation, country=join.country,
                                                delivery=join.delivery))
        return ctx.result("join", True, "awaiting_approval", group=group, ref=request.public_ref)
    add_member(ctx, group, requester, organisation=join.organisation, country=join.country, delivery=join.delivery)
    audit(ctx.session, ctx.now, requester, "join", group.slug, rule=f"joining.policy={ctx.rules.joining.policy}",
          ref=row.public_ref, delivery=join.delivery)
    member = get_member(ctx.session, requester)
    tell(ctx, ctx.rules.joining.notify, group, "notices/joined.txt", {"member": member}, exclude=[requester])
    return ctx.result("confirm", True, "joined", ref=row.public_ref, group=group,
                      delivery=join.delivery, domain=ctx.cfg.network.list_domain)


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
    replacement = line.fields.get("replacement", "").strip().strip("<>")
    if replacement and (not _ADDRESS.match(replacement) or address_key(replacement) == address_key(ctx.sender)):
        return ctx.result("leave", False, "bad_replacement", group=group, value=shown(replacement))
    last = ms.role == Role.CONTACT.value and len(contacts(ctx.session, group)) <= ctx.rules.contacts.minimum
    if last and not replacement and group.status == GroupStatus.ACTIVE.value \
            and ctx.rules.contacts.last_leaves == "refuse":
        return ctx.result("leave", False, "last_contact", group=group)
    return confirmation(ctx, "leave", "leave", group, Leaving(replacement=replacement),
                        f"leave the group {group.name}", last=last)


@pending.confirmed("leave", Leaving)
def _apply_leave(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    leaving = pending.read(row, Leaving)
    outcome = leave(ctx, group, leaving.address, leaving.replacement, row.public_ref)
    if outcome == "last_contact":
        return ctx.result("leave", False, "last_contact", group=group)
    return ctx.result("confirm", True, "left" if outcome == "not_member" else outcome, ref=row.public_ref,
                      group=group)


pending.confirmed("contact-add", ContactChange)(functools.partial(_apply_contact, verb="add"))
pending.confirmed("contact-remove", ContactChange)(functools.partial(_apply_contact, verb="remove"))
pending.confirmed("continue", DeclarationRequest)(functools.partial(_apply_declaration, verb="continue"))
pending.confirmed("close", DeclarationRequest)(functools.partial(_apply_declaration, verb="close"))
