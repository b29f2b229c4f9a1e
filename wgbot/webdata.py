"""webdata: what the public pages show, read from the store (the one source of truth the mail also reads).

It sits in the top layer beside wgbot.web (which renders what this returns) and reads through the lower
modules: rules for formation and deadlines, reports for obligations, archive for posts. It never writes, never
sends mail, and never returns an address in full: contacts appear by organisation and role, mail goes to
SLUG-owner@ and the bot.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wgbot import rules as R
from wgbot.archive import is_public, mask
from wgbot.config import Config
from wgbot.countries import country_name
from wgbot.meetings import ends_at, starts, when, where
from wgbot.reports import Obligation, obligations
from wgbot.store import ArchivedPost, Group, GroupStatus, Meeting, Member, Membership, Report, Role

LISTED = (GroupStatus.ACTIVE.value, GroupStatus.FORMING.value, GroupStatus.PENDING.value)


@dataclass
class GroupView:
    """One group as the directory and its own page show it."""

    group: Group
    countries: list[tuple[str, list[str]]] = field(default_factory=list)   # (country name, organisations)
    contacts: list[str] = field(default_factory=list)                      # "City of Bologna (Italia)"
    members: int = 0
    lacking: str = ""                  # for a forming group: what the rules still need
    join_mailto: str = ""
    owner: str = ""
    deadlines: list[Obligation] = field(default_factory=list)
    public_archive: bool = True

    @property
    def next_deadline(self) -> Obligation | None:
        return self.deadlines[0] if self.deadlines else None


def mailto(address: str, subject: str, body: str = "") -> str:
    """A mailto: URI (RFC 6068) with the subject and body percent-encoded, lines ending in CRLF."""
    query = {"subject": subject}
    if body:
        query["body"] = body.replace("\n", "\r\n")
    return f"mailto:{address}?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)


def join_command(rules: R.Rules, group: Group) -> tuple[str, str]:
    """(subject, body) of the mail that joins an active group, or supports a forming one, with the fields the
    rules ask for ready to fill in."""
    forming = group.status != GroupStatus.ACTIVE.value
    verb = "support" if forming else "join"
    needed = rules.formation.organisation_required if forming else rules.joining.organisation_required
    body = f"{verb} {group.slug}\n"
    if needed:
        body += f"Organisation: (your {rules.network.organisation})\nCountry: (your country)\n"
    return verb, body


def _people(session: Session, ids: list[int]) -> dict[int, list[tuple[str, str, str]]]:
    rows = session.execute(select(Membership.group_id, Membership.role, Member.organisation, Member.country)
                           .join(Member).where(Membership.group_id.in_(ids)).order_by(Membership.id)).all()
    out: dict[int, list[tuple[str, str, str]]] = {}
    for gid, role, org, country in rows:
        out.setdefault(gid, []).append((role, org, country))
    return out


def _fill(view: GroupView, people: list[tuple[str, str, str]], cfg: Config, rules: R.Rules,
          deadlines: list[Obligation]) -> None:
    by_country: dict[str, dict[str, None]] = {}
    for role, org, country in people:
        if org:
            by_country.setdefault(country_name(country) if country else "", {})[org] = None
        if role == Role.CONTACT.value:
            where = f" ({country_name(country)})" if country else ""
            view.contacts.append(f"{org}{where}" if org else f"a {rules.network.contact}")
    view.countries = sorted(((c or "—", list(orgs)) for c, orgs in by_country.items()), key=lambda x: x[0])
    view.members = len(people)
    g = view.group
    if g.status == GroupStatus.FORMING.value:
        decision = R.formation(rules, [R.Supporter(org, country, f"#{i}") for i, (_, org, country)
                                       in enumerate(people)])
        view.lacking = "" if decision.ok else decision.reason
    subject, body = join_command(rules, g)
    view.join_mailto = mailto(cfg.network.bot_address, subject, body)
    view.owner = f"{g.slug}-owner@{cfg.network.list_domain}"
    if g.status == GroupStatus.ACTIVE.value:
        view.deadlines = deadlines
    view.public_archive = is_public(g, cfg.web.archives)


def group_views(session: Session, cfg: Config, rules: R.Rules, today: dt.date,
                slug: str | None = None) -> list[GroupView]:
    """The listed groups (active, forming, awaiting approval) in name order, or the one named `slug`."""
    query = select(Group).where(Group.status.in_(LISTED)).order_by(Group.name)
    if slug is not None:
        query = select(Group).where(Group.slug == slug, Group.status != GroupStatus.CLOSED.value)
    groups = list(session.scalars(query))
    people = _people(session, [g.id for g in groups])
    deadlines = sorted(obligations(rules, cfg.schedule.general_assembly, today), key=lambda o: o.deadline)
    views = []
    for g in groups:
        view = GroupView(g)
        _fill(view, people.get(g.id, []), cfg, rules, deadlines)
        views.append(view)
    return views


def reports(session: Session, group: Group) -> list[Report]:
    """A group's approved reports and draft outputs, newest first (pending and rejected ones are not public)."""
    return list(session.scalars(select(Report).where(Report.group_id == group.id, Report.status == "approved")
                                .order_by(Report.id.desc())))


def days_left(report: Report, now: dt.datetime) -> int | None:
    """Days left in the report's public comment period, or None when none is open."""
    if report.comments_until is None or report.comments_until <= now:
        return None
    return max(1, (report.comments_until - now).days + (1 if (report.comments_until - now).seconds else 0))


def months(session: Session, group: Group) -> list[tuple[str, int]]:
    """(YYYY-MM, posts) of a group's archive, newest month first."""
    return [(m, n) for m, n in session.execute(
        select(ArchivedPost.month, func.count()).where(ArchivedPost.group_id == group.id)
        .group_by(ArchivedPost.month).order_by(ArchivedPost.month.desc())).all()]


# What a list of posts shows: never the bodies, which are most of an archive's bytes; plain rows, not ORM objects,
# so that a month of thousands of posts stays small in memory.
LISTED_COLUMNS = (ArchivedPost.id, ArchivedPost.parent_id, ArchivedPost.subject, ArchivedPost.author,
                  ArchivedPost.posted_at, ArchivedPost.group_id)


def month_posts(session: Session, group: Group, month: str) -> list[Any]:
    return list(session.execute(select(*LISTED_COLUMNS).where(ArchivedPost.group_id == group.id,
                                                               ArchivedPost.month == month)))


def thread_of(session: Session, post: ArchivedPost) -> list[Any]:
    return list(session.execute(select(*LISTED_COLUMNS).where(
        ArchivedPost.thread_id == post.thread_id, ArchivedPost.group_id == post.group_id).limit(500)))


class GroupRef(NamedTuple):
    id: int
    slug: str
    name: str
    public: bool


def archive_groups(session: Session, cfg: Config) -> dict[int, GroupRef]:
    """Every group (closed ones keep their archive) with whether its archive is published, in name order."""
    rows = session.execute(select(Group.id, Group.slug, Group.name, Group.archive).order_by(Group.name)).all()
    return {i: GroupRef(i, slug, name, (archive or cfg.web.archives) == "public") for i, slug, name, archive in rows}


def calendar_events(session: Session, cfg: Config, rules: R.Rules, now: dt.datetime) -> list[dict[str, Any]]:
    """Every coming deadline of every active group, and every open comment period, as plain facts."""
    events: list[dict[str, Any]] = []
    for view in group_views(session, cfg, rules, now.date()):
        for ob in view.deadlines:
            events.append({"uid": f"{view.group.slug}-{ob.kind.replace(' ', '-')}-{ob.deadline}",
                           "summary": f"{view.group.name}: {ob.kind} due", "start": ob.deadline,
                           "end": ob.deadline + dt.timedelta(days=1), "slug": view.group.slug})
    open_periods = session.execute(select(Report, Group).join(Group).where(
        Report.status == "approved", Report.comments_until.is_not(None), Report.comments_until > now)).all()
    for report, group in open_periods:
        events.append({"uid": f"{group.slug}-comments-{report.id}",
                       "summary": f"{group.name}: public comments on the {report.kind}",
                       "start": (report.decided_at or report.submitted_at), "end": report.comments_until,
                       "slug": group.slug,
                       "description": f"Send comments to {group.slug}-comments@{cfg.network.list_domain}"})
    return events + meeting_events(session, cfg, now)


@dataclass
class MeetingView:
    """A meeting as a group's page shows it: the place, or "online" (the link goes to members only)."""

    starts_at: dt.datetime
    when: str
    where: str
    ref: str
    minutes: int | None          # the archived post of its minutes


def meetings(session: Session, group: Group, now: dt.datetime) -> tuple[list[MeetingView], list[MeetingView]]:
    """(the coming meetings, the past ten with their minutes' archive page) of a group; cancelled ones are gone."""
    rows = session.execute(select(Meeting, ArchivedPost.id).outerjoin(
        ArchivedPost, ArchivedPost.post_id == Meeting.minutes_post_id).where(
        Meeting.group_id == group.id, Meeting.status == "scheduled").order_by(Meeting.starts_at)).all()
    views = [(m.starts_at > now, MeetingView(m.starts_at, when(starts(m)), where(m), m.public_ref, archived))
             for m, archived in rows]
    return [v for coming, v in views if coming][:3], [v for coming, v in reversed(views) if not coming][:10]


def meeting_events(session: Session, cfg: Config, now: dt.datetime) -> list[dict[str, Any]]:
    """Every active group's meetings of the past year and to come, with the same UID as the invitations; the
    agenda, then the minutes, as the description where the group's archive is public."""
    rows = session.execute(select(Meeting, Group).join(Group, Group.id == Meeting.group_id).where(
        Group.status == GroupStatus.ACTIVE.value, Meeting.status == "scheduled",
        Meeting.starts_at > now - dt.timedelta(days=365)).order_by(Meeting.starts_at)).all()
    events: list[dict[str, Any]] = []
    for meeting, group in rows:
        text = (meeting.minutes_text or meeting.agenda) if is_public(group, cfg.web.archives) else ""
        events.append({"uid": meeting.uid, "summary": f"{group.name} meeting", "start": meeting.starts_at,
                       "end": ends_at(meeting), "slug": group.slug, "location": mask(where(meeting)),
                       "description": mask(text)})
    return events
