"""Meetings (issue 14): invitations that calendars take, answers by mail and by the iTIP REPLY of Outlook, Google
Calendar, Thunderbird and Apple (fixtures in tests/data/calendar/), moves and cancellations with the same UID,
`meeting GROUP status`, and clear answers to bad input. Mail goes through the real inbox on SQLite; the calendars
are read back with the icalendar library."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import NOW, add_members, body_of, confirm, feed, last_reply, mail, make_group, queued
from wgbot import ical
from wgbot.config import Config
from wgbot.store import InboundMessage, Meeting, MeetingAnswer, Member, OutboxEntry, OutgoingMessage, Post

S = sessionmaker[Session]
SLUG = "migrant-inclusion"
CHAIR = "chair@city.example"
CALENDARS = Path(__file__).resolve().parents[1] / "data" / "calendar"
FIXTURE_UID = "meeting-1-5f2a9c3e7b10@lists.example.org"
CLIENTS = {  # fixture: (the member who answers, what it counts as)
    "outlook-accepted.eml": ("bob@contoso.example", "attend"),
    "google-accepted.eml": ("carol.rossi@gmail.example", "attend"),
    "thunderbird-declined.eml": ("dirk@example.net", "decline"),
    "thunderbird-tentative-single.eml": ("fatima@city.example", "maybe"),
    "apple-tentative.eml": ("eva@icloud.example", "maybe"),
}


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    return make_config(tmp_path, limits={"replies_per_day": 1000})


@pytest.fixture
def group(sqlite_sessions: S, cfg: Config) -> str:
    """Migrant Inclusion: the chair (a contact), five regular members, one digest and one nomail member."""
    slug = make_group(sqlite_sessions, cfg)
    add_members(sqlite_sessions, slug, {**{who: "regular" for who, _ in CLIENTS.values()},
                                        "dana@example.org": "digest", "nora@example.org": "nomail"})
    return slug


def call(sessions: S, cfg: Config, when: str = "2027-03-27 14:00", where: str = "Town Hall, Bologna",
         agenda: str = "1. The budget\n2. The spring conference", sender: str = CHAIR, msgid: str = "<call@x>",
         now: dt.datetime = NOW, extra: str = "") -> str:
    """A contact's `meeting` command, confirmed when it asks for confirmation; the results as text."""
    body = f"meeting {SLUG}\nWhen: {when}\nWhere: {where}\n{extra}\n{agenda}\n"
    feed(sessions, cfg, mail(body, sender=sender, msgid=msgid), now=now)
    answer = last_reply(sessions)
    if "confirmation request" in answer:
        confirm(sessions, cfg, sender, now=now)
        answer = last_reply(sessions)
    return answer


def invitations(sessions: S) -> dict[str, EmailMessage]:
    return {to: msg for to, msg in queued(sessions, "meeting")}


def calendar_of(msg: EmailMessage) -> icalendar.Calendar:
    (part,) = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    return icalendar.Calendar.from_ical(part.get_content())


def event_of(msg: EmailMessage) -> icalendar.Event:
    (event,) = calendar_of(msg).walk("VEVENT")
    return event


def the_meeting(sessions: S) -> Meeting:
    with sessions() as session:
        return session.scalars(select(Meeting).order_by(Meeting.id.desc())).first()  # type: ignore[return-value]


def answers(sessions: S) -> dict[str, tuple[str, str]]:
    with sessions() as session:
        return {a.address_key: (a.answer, a.via) for a in session.scalars(select(MeetingAnswer))}


# ---------------------------------------------------------------------------------------------------------
# Reading When: and Duration:


@pytest.mark.parametrize("text, expected", [
    ("2027-01-12 14:00", "2027-01-12T14:00:00+01:00"),
    ("2027-01-12T14:00", "2027-01-12T14:00:00+01:00"),
    ("12 January 2027 14:00", "2027-01-12T14:00:00+01:00"),
    ("12 Jan 2027 2pm", "2027-01-12T14:00:00+01:00"),
    ("Tuesday 12 January 2027 at 2.30 pm", "2027-01-12T14:30:00+01:00"),
    ("January 12, 2027 14:00", "2027-01-12T14:00:00+01:00"),
    ("2027-01-12 14:00 Europe/Lisbon", "2027-01-12T14:00:00+00:00"),
    ("2027-07-12 14:00 Europe/Lisbon", "2027-07-12T14:00:00+01:00"),
    ("2027-01-12 14:00 +03:00", "2027-01-12T14:00:00+03:00"),
    ("2027-01-12 14:00 UTC", "2027-01-12T14:00:00+00:00"),
])
def test_when_formats(text: str, expected: str) -> None:
    """Every documented way of writing When: gives the same moment, in the network's zone unless one is given."""
    moment, _ = ical.parse_when(text, "Europe/Brussels")
    assert moment.isoformat() == expected


@pytest.mark.parametrize("text, why", [
    ("next tuesday", "not a date and time we can read"),
    ("2027-02-30 14:00", "does not exist"),
    ("2027-01-12 14", "no minutes"),
    ("12 Smarch 2027 14:00", "not a month"),
    ("2027-03-28 02:30", "does not exist on 2027-03-28 in Europe/Brussels"),
    ("2027-01-12 14:00 Mars/Olympus", "not a time zone we know"),
])
def test_when_errors_say_why(text: str, why: str) -> None:
    """An unreadable When: is refused with the reason (a date that does not exist, a time the clocks skip)."""
    with pytest.raises(ical.WhenError, match=why):
        ical.parse_when(text, "Europe/Brussels")


def test_durations() -> None:
    """Duration: as minutes, hours, or both; none gives the default; absurd lengths are refused."""
    assert [ical.parse_duration(t, 90) for t in ("", "45", "90 minutes", "1h30", "1:30", "2 hours", "1.5 h")] == [
        90, 45, 90, 90, 90, 120, 90]
    for bad in ("forever", "2 days", "0"):
        with pytest.raises(ical.WhenError):
            ical.parse_duration(bad, 90)


# ---------------------------------------------------------------------------------------------------------
# Invitations


def test_invitations_across_a_daylight_saving_change(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """Two meetings at 14:00 Brussels time on each side of the 2027 change to summer time are 13:00Z and 12:00Z
    once parsed back with icalendar, each with its VTIMEZONE, METHOD:REQUEST and SEQUENCE 0."""
    assert "Meeting M-" in call(sqlite_sessions, cfg, "2027-03-27 14:00")
    first = invitations(sqlite_sessions)
    assert "Meeting M-" in call(sqlite_sessions, cfg, "2027-03-29 14:00", msgid="<call2@x>")
    second = {to: m for to, m in invitations(sqlite_sessions).items() if m["Message-ID"] != first[to]["Message-ID"]}
    for msgs, utc in ((first, dt.datetime(2027, 3, 27, 13, 0, tzinfo=dt.UTC)),
                      (second, dt.datetime(2027, 3, 29, 12, 0, tzinfo=dt.UTC))):
        cal = calendar_of(msgs["bob@contoso.example"])
        assert str(cal["METHOD"]) == "REQUEST" and cal.walk("VTIMEZONE")
        event = event_of(msgs["bob@contoso.example"])
        assert event.decoded("dtstart").astimezone(dt.UTC) == utc
        assert event.decoded("dtend") - event.decoded("dtstart") == dt.timedelta(minutes=90)
        assert event["dtstart"].params["TZID"] == "Europe/Brussels" and int(event["sequence"]) == 0
    assert event_of(first["bob@contoso.example"])["uid"] != event_of(second["bob@contoso.example"])["uid"]


def test_each_member_is_invited_alone(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """One message per member: its only ATTENDEE is that member (RSVP, NEEDS-ACTION), the ORGANIZER is the list
    with the group's name, the calendar is text/calendar; method=REQUEST beside text/plain, the message comes
    from the list's VERP return path with Reply-To SLUG-request@; digest members get it at once, nomail none."""
    call(sqlite_sessions, cfg, agenda="1. The budget")
    sent = invitations(sqlite_sessions)
    assert set(sent) == {CHAIR, "dana@example.org", *(who for who, _ in CLIENTS.values())}
    uids = set()
    for to, msg in sent.items():
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/calendar"]
        part = list(msg.iter_parts())[1]
        assert part.get_param("method") == "REQUEST" and part.get_content_charset() == "utf-8"
        event = event_of(msg)
        attendees = event.get("attendee")
        assert not isinstance(attendees, list) and str(attendees) == f"mailto:{to}"
        assert attendees.params["PARTSTAT"] == "NEEDS-ACTION" and attendees.params["RSVP"] == "TRUE"
        assert str(event["organizer"]) == f"mailto:{SLUG}@lists.example.org"
        assert event["organizer"].params["CN"] == "Migrant Inclusion"
        assert str(event["location"]) == "Town Hall, Bologna" and "1. The budget" in str(event["description"])
        assert str(msg["Reply-To"]) == f"{SLUG}-request@lists.example.org"
        assert f"{SLUG}@lists.example.org" in str(msg["From"]) and msg["List-Id"]
        assert "attend, maybe or decline" in " ".join(body_of(msg).split())
        uids.add(str(event["uid"]))
    assert len(uids) == 1 and uids.pop().endswith("@lists.example.org")
    with sqlite_sessions() as session:
        (envelope,) = session.scalars(select(OutboxEntry.envelope_from).join(OutgoingMessage).where(
            OutboxEntry.recipient == CHAIR, OutgoingMessage.kind == "meeting"))
    assert envelope.startswith(f"{SLUG}-bounces+chair=city.example=")


def test_an_online_meeting_has_a_url(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """Where: a link is the event's LOCATION and URL."""
    call(sqlite_sessions, cfg, where="https://meet.example.org/mi-42")
    event = event_of(invitations(sqlite_sessions)[CHAIR])
    assert str(event["url"]) == str(event["location"]) == "https://meet.example.org/mi-42"


def test_a_given_zone_is_kept(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """`When: ... Europe/Lisbon` is written with that zone; an offset is written in UTC."""
    call(sqlite_sessions, cfg, "2027-03-27 14:00 Europe/Lisbon")
    event = event_of(invitations(sqlite_sessions)[CHAIR])
    assert event["dtstart"].params["TZID"] == "Europe/Lisbon"
    assert event.decoded("dtstart").astimezone(dt.UTC) == dt.datetime(2027, 3, 27, 14, 0, tzinfo=dt.UTC)
    call(sqlite_sessions, cfg, "2027-03-28 14:00 +03:00", msgid="<call2@x>")
    event = event_of(queued(sqlite_sessions, "meeting")[-1][1])
    assert event.decoded("dtstart") == dt.datetime(2027, 3, 28, 11, 0, tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------------------
# Answers


def reply_from(sessions: S, cfg: Config, name: str, to: str = f"{SLUG}@lists.example.org") -> list[object]:
    return feed(sessions, cfg, (CALENDARS / name).read_bytes(), to=to, now=NOW)


def with_fixture_uid(sessions: S) -> None:
    """The fixtures answer the UID they were written for: give it to the meeting."""
    with sessions.begin() as session:
        session.execute(update(Meeting).values(uid=FIXTURE_UID))


def test_calendar_replies_of_the_major_clients_are_counted(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """Outlook (multipart/alternative, base64, VTIMEZONE), Google (Auto-Submitted, an alternative and invite.ics),
    Thunderbird (multipart/mixed, and text/calendar as the only part) and Apple (application/ics, quoted-printable)
    REPLYs to the list address are counted, never posted and never answered."""
    call(sqlite_sessions, cfg)
    with_fixture_uid(sqlite_sessions)
    before = len(queued(sqlite_sessions))
    for name, (who, answer) in CLIENTS.items():
        (outcome,) = reply_from(sqlite_sessions, cfg, name)
        assert outcome is not None and outcome.outcome.startswith(f"calendar reply: {answer}"), (name, outcome)
        assert answers(sqlite_sessions)[who] == (answer, "calendar")
    assert len(queued(sqlite_sessions)) == before
    with sqlite_sessions() as session:
        assert session.scalars(select(Post)).all() == []
    # Sent to the request or the command address instead (a client that answers Reply-To), it counts the same.
    raw = (CALENDARS / "apple-tentative.eml").read_bytes().replace(b"RTSTAT=3DTENTATIVE", b"RTSTAT=3DACCEPTED")
    for n, to in enumerate((f"{SLUG}-request@lists.example.org", "wgbot@lists.example.org")):
        (outcome,) = feed(sqlite_sessions, cfg, raw.replace(b"Message-Id: <C0FFEE12", f"Message-Id: <{n}".encode()),
                          to=to)
        assert outcome is not None and outcome.outcome.startswith("calendar reply: attend")
    assert answers(sqlite_sessions)["eva@icloud.example"] == ("attend", "calendar")
    assert len(queued(sqlite_sessions)) == before


def test_reprocessing_a_reply_changes_nothing(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """The same REPLY delivered twice is stored once and counted once (dedupe by Message-ID and body)."""
    call(sqlite_sessions, cfg)
    with_fixture_uid(sqlite_sessions)
    reply_from(sqlite_sessions, cfg, "outlook-accepted.eml")
    with sqlite_sessions.begin() as session:
        answered = session.scalars(select(MeetingAnswer.answered_at)).one()
    assert reply_from(sqlite_sessions, cfg, "outlook-accepted.eml") == [None]
    with sqlite_sessions() as session:
        assert session.scalars(select(MeetingAnswer.answered_at)).one() == answered
        assert len(session.scalars(select(InboundMessage)).all()) == 3   # call, its confirmation, 1 reply


def test_a_reply_whose_attendee_is_not_the_sender_is_ignored(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """A REPLY From one member naming another member's ATTENDEE counts for nobody; an unknown UID is kept as
    handled; neither is posted."""
    call(sqlite_sessions, cfg)
    with_fixture_uid(sqlite_sessions)
    raw = (CALENDARS / "thunderbird-declined.eml").read_bytes().replace(
        b"From: Dirk Peeters <dirk@example.net>", b"From: Bob Janssens <bob@contoso.example>")
    (outcome,) = feed(sqlite_sessions, cfg, raw, to=f"{SLUG}@lists.example.org")
    assert outcome is not None and "no ATTENDEE is the sender" in outcome.outcome
    assert answers(sqlite_sessions) == {}
    with sqlite_sessions.begin() as session:   # the fixture's UID no longer names any meeting
        session.execute(update(Meeting).values(uid="another@lists.example.org"))
    (outcome,) = feed(sqlite_sessions, cfg, (CALENDARS / "outlook-accepted.eml").read_bytes(),
                      to=f"{SLUG}@lists.example.org")
    assert outcome is not None and "unknown meeting" in outcome.outcome and str(outcome.status) == "done"
    with sqlite_sessions() as session:
        assert session.scalars(select(Post)).all() == []


def test_a_plain_answer_to_the_request_address_counts_and_a_later_one_replaces_it(
        sqlite_sessions: S, cfg: Config, group: str) -> None:
    """`attend` in a reply to the invitation (to SLUG-request@) counts for the next meeting; `maybe` by its reference
    and `decline GROUP` at the command address replace it; the sender is told what was recorded."""
    call(sqlite_sessions, cfg)
    invitation = invitations(sqlite_sessions)["bob@contoso.example"]
    reply = mail(f"attend\n\n> {body_of(invitation).splitlines()[0]}\n", subject=f"Re: {invitation['Subject']}",
                 sender="Bob <bob@contoso.example>", msgid="<r1@x>", to=f"{SLUG}-request@lists.example.org")
    feed(sqlite_sessions, cfg, reply, to=f"{SLUG}-request@lists.example.org")
    assert "Recorded: you will attend the Migrant Inclusion meeting of 27 March 2027 at 14:00 CET" in last_reply(
        sqlite_sessions)
    assert answers(sqlite_sessions)["bob@contoso.example"] == ("attend", "email")
    ref = the_meeting(sqlite_sessions).public_ref
    feed(sqlite_sessions, cfg, mail(f"maybe {ref}", sender="bob@contoso.example", msgid="<r2@x>"))
    assert answers(sqlite_sessions)["bob@contoso.example"] == ("maybe", "email")
    feed(sqlite_sessions, cfg, mail(f"decline {SLUG}", sender="bob@contoso.example", msgid="<r3@x>"))
    assert answers(sqlite_sessions) == {"bob@contoso.example": ("decline", "email")}
    assert "So far: 0 attend, 0 maybe, 1 decline" in last_reply(sqlite_sessions)


def test_an_answer_from_a_non_member_is_refused(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """Only members answer; anyone else is told so, and nothing is counted (by mail or by calendar)."""
    call(sqlite_sessions, cfg)
    feed(sqlite_sessions, cfg, mail("attend", sender="stranger@example.com", msgid="<s1@x>"),
         to=f"{SLUG}-request@lists.example.org")
    assert "Only members of Migrant Inclusion answer its meetings" in last_reply(sqlite_sessions)
    assert answers(sqlite_sessions) == {}


def test_status_by_who_asks(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """`meeting GROUP status`: the contact sees names and addresses by organisation, a member counts and
    organisations only, a non-member nothing."""
    call(sqlite_sessions, cfg)
    with_fixture_uid(sqlite_sessions)
    with sqlite_sessions.begin() as session:
        bob = session.scalars(select(Member).where(Member.address_key == "bob@contoso.example")).one()
        bob.name, bob.organisation = "Bob Janssens", "City of Ghent"
    reply_from(sqlite_sessions, cfg, "outlook-accepted.eml")
    reply_from(sqlite_sessions, cfg, "thunderbird-declined.eml")
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG} status", sender=CHAIR, msgid="<st1@x>"))
    contact = last_reply(sqlite_sessions)
    assert "1 attend, 0 maybe, 1 decline; not answered yet: 5 of the 7 invited members" in contact
    assert "attend City of Ghent: Bob Janssens <bob@contoso.example>" in contact
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG} status", sender="eva@icloud.example", msgid="<st2@x>"))
    member = last_reply(sqlite_sessions)
    assert "1 attend, 0 maybe, 1 decline" in member and "City of Ghent" in member and "@" not in member.split(
        "invited members")[1].replace("wgbot@lists.example.org", "")
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG} status", sender="stranger@example.com", msgid="<st3@x>"))
    assert "Only Migrant Inclusion's members" in last_reply(sqlite_sessions)


# ---------------------------------------------------------------------------------------------------------
# Moves and cancellations


def test_move_and_cancel_keep_the_uid_and_raise_the_sequence(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """`meeting GROUP move` sends METHOD:REQUEST with the same UID and SEQUENCE 1 at the new time; `cancel` sends
    METHOD:CANCEL, STATUS:CANCELLED, SEQUENCE 2, still the same UID; nomail members get neither."""
    call(sqlite_sessions, cfg)
    uid = str(event_of(invitations(sqlite_sessions)["dana@example.org"])["uid"])
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG} move\nWhen: 2027-04-02 10:00\nDuration: 2 hours\n",
                                    sender=CHAIR, msgid="<mv@x>"))
    confirm(sqlite_sessions, cfg, CHAIR)
    assert "is moved from 27 March 2027 at 14:00 CET to 2 April 2027 at 10:00 CEST" in last_reply(sqlite_sessions)
    moved = invitations(sqlite_sessions)["dana@example.org"]
    assert str(moved["Subject"]).startswith("Moved: Migrant Inclusion meeting")
    event = event_of(moved)
    assert str(calendar_of(moved)["METHOD"]) == "REQUEST" and str(event["uid"]) == uid
    assert int(event["sequence"]) == 1 and str(event["location"]) == "Town Hall, Bologna"
    assert event.decoded("dtstart").astimezone(dt.UTC) == dt.datetime(2027, 4, 2, 8, 0, tzinfo=dt.UTC)
    assert event.decoded("dtend") - event.decoded("dtstart") == dt.timedelta(hours=2)
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG} cancel", sender=CHAIR, msgid="<cx@x>"))
    confirm(sqlite_sessions, cfg, CHAIR)
    assert "is cancelled" in last_reply(sqlite_sessions)
    cancel = invitations(sqlite_sessions)["dana@example.org"]
    part = [p for p in cancel.walk() if p.get_content_type() == "text/calendar"][0]
    assert part.get_param("method") == "CANCEL" and str(calendar_of(cancel)["METHOD"]) == "CANCEL"
    event = event_of(cancel)
    assert str(event["uid"]) == uid and int(event["sequence"]) == 2 and str(event["status"]) == "CANCELLED"
    assert "nora@example.org" not in {to for to, _ in queued(sqlite_sessions, "meeting")}
    feed(sqlite_sessions, cfg, mail(f"attend {SLUG}", sender="dana@example.org", msgid="<late@x>"))
    assert "no coming meeting" in last_reply(sqlite_sessions)


# ---------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("when, expected", [
    ("2026-11-20 14:00", "is in the past (it is now 21 November 2026 at 10:00 CET)"),
    ("2026-11-21 10:30", "is less than an hour from now"),
    ("next Tuesday afternoon", 'We cannot read the time "next Tuesday afternoon": it is not a date and time we can '
                               "read. Write the date and time like this: When: 2027-01-12 14:00"),
    ("12 Jan 2027 14", "it has no minutes: write the time as 14:00 or 2pm"),
])
def test_bad_times_are_answered_clearly(sqlite_sessions: S, cfg: Config, group: str, when: str,
                                        expected: str) -> None:
    """A past time, one less than an hour away, or one we cannot read is refused with the formats that work and
    an example; nothing is asked for confirmation and nobody is invited."""
    answer = call(sqlite_sessions, cfg, when)
    assert expected in answer, answer
    assert queued(sqlite_sessions, "confirm") == [] and invitations(sqlite_sessions) == {}


def test_other_refusals(sqlite_sessions: S, cfg: Config, group: str) -> None:
    """A member who is not a contact cannot call a meeting; a call needs When: and Where:; minutes need a meeting
    that has taken place; a move needs a meeting."""
    assert "Only Migrant Inclusion's facilitators can call" in call(sqlite_sessions, cfg, sender="bob@contoso.example")
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG}\nWhere: Bologna\n", sender=CHAIR, msgid="<nw@x>"))
    assert "When is the meeting? Give it in a field" in last_reply(sqlite_sessions)
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG}\nWhen: 2027-03-27 14:00\n", sender=CHAIR, msgid="<nwh@x>"))
    assert "Where is the meeting?" in last_reply(sqlite_sessions)
    feed(sqlite_sessions, cfg, mail(f"minutes {SLUG}\nWe met.\n", sender=CHAIR, msgid="<mn@x>"))
    assert "has had no meeting yet" in last_reply(sqlite_sessions)
    feed(sqlite_sessions, cfg, mail(f"meeting {SLUG} cancel", sender=CHAIR, msgid="<cn@x>"))
    assert "has no coming meeting" in last_reply(sqlite_sessions)
    assert queued(sqlite_sessions, "confirm") == []


def test_a_trusted_sender_needs_no_confirmation(sqlite_sessions: S, tmp_path: Path, group: str) -> None:
    """With our MTA's dmarc=pass for the From domain, the meeting is called at once (the pending engine's rule)."""
    cfg = make_config(tmp_path, network={"trusted_authserv_id": "mx.lists.example.org"},
                      limits={"replies_per_day": 1000})
    body = f"meeting {SLUG}\nWhen: 2027-03-27 14:00\nWhere: Bologna\n"
    feed(sqlite_sessions, cfg, mail(body, sender=CHAIR, msgid="<t@x>", headers={
        "Authentication-Results": "mx.lists.example.org; dmarc=pass header.from=city.example"}))
    assert "Meeting M-" in last_reply(sqlite_sessions) and len(invitations(sqlite_sessions)) == 7
