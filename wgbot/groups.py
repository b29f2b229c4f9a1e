"""groups: creating groups and reading them for the operator's command line (`group create`, `groups`,
`members`). The email commands about groups live in commands.py; this module never sends mail.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wgbot.commands import slugify
from wgbot.config import Config
from wgbot.countries import normalise_country
from wgbot.errors import UsageError
from wgbot.organisations import canonical, spellings, spelt
from wgbot.route import RESERVED_LOCALS, SUFFIXES
from wgbot.store import Delivery, Group, GroupStatus, Member, Membership, Role, audit, get_or_create_member


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
    from wgbot.names import name_problem

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
