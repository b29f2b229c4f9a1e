"""groups: facts about a group and its members (contacts, supporters, the audiences of SPEC §4) and the changes
every feature makes to them (constitute, close, add a member, recount the formation rule), applied in the
caller's transaction; and the operator's `group create`, `groups` and `members`. It sits under the features
(wgbot.LAYERS) and imports none of them; the email commands about groups are in workgroups.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from wgbot import pending
from wgbot import rules as R
from wgbot.config import Config
from wgbot.context import Context, Line, Result, claim, local, slugify
from wgbot.countries import normalise_country
from wgbot.errors import UsageError
from wgbot.names import name_problem
from wgbot.organisations import canonical, spellings, spelt
from wgbot.pending import request_approval
from wgbot.route import RESERVED_LOCALS, SUFFIXES
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
)


def check_slug(slug: str, cfg: Config) -> str | None:
    """Why `slug` cannot name a group, or None."""
    if not slug:
        return "the name must contain letters or digits"
    if slug == cfg.bot_local or slug.startswith(cfg.bot_local + "+") or slug in RESERVED_LOCALS:
        return f"{slug!r} is reserved"
    for suffix in SUFFIXES:
        if slug.endswith(suffix):
            return f"a group's short name may not end in {suffix!r}"
    return None


def create_group(session: Session, cfg: Config, name: str, *, contact: str, organisation: str = "",
                 country: str = "", introduction: str = "", now: dt.datetime,
                 status: str = GroupStatus.ACTIVE.value, actor: str = "operator") -> Group:
    """An active group with `contact` as its first contact (SPEC §8 `wgbot group create`)."""
    name = " ".join(name.split())
    if not name or len(name) > 200 or not name.isprintable():
        raise UsageError("a group's name must be 1 to 200 printable characters")
    slug = slugify(name)
    problem = check_slug(slug, cfg)
    if problem:
        raise UsageError(f"cannot use the name {name!r}: {problem}")
    if session.scalar(select(Group.id).where(Group.slug == slug)) is not None:
        raise UsageError(f"a group with the short name {slug!r} exists already")
    problem = name_problem(session, name)
    if problem:
        raise UsageError(f"cannot use the name {name!r}: {problem}")
    code = ""
    if country:
        found = normalise_country(country)
        if found is None:
            raise UsageError(f"{country!r} is not a country (give a code such as IT or a name such as Italy)")
        code = found
    if "@" not in contact or len(contact) > 254 or any(c.isspace() for c in contact):
        raise UsageError(f"{contact!r} is not an email address")
    group = Group(slug=slug, name=name, status=status, introduction=introduction, created_at=now)
    session.add(group)
    member = get_or_create_member(session, contact, now)
    if organisation:
        member.organisation = canonical(session, organisation)
    if code:
        member.country = code
    session.flush()
    session.add(Membership(group_id=group.id, member_id=member.id, role=Role.CONTACT.value,
                           delivery=Delivery.REGULAR.value, joined_at=now))
    audit(session, now, actor, "group-create", slug, name=name, contact=contact)
    return group


def list_groups(session: Session) -> list[dict[str, Any]]:
    """The groups for `wgbot groups --json` (SPEC §8), in three queries whatever their number."""
    groups = session.scalars(select(Group).order_by(Group.slug)).all()
    counts = dict(session.execute(select(Membership.group_id, func.count()).group_by(Membership.group_id)).all())
    rows = session.execute(select(Membership.group_id, Membership.role, Member.address, Member.organisation,
                                  Member.country).join(Member).order_by(Membership.id)).all()
    contacts: dict[int, list[str]] = {}
    orgs: dict[int, dict[str, None]] = {}
    countries: dict[int, dict[str, None]] = {}
    table = spellings(session)
    for gid, role, address, org, country in rows:
        if role == Role.CONTACT.value:
            contacts.setdefault(gid, []).append(address)
        if org:
            orgs.setdefault(gid, {})[spelt(table, org)] = None
        if country:
            countries.setdefault(gid, {})[country] = None
    return [{"slug": g.slug, "name": g.name, "status": g.status, "contacts": contacts.get(g.id, []),
             "organisations": sorted(orgs.get(g.id, {})), "countries": sorted(countries.get(g.id, {})),
             "members": counts.get(g.id, 0)} for g in groups]


def list_members(session: Session, group: Group) -> list[dict[str, Any]]:
    """A group's members for `wgbot members GROUP --json`, contacts first."""
    rows = session.execute(select(Member.address, Member.name, Member.organisation, Member.country, Membership.role,
                                  Membership.delivery).join(Membership).where(Membership.group_id == group.id)
                           .order_by(Membership.role, Membership.id)).all()
    table = spellings(session)
    return [{"address": a, "name": n, "organisation": spelt(table, o), "country": c, "role": r, "delivery": d}
            for a, n, o, c, r, d in rows]


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
        ctx.mail(template, {"group": group, **context}, address)
        sent.append(address)
    return sent


def contact_group(ctx: Context, name: str, line: Line) -> tuple[Group | None, Result | None]:
    """The active group a command names, when the sender is one of its contacts (`report`, `minutes`); else the
    answer of command `name` that says why not."""
    group = ctx.group_in(name, line, GroupStatus.ACTIVE.value, "not_active")
    if isinstance(group, Result):
        return None, group
    if not is_contact(ctx, group):
        return None, ctx.result(name, False, "not_contact", group=group)
    return group, None


def document_problem(ctx: Context, name: str, group: Group, line: Line, /, **context: Any) -> Result | None:
    """Why the message is no document a contact can submit (a report, minutes): it has neither text nor
    attachments, or is over [lists] max_post_bytes; None when it will do."""
    if not line.text.strip() and ctx.msg.size < 400:
        return ctx.result(name, False, "empty", group=group, **context)
    if ctx.msg.size > ctx.cfg.lists.max_post_bytes:
        return ctx.result(name, False, "too_big", group=group, size=ctx.msg.size, limit=ctx.cfg.lists.max_post_bytes)
    return None


def is_contact(ctx: Context, group: Group, address: str | None = None) -> bool:
    member = get_member(ctx.session, address or ctx.sender)
    ms = membership(ctx.session, group, member) if member else None
    return ms is not None and ms.role == Role.CONTACT.value


# ---------------------------------------------------------------------------------------------------------
# Changes


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


def add_member(ctx: Context, group: Group, address: str, *, organisation: str = "", country: str = "",
               role: str = Role.MEMBER.value, delivery: str = "") -> Membership:
    """Make `address` a member of `group` (a contact with `role`), recording the organisation and country given."""
    member = get_or_create_member(ctx.session, address, ctx.now)
    if organisation:
        member.organisation = canonical(ctx.session, organisation)
    if country:
        member.country = country
    ms = membership(ctx.session, group, member)
    if ms is None:
        ms = Membership(group_id=group.id, member_id=member.id, role=role,
                        delivery=delivery or Delivery.REGULAR.value, joined_at=ctx.now)
        ctx.session.add(ms)
        ctx.session.flush()
    elif role == Role.CONTACT.value:
        ms.role = role
    return ms


def active_groups(session: Session) -> list[Group]:
    return list(session.scalars(select(Group).where(Group.status == GroupStatus.ACTIVE.value).order_by(Group.id)))


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


@pending.decided("group")
def _decide_group(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    if group.status != GroupStatus.PENDING.value:
        return f"nothing changed: the group is {group.status}"
    if decision == "approve":
        activate(ctx, group, pending.read(row, pending.Approval).rule)
        return "the group is active and its introduction is public"
    close_group(ctx, group, f"proposal rejected by {ctx.sender}" + (f": {reason}" if reason else ""))
    return "the proposal is closed"


@pending.expires("group")
def _expire_group(ctx: Context, row: PendingAction, group: Group | None) -> int:
    """A proposal the secretariat never decided on closes with its request."""
    done = pending.expired(ctx, row, group)
    if group is not None and group.status == GroupStatus.PENDING.value:
        close_group(ctx, group, f"the proposal expired without a decision ({row.public_ref})")
    return done


# ---------------------------------------------------------------------------------------------------------
# Jobs (run by wgbot.schedule)


def job_declarations(ctx: Context) -> int:
    """After the General Assembly, groups that never declared continue or close are closed, where the rules
    say so (reports.close_without_declaration)."""
    ga = ctx.cfg.schedule.general_assembly
    if not ga or not ctx.rules.reports.yearly_declaration or not ctx.rules.reports.close_without_declaration:
        return 0
    assembly = dt.date.fromisoformat(ga)
    if local(ctx.cfg, ctx.now).date() <= assembly:
        return 0
    closed = 0
    for group in active_groups(ctx.session):
        declared = ctx.session.scalar(select(Declaration.id).where(Declaration.group_id == group.id,
                                                                   Declaration.year == assembly.year))
        if declared is None and claim(ctx.session, f"undeclared:{group.slug}:{assembly.year}", ctx.now):
            close_group(ctx, group, f"no continue/close declaration before the General Assembly of {assembly} "
                                    "(reports.close_without_declaration)")
            closed += 1
    return closed


def job_expiries(ctx: Context) -> int:
    """Pending confirmations and approvals remind and expire (wgbot.pending.sweep); proposals that never
    reached their threshold expire too."""
    return pending.sweep(ctx) + len(expire_proposals(ctx))
