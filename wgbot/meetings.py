"""meetings: a group's meetings (SPEC §3 `meeting`, `attend`/`maybe`/`decline`, `minutes`). A contact calls,
moves or cancels a meeting (confirmed like every state change); each member gets an invitation of their own that
calendars understand (wgbot.ical); answers come by email or as a calendar's iTIP REPLY and are counted; the
schedule sends reminders; the minutes go to the list and the archive.

Like every feature it works inside the caller's transaction and only queues mail; it never touches the network.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import secrets
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from wgbot import ical, pending
from wgbot.config import offset_minutes
from wgbot.context import Context, Line, Result, claim, new_public_ref, registry, shown
from wgbot.groups import contact_group, document_problem, is_contact
from wgbot.lists import bounce_address, distribute, list_address, list_headers
from wgbot.organisations import spellings, spelt
from wgbot.parse import clean_header_text, parse, split_head
from wgbot.pending import confirmation
from wgbot.render import day
from wgbot.store import (
    Delivery,
    Group,
    GroupStatus,
    InboundMessage,
    InboundStatus,
    Meeting,
    MeetingAnswer,
    Member,
    Membership,
    PendingAction,
    Post,
    Role,
    address_key,
    audit,
    get_member,
    membership,
    secret_key,
)

ANSWERS = ("attend", "maybe", "decline")
MIN_NOTICE = dt.timedelta(hours=1)      # a meeting starts at least this long after it is called or moved
KINDS = {"call": "meeting", "move": "meeting-move", "cancel": "meeting-cancel", "minutes": "minutes"}
_REF = re.compile(r"^M-[A-Z2-9]{7}$", re.I)


@dataclass
class MeetingRequest(pending.Confirmation):
    """What a confirmation of `meeting` (call, move, cancel) or `minutes` applies: the pending payload
    (`address`, the requester, comes from pending.Confirmation)."""

    op: str = ""                     # call, move, cancel, minutes
    meeting_id: int | None = None
    starts_at: str = ""              # ISO 8601 with its offset
    zone: str = ""
    minutes_long: int = 0
    location: str = ""
    text: str = ""                   # the agenda, or the minutes' text
    inbound_id: int | None = None    # minutes: the message with the text and attachments


def _start(request: MeetingRequest) -> dt.datetime:
    """The requested start, in the requested zone (CET rather than UTC+01:00)."""
    return dt.datetime.fromisoformat(request.starts_at).astimezone(ical.zone(request.zone))


# ---------------------------------------------------------------------------------------------------------
# Facts


def starts(meeting: Meeting) -> dt.datetime:
    """The start in the meeting's own zone."""
    return meeting.starts_at.astimezone(ical.zone(meeting.timezone))


def ends_at(meeting: Meeting) -> dt.datetime:
    return meeting.starts_at + dt.timedelta(minutes=meeting.minutes_long)


def when(moment: dt.datetime) -> str:
    """`27 March 2027 at 14:00 CET`, in the zone `moment` carries."""
    return f"{day(moment.date())} at {moment:%H:%M} {moment.tzname() or ''}".strip()


def where(meeting: Meeting) -> str:
    """The place, or "online" for a link (the link itself goes to members only)."""
    return "online" if ical.link(meeting.location) else meeting.location


def next_meeting(session: Session, group: Group, now: dt.datetime) -> Meeting | None:
    """The group's next meeting that has not started and is not cancelled."""
    return session.scalar(select(Meeting).where(Meeting.group_id == group.id, Meeting.status == "scheduled",
                                                Meeting.starts_at > now).order_by(Meeting.starts_at).limit(1))


def last_meeting(session: Session, group: Group, now: dt.datetime) -> Meeting | None:
    """The group's latest meeting that has started (the one whose minutes are due)."""
    return session.scalar(select(Meeting).where(Meeting.group_id == group.id, Meeting.status == "scheduled",
                                                Meeting.starts_at <= now).order_by(Meeting.starts_at.desc()).limit(1))


@dataclass
class Tally:
    """The answers to a meeting: counts, and who answered what by organisation (for contacts)."""

    counts: dict[str, int]
    by_answer: dict[str, list[tuple[str, list[str]]]]     # answer → [(organisation, ["Name <address>", ...])]
    organisations: dict[str, list[str]]                   # answer → organisations

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def tally(session: Session, meeting: Meeting) -> Tally:
    rows = session.execute(select(MeetingAnswer.answer, MeetingAnswer.address, Member.name, Member.organisation)
                           .outerjoin(Member, Member.address_key == MeetingAnswer.address_key)
                           .where(MeetingAnswer.meeting_id == meeting.id).order_by(MeetingAnswer.address_key)).all()
    table = spellings(session)
    people: dict[str, dict[str, list[str]]] = {a: {} for a in ANSWERS}
    for answer, address, name, org in rows:
        who = f"{name} <{address}>" if name else address
        people.setdefault(answer, {}).setdefault(spelt(table, org or "") or "(no organisation given)", []).append(who)
    return Tally({a: sum(len(v) for v in people[a].values()) for a in ANSWERS},
                 {a: sorted(people[a].items()) for a in ANSWERS}, {a: sorted(people[a]) for a in ANSWERS})


def record(session: Session, meeting: Meeting, address: str, answer: str, via: str, now: dt.datetime) -> None:
    """Keep one answer per person and meeting: a later answer replaces the earlier one."""
    row = session.scalar(select(MeetingAnswer).where(MeetingAnswer.meeting_id == meeting.id,
                                                     MeetingAnswer.address_key == address_key(address)))
    if row is None:
        session.add(MeetingAnswer(meeting_id=meeting.id, address_key=address_key(address), address=address,
                                  answer=answer, via=via, answered_at=now))
    else:
        row.answer, row.via, row.answered_at, row.address = answer, via, now, address
    session.flush()


# ---------------------------------------------------------------------------------------------------------
# Mail to the members: one message each (nobody sees the others' addresses)


def _recipients(session: Session, group: Group) -> list[tuple[str, str, bool]]:
    """(address, name, is a contact) of every member who gets mail: regular and digest delivery, not nomail."""
    rows = session.execute(select(Member.address, Member.name, Membership.role).join(Membership)
                           .where(Membership.group_id == group.id, Membership.delivery != Delivery.NOMAIL.value)
                           .order_by(Membership.id)).all()
    return [(a, n or "", r == Role.CONTACT.value) for a, n, r in rows]


def _headers(ctx: Context, group: Group) -> dict[str, str]:
    """The list's own RFC 2369/2919 headers (wgbot.lists) that an invitation carries: its List-Id, where to get
    help and how to leave (not List-Post: answers go to the request address)."""
    wanted = ("List-Id", "List-Help")
    headers = {name: str(value) for name, value in list_headers(ctx.cfg, group) if name in wanted}
    return {**headers, "List-Unsubscribe": f"<mailto:{group.slug}-leave@{ctx.cfg.network.list_domain}>"}


def send_to_members(ctx: Context, group: Group, meeting: Meeting, template: str, method: str = "",
                    context: dict[str, Any] | None = None) -> int:
    """Queue `template` for each member who gets mail, From the list (the ORGANIZER), Reply-To SLUG-request@ (where
    a plain `attend` means this meeting), from the list's VERP return path; with `method`, a calendar beside it."""
    cfg = ctx.cfg
    key = secret_key(ctx.session) if cfg.lists.personalize else b""
    organizer = list_address(cfg, group)
    facts = facts_of(ctx, group, meeting)
    sent = 0
    for address, name, contact in _recipients(ctx.session, group):
        finish = None
        if method:
            event = ical.Event(uid=meeting.uid, sequence=meeting.sequence, method=method,
                               starts_at=meeting.starts_at, minutes=meeting.minutes_long, zone=meeting.timezone,
                               summary=f"{group.name} meeting", location=meeting.location,
                               description=_description(ctx, group, meeting), organizer=organizer,
                               organizer_name=group.name, attendee=address, attendee_name=name, stamp=ctx.now,
                               prodid=f"-//wgbot//{cfg.network.name}//EN")
            finish = functools.partial(ical.with_calendar, ics=ical.calendar(event), method=method)
        envelope = bounce_address(cfg, group, address, key) if cfg.lists.personalize else bounce_address(cfg, group)
        ctx.mail(template, {**facts, **(context or {}), "address": address, "contact": contact}, address,
                 kind="meeting", sender=Address(display_name=clean_header_text(group.name, 100), addr_spec=organizer),
                 reply_to=facts["request_address"], extra_headers=_headers(ctx, group), envelope_from=envelope,
                 finish=finish)
        sent += 1
    return sent


def _description(ctx: Context, group: Group, meeting: Meeting) -> str:
    answer = f"{group.slug}-request@{ctx.cfg.network.list_domain}"
    text = meeting.agenda.strip()
    return (text + "\n\n" if text else "") + (f"Answer with your calendar, or by mail to {answer}: attend, maybe "
                                              f"or decline. Reference: {meeting.public_ref}")


def facts_of(ctx: Context, group: Group, meeting: Meeting) -> dict[str, Any]:
    """What every mail about a meeting may say."""
    return {"group": group, "meeting": meeting, "when": when(starts(meeting)),
            "until": f"{ends_at(meeting).astimezone(ical.zone(meeting.timezone)):%H:%M}",
            "link": ical.link(meeting.location),
            "request_address": f"{group.slug}-request@{ctx.cfg.network.list_domain}"}


# ---------------------------------------------------------------------------------------------------------
# The commands


@registry.command("meeting", order=88, usage="meeting GROUP [status|move|cancel]",
                  example="meeting migrant-inclusion\n    When: 2027-01-12 14:00\n    Where: Town Hall, Bologna\n"
                          "    (the agenda, after the fields)",
                  summary="a contact calls a meeting (fields When:, Duration:, Where:, then the agenda); members get "
                          "a calendar invitation. 'meeting GROUP status' shows the answers; 'move' (with a new "
                          "When:) and 'cancel' change the next meeting",
                  fields=("when", "duration", "where"), takes_text=True, args=(1, 3))
def cmd_meeting(ctx: Context, line: Line) -> Result:
    group, rest, error = ctx.group_arg("meeting", line)
    if error or group is None:
        return error or Result(False, "")
    op = rest[0].lower() if rest else "call"
    ref = rest[1] if len(rest) > 1 else ""
    if op not in ("call", "status", "move", "cancel") or (op == "call" and rest) or (ref and not _REF.match(ref)):
        return ctx.result("meeting", False, "usage", group=group)
    if op == "status":
        return meeting_status(ctx, group, ref)
    if group.status != GroupStatus.ACTIVE.value:
        return ctx.result("meeting", False, "not_active", group=group)
    if not is_contact(ctx, group):
        return ctx.result("meeting", False, "not_contact", group=group)
    if op == "call":
        return _ask_call(ctx, group, line)
    meeting = _target(ctx, group, ref)
    if meeting is None:
        return ctx.result("meeting", False, "no_meeting", group=group, ref=shown(ref))
    if op == "cancel":
        request = MeetingRequest(op="cancel", meeting_id=meeting.id)
        what = f"cancel the {group.name} meeting of {when(starts(meeting))}"
        return confirmation(ctx, "meeting", KINDS["cancel"], group, request, what, what=what)
    return _ask_move(ctx, group, meeting, line)


def _target(ctx: Context, group: Group, ref: str) -> Meeting | None:
    """The meeting a move or cancel is about: the one named by its reference, else the next one."""
    if ref:
        return ctx.session.scalar(select(Meeting).where(Meeting.public_ref == ref.upper(), Meeting.group_id == group.id,
                                                        Meeting.status == "scheduled", Meeting.starts_at > ctx.now))
    return next_meeting(ctx.session, group, ctx.now)


def _read_time(ctx: Context, group: Group, line: Line, default_minutes: int) -> tuple[MeetingRequest | None, Result]:
    """When:, Duration: and Where: read and checked; a request with them, or the answer saying what is wrong."""
    text = line.fields.get("when", "")
    if not text:
        return None, ctx.result("meeting", False, "missing_when", group=group, example=ical.WHEN_EXAMPLE)
    try:
        start, zone_name = ical.parse_when(text, ctx.cfg.network.timezone)
        minutes = ical.parse_duration(line.fields.get("duration", ""), default_minutes)
    except ical.WhenError as exc:
        return None, ctx.result("meeting", False, "bad_when", group=group, value=shown(text), reason=str(exc),
                                formats=ical.WHEN_FORMATS, example=ical.WHEN_EXAMPLE)
    problem = _too_early(start, ctx.now)
    if problem:
        return None, ctx.result("meeting", False, problem, group=group, when=when(start),
                                now_text=when(ctx.now.astimezone(start.tzinfo)))
    location = clean_header_text(line.fields.get("where", ""), 500)
    request = MeetingRequest(op="call", starts_at=start.isoformat(), zone=zone_name, minutes_long=minutes,
                             location=location, text=line.text[:20_000])
    return request, Result(True, "")


def _too_early(start: dt.datetime, now: dt.datetime) -> str:
    if start <= now:
        return "past"
    if start < now + MIN_NOTICE:
        return "too_soon"
    return ""


def _ask_call(ctx: Context, group: Group, line: Line) -> Result:
    request, answer = _read_time(ctx, group, line, ctx.cfg.meetings.default_minutes)
    if request is None:
        return answer
    if not request.location:
        return ctx.result("meeting", False, "missing_where", group=group, example=ical.WHEN_EXAMPLE)
    what = f"call a meeting of {group.name} on {when(_start(request))}"
    return confirmation(ctx, "meeting", KINDS["call"], group, request, what, what=what)


def _ask_move(ctx: Context, group: Group, meeting: Meeting, line: Line) -> Result:
    request, answer = _read_time(ctx, group, line, meeting.minutes_long)
    if request is None:
        return answer
    request = dataclasses.replace(request, op="move", meeting_id=meeting.id, text="",
                                  location=request.location or meeting.location)
    what = f"move the {group.name} meeting of {when(starts(meeting))} to {when(_start(request))}"
    return confirmation(ctx, "meeting", KINDS["move"], group, request, what, what=what)


def meeting_status(ctx: Context, group: Group, ref: str) -> Result:
    """Who comes: names and addresses by organisation for contacts and the secretariat, counts and organisations
    for members; nothing for anyone else."""
    member = get_member(ctx.session, ctx.sender)
    ms = membership(ctx.session, group, member) if member else None
    privileged = ctx.is_secretariat() or (ms is not None and ms.role == Role.CONTACT.value)
    if ms is None and not privileged:
        return ctx.result("meeting", False, "status_refused", group=group)
    by_ref = select(Meeting).where(Meeting.public_ref == ref.upper(), Meeting.group_id == group.id)
    meeting = ctx.session.scalar(by_ref) if ref else next_meeting(ctx.session, group, ctx.now)
    if meeting is None:
        return ctx.result("meeting", False, "no_meeting", group=group, ref=shown(ref))
    result = ctx.result("meeting", True, "status", **facts_of(ctx, group, meeting), tally=tally(ctx.session, meeting),
                        privileged=privileged, invitees=len(_recipients(ctx.session, group)))
    return dataclasses.replace(result, private=privileged)


def _answer(ctx: Context, line: Line, answer: str) -> Result:
    """attend / maybe / decline: recorded at once (no confirmation: it changes nothing but the count)."""
    meeting: Meeting | None = None
    if line.args and _REF.match(line.args[0]):
        meeting = ctx.session.scalar(select(Meeting).where(Meeting.public_ref == line.args[0].upper()))
        group = ctx.session.get(Group, meeting.group_id) if meeting is not None else None
        if meeting is None or group is None:
            return ctx.result(answer, False, "no_such_meeting", ref=shown(line.args[0]))
    else:
        group, _, error = ctx.group_arg(answer, line)
        if error or group is None:
            return error or Result(False, "")
        meeting = next_meeting(ctx.session, group, ctx.now)
        if meeting is None:
            return ctx.result(answer, False, "no_meeting", group=group)
    member = get_member(ctx.session, ctx.sender)
    if member is None or membership(ctx.session, group, member) is None:
        return ctx.result(answer, False, "not_member", group=group)
    if meeting.status != "scheduled" or meeting.starts_at <= ctx.now:
        return ctx.result(answer, False, "closed", **facts_of(ctx, group, meeting))
    record(ctx.session, meeting, ctx.sender, answer, "email", ctx.now)
    return ctx.result(answer, True, "recorded", **facts_of(ctx, group, meeting), tally=tally(ctx.session, meeting))


_ANSWER_HELP = "(in a reply to the invitation, the group may be left out; REF: the meeting's reference)"


@registry.command("attend", order=91, usage="attend [GROUP|REF]", example="attend migrant-inclusion",
                  summary=f"you will come to the group's next meeting {_ANSWER_HELP}", args=(0, 1))
def cmd_attend(ctx: Context, line: Line) -> Result:
    return _answer(ctx, line, "attend")


@registry.command("maybe", order=92, usage="maybe [GROUP|REF]", example="maybe M-7K2QXAB",
                  summary=f"you may come to the group's next meeting {_ANSWER_HELP}", args=(0, 1))
def cmd_maybe(ctx: Context, line: Line) -> Result:
    return _answer(ctx, line, "maybe")


@registry.command("decline", order=93, usage="decline [GROUP|REF]", example="decline migrant-inclusion",
                  summary=f"you will not come to the group's next meeting {_ANSWER_HELP}", args=(0, 1))
def cmd_decline(ctx: Context, line: Line) -> Result:
    return _answer(ctx, line, "decline")


@registry.command("minutes", order=94, usage="minutes GROUP", example="minutes migrant-inclusion",
                  summary="a contact sends the minutes of the last meeting: the message's text and attachments go "
                          "to the list, the archive and the group's page", takes_text=True, args=(1, 1))
def cmd_minutes(ctx: Context, line: Line) -> Result:
    group, refused = contact_group(ctx, "minutes", line)
    meeting = last_meeting(ctx.session, group, ctx.now) if group is not None else None
    if group is None or meeting is None:
        return refused or ctx.result("minutes", False, "no_meeting", group=group)
    problem = document_problem(ctx, "minutes", group, line)
    if problem is not None:
        return problem
    request = MeetingRequest(op="minutes", meeting_id=meeting.id, inbound_id=ctx.inbound_id,
                             text=line.text[:50_000])
    what = f"send the minutes of the {group.name} meeting of {when(starts(meeting))} to its list"
    return confirmation(ctx, "minutes", KINDS["minutes"], group, request, what, what=what)


# ---------------------------------------------------------------------------------------------------------
# Confirmed


@pending.confirmed(KINDS["call"], MeetingRequest)
@pending.confirmed(KINDS["move"], MeetingRequest)
@pending.confirmed(KINDS["cancel"], MeetingRequest)
@pending.confirmed(KINDS["minutes"], MeetingRequest)
def apply_meeting(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    """A confirmed call, move, cancel or minutes; checked again, as time has passed since it was asked."""
    request = pending.read(row, MeetingRequest)
    name = "minutes" if request.op == "minutes" else "meeting"
    assert group is not None
    if group.status != GroupStatus.ACTIVE.value:
        return ctx.result(name, False, "not_active", group=group)
    if not is_contact(ctx, group, request.address):
        return ctx.result(name, False, "not_contact", group=group)
    if request.op == "call":
        return _call(ctx, group, request)
    meeting = ctx.session.get(Meeting, request.meeting_id)
    if meeting is None or meeting.group_id != group.id or meeting.status != "scheduled":
        return ctx.result(name, False, "no_meeting", group=group, ref=row.public_ref)
    if request.op == "minutes":
        return _minutes(ctx, group, meeting, request)
    if meeting.starts_at <= ctx.now:
        return ctx.result(name, False, "started", **facts_of(ctx, group, meeting))
    if request.op == "cancel":
        return _cancel(ctx, group, meeting, request)
    return _move(ctx, group, meeting, request)


def _call(ctx: Context, group: Group, request: MeetingRequest) -> Result:
    start = _start(request)
    problem = _too_early(start, ctx.now)
    if problem:
        return ctx.result("meeting", False, problem, group=group, when=when(start),
                          now_text=when(ctx.now.astimezone(start.tzinfo)))
    meeting = Meeting(group_id=group.id, uid=f"meeting-{secrets.token_hex(12)}", public_ref="M-" + new_public_ref()[2:],
                      sequence=0, status="scheduled", starts_at=start.astimezone(dt.UTC),
                      minutes_long=request.minutes_long, timezone=request.zone, location=request.location,
                      agenda=request.text, called_by=request.address, created_at=ctx.now, updated_at=ctx.now)
    ctx.session.add(meeting)
    ctx.session.flush()
    # RFC 5545 §3.8.4.7: globally unique; the id and a random part, at our domain.
    meeting.uid = f"meeting-{meeting.id}-{secrets.token_hex(6)}@{ctx.cfg.network.list_domain}"
    count = send_to_members(ctx, group, meeting, "meetings/invitation.txt", "REQUEST")
    audit(ctx.session, ctx.now, request.address, "meeting-called", group.slug, ref=meeting.public_ref,
          starts_at=meeting.starts_at.isoformat(), invited=count)
    return ctx.result("meeting", True, "called", **facts_of(ctx, group, meeting), count=count)


def _move(ctx: Context, group: Group, meeting: Meeting, request: MeetingRequest) -> Result:
    start = _start(request)
    problem = _too_early(start, ctx.now)
    if problem:
        return ctx.result("meeting", False, problem, group=group, when=when(start),
                          now_text=when(ctx.now.astimezone(start.tzinfo)))
    before = when(starts(meeting))
    meeting.starts_at = start.astimezone(dt.UTC)
    meeting.timezone = request.zone
    meeting.minutes_long = request.minutes_long
    meeting.location = request.location
    meeting.sequence += 1           # RFC 5546 §2.1.4: the same UID with a higher SEQUENCE replaces the event
    meeting.updated_at = ctx.now
    count = send_to_members(ctx, group, meeting, "meetings/moved.txt", "REQUEST", {"before": before})
    audit(ctx.session, ctx.now, request.address, "meeting-moved", group.slug, ref=meeting.public_ref,
          starts_at=meeting.starts_at.isoformat(), sequence=meeting.sequence)
    return ctx.result("meeting", True, "moved", **facts_of(ctx, group, meeting), count=count, before=before)


def _cancel(ctx: Context, group: Group, meeting: Meeting, request: MeetingRequest) -> Result:
    meeting.status = "cancelled"
    meeting.sequence += 1
    meeting.updated_at = ctx.now
    count = send_to_members(ctx, group, meeting, "meetings/cancelled.txt", "CANCEL")
    audit(ctx.session, ctx.now, request.address, "meeting-cancelled", group.slug, ref=meeting.public_ref)
    return ctx.result("meeting", True, "cancelled", **facts_of(ctx, group, meeting), count=count)


_HEADER = re.compile(rb"(?im)^(subject|message-id)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*\r?\n")


def _minutes(ctx: Context, group: Group, meeting: Meeting, request: MeetingRequest) -> Result:
    """The minutes go to the list like a post (archive, digests) under a Subject that names the meeting and a
    Message-ID of ours; the message's bytes are kept, so its attachments go too."""
    inbound = ctx.session.get(InboundMessage, request.inbound_id) if request.inbound_id else None
    if inbound is None:
        return ctx.result("minutes", False, "gone", group=group)
    subject = f"Minutes of the {group.name} meeting of {day(starts(meeting).date())}"
    message_id = f"<minutes.{meeting.id}.{secrets.token_hex(8)}@{ctx.cfg.network.list_domain}>"
    head, body = split_head(inbound.raw)
    head = _HEADER.sub(b"", head.rstrip(b"\r\n") + b"\r\n")
    value = subject if subject.isascii() else Header(subject, "utf-8").encode()
    raw = f"Subject: {value}\r\nMessage-ID: {message_id}\r\n".encode() + head + b"\r\n" + body
    count = distribute(ctx, group, raw, parse(raw), ctx.inbound_id)
    post = ctx.session.scalar(select(Post.id).where(Post.group_id == group.id, Post.message_id == message_id))
    meeting.minutes_post_id = post
    meeting.minutes_text = request.text
    meeting.minutes_at = ctx.now
    audit(ctx.session, ctx.now, request.address, "meeting-minutes", group.slug, ref=meeting.public_ref,
          recipients=count)
    return ctx.result("minutes", True, "sent", **facts_of(ctx, group, meeting), count=count)


# ---------------------------------------------------------------------------------------------------------
# A calendar's answer (iTIP REPLY, RFC 5546 §3.2.3), from wgbot.inbox


def receive_reply(ctx: Context, reply: ical.CalendarReply) -> tuple[InboundStatus, str]:
    """Count the PARTSTAT of the ATTENDEE who is the sender; anything else is kept as handled, never posted and
    never answered (a calendar's reply is machine-made, like an auto-reply)."""
    meeting = ctx.session.scalar(select(Meeting).where(Meeting.uid == reply.uid))
    if meeting is None:
        return InboundStatus.DONE, f"calendar reply for an unknown meeting ({clean_header_text(reply.uid, 80)})"
    mine = [partstat for address, partstat in reply.attendees if address_key(address) == address_key(ctx.sender)]
    answer = ical.PARTSTATS.get(mine[0]) if mine else None
    if answer is None:
        why = f"PARTSTAT {clean_header_text(mine[0], 20)}" if mine else "no ATTENDEE is the sender"
        return InboundStatus.DONE, f"calendar reply to {meeting.public_ref} not counted: {why}"
    group = ctx.session.get(Group, meeting.group_id)
    member = get_member(ctx.session, ctx.sender)
    if group is None or member is None or membership(ctx.session, group, member) is None:
        return InboundStatus.DONE, f"calendar reply to {meeting.public_ref} not counted: not a member"
    if meeting.status != "scheduled" or meeting.starts_at <= ctx.now:
        return InboundStatus.DONE, f"calendar reply to {meeting.public_ref} not counted: {meeting.status} or past"
    record(ctx.session, meeting, ctx.sender, answer, "calendar", ctx.now)
    return InboundStatus.DONE, f"calendar reply: {answer} for {meeting.public_ref}"


# ---------------------------------------------------------------------------------------------------------
# The schedule: reminders, and the roll-up's facts


def reminder_offsets(ctx: Context) -> list[tuple[str, dt.timedelta]]:
    """[meetings] remind_before as (label, how long before the start); config validated them at start-up."""
    return [(text.replace(" ", ""), dt.timedelta(minutes=offset_minutes(text) or 0))
            for text in ctx.cfg.meetings.remind_before]


def in_words(delta: dt.timedelta) -> str:
    """"tomorrow", "in 1 hour", "in 30 minutes": how far a reminder's offset is."""
    minutes = int(delta.total_seconds() // 60)
    if minutes == 1440:
        return "tomorrow"
    for size, unit in ((1440, "day"), (60, "hour")):
        if minutes % size == 0:
            return f"in {minutes // size} {unit}{'s' if minutes != size else ''}"
    return f"in {minutes} minutes"


def job_reminders(ctx: Context) -> int:
    """[meetings] remind_before: each reminder once per meeting and SEQUENCE (a moved meeting gets new ones),
    only the nearest when a tick was missed, none for a cancelled meeting or a time before it was called."""
    offsets = reminder_offsets(ctx)
    if not offsets:
        return 0
    horizon = ctx.now + max(delta for _, delta in offsets)
    due = ctx.session.scalars(select(Meeting).where(Meeting.status == "scheduled", Meeting.starts_at > ctx.now,
                                                    Meeting.starts_at <= horizon).order_by(Meeting.starts_at)).all()
    sent = 0
    for meeting in due:
        eligible = [(label, delta) for label, delta in offsets
                    if meeting.starts_at - delta <= ctx.now and meeting.starts_at - delta >= meeting.updated_at]
        if not eligible:
            continue
        keys = {label: f"meeting-reminder:{meeting.id}:{meeting.sequence}:{label}" for label, _ in eligible}
        fresh = {label: claim(ctx.session, key, ctx.now) for label, key in keys.items()}
        nearest = min(eligible, key=lambda pair: pair[1])[0]
        group = ctx.session.get(Group, meeting.group_id)
        if fresh[nearest] and group is not None and group.status == GroupStatus.ACTIVE.value:
            sent += send_to_members(ctx, group, meeting, "meetings/reminder.txt",
                                    context={"tally": tally(ctx.session, meeting),
                                             "soon": in_words(dict(eligible)[nearest])})
    return sent


def rollup_facts(ctx: Context) -> dict[str, Any]:
    """For the secretariat's weekly roll-up: meetings of the coming week, and minutes still missing a week after
    a meeting (meetings of the last 90 days)."""
    week = dt.timedelta(days=7)
    coming = ctx.session.execute(select(Meeting, Group).join(Group, Group.id == Meeting.group_id).where(
        Meeting.status == "scheduled", Meeting.starts_at > ctx.now, Meeting.starts_at <= ctx.now + week)
        .order_by(Meeting.starts_at)).all()
    missing = ctx.session.execute(select(Meeting, Group).join(Group, Group.id == Meeting.group_id).where(
        Meeting.status == "scheduled", Meeting.minutes_at.is_(None), Meeting.starts_at <= ctx.now - week,
        Meeting.starts_at > ctx.now - dt.timedelta(days=90)).order_by(Meeting.starts_at)).all()
    return {"meetings_coming": [(g, m, when(starts(m))) for m, g in coming],
            "minutes_missing": [(g, m, when(starts(m))) for m, g in missing]}
