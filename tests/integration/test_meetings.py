"""A meeting from invitation to minutes, driven by `wgbot tick --now`, with what the bot sends captured by an
aiosmtpd relay: reminders the day and the hour before, once each however often the scheduler ticks and never
after a cancellation; the minutes on the list, in the archive, on the group's page and in /deadlines.ics; the
secretariat's roll-up."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import icalendar
import pytest
from sqlalchemy import select

from tests.helpers import add_members, confirm, feed, mail
from tests.integration.test_schedule import Site, site_factory  # noqa: F401  (the fixture, shared)
from wgbot import web
from wgbot.store import ArchivedPost, Meeting

CHAIR = "chair@city.example"
SLUG = "migrant-inclusion"
BRUSSELS = dt.timezone(dt.timedelta(hours=1))     # CET, before the change to summer time on 28 March 2027


def at(text: str) -> dt.datetime:
    """A moment in Brussels winter time."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=BRUSSELS)


def call(site: Site, when: str, now: dt.datetime, msgid: str) -> Meeting:
    feed(site.sessions, site.cfg, mail(f"meeting {SLUG}\nWhen: {when}\nWhere: Town Hall, Bologna\n\n1. The budget\n",
                                       sender=CHAIR, msgid=msgid), now=now)
    confirm(site.sessions, site.cfg, CHAIR, now=now)
    with site.sessions() as session:
        return session.scalars(select(Meeting).order_by(Meeting.id.desc())).first()  # type: ignore[return-value]


def reminders(site: Site, to: str) -> list[str]:
    return [str(m.message["Subject"]) for m in site.to(to, "Reminder:")]


def minutes_mail(now: dt.datetime) -> bytes:
    """The minutes as a contact sends them: the text, and the signed PDF attached."""
    return (f"From: Chair <{CHAIR}>\r\nTo: wgbot@lists.example.org\r\nSubject: minutes {SLUG}\r\n"
            f"Message-ID: <minutes-1@city.example>\r\nDate: {now:%a, %d %b %Y %H:%M:%S %z}\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Present: Bologna, Ghent, Graz.\r\nDecided: the budget for 2027 is adopted.\r\n\r\n--b1\r\n"
            'Content-Type: application/pdf; name="minutes.pdf"\r\nContent-Disposition: attachment; '
            'filename="minutes.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+'
            "CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n--b1--\r\n").encode()


def get(site: Site, path: str) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=web.make_app(site.cfg, site.sessions))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.get(path)
    return asyncio.run(fetch())


def test_reminders_once_each_and_none_after_a_cancellation(site_factory: Any) -> None:  # noqa: F811
    """The day before and the hour before, each reminder goes once to every member who gets mail (nomail
    members none), however often the scheduler ticks; the contacts' copy says who comes; a moved meeting gets
    its reminders again for the new time; a cancelled one gets none."""
    site = site_factory("igf", '[schedule]\nrollup_on = ""\n')
    site.group("Migrant Inclusion", contact=CHAIR)
    add_members(site.sessions, SLUG, {"bob@ghent.example": "regular", "dana@graz.example": "digest",
                                      "nora@example.org": "nomail"})
    meeting = call(site, "2027-03-27 14:00", at("2027-03-20T09:00"), "<c1@x>")
    feed(site.sessions, site.cfg, mail("attend", sender="bob@ghent.example", msgid="<a1@x>"),
         to=f"{SLUG}-request@lists.example.org", now=at("2027-03-21T10:00"))
    for moment in ("2027-03-21T10:00", "2027-03-26T13:59"):
        site.tick(moment)
    assert reminders(site, "bob@ghent.example") == []
    for moment in ("2027-03-26T14:00", "2027-03-26T14:00", "2027-03-26T18:00", "2027-03-27T12:00"):
        site.tick(moment)
    assert reminders(site, "dana@graz.example") == ["Reminder: Migrant Inclusion meeting, 27 March 2027 at 14:00 CET"]
    for moment in ("2027-03-27T13:00", "2027-03-27T13:30", "2027-03-27T13:59", "2027-03-27T14:30"):
        site.tick(moment)
    for member in (CHAIR, "bob@ghent.example", "dana@graz.example"):
        assert len(reminders(site, member)) == 2, member
    assert reminders(site, "nora@example.org") == []
    (day, hour) = site.to(CHAIR, "Reminder:")
    text = " ".join(day.message.get_body(preferencelist=("plain",)).get_content().split())
    assert "meets tomorrow: 27 March 2027 at 14:00 CET" in text and "So far: 1 attend, 0 maybe, 0 decline" in text
    assert "attend (no organisation given): bob@ghent.example" in text
    assert "in 1 hour" in hour.message.get_body(preferencelist=("plain",)).get_content()
    bob = " ".join(site.to("bob@ghent.example", "Reminder:")[0].message.get_body(
        preferencelist=("plain",)).get_content().split())
    assert "So far: 1 attend" in bob and "bob@ghent.example" not in bob.split("So far")[1]

    second = call(site, "2027-04-10 14:00", at("2027-03-28T09:00"), "<c2@x>")
    feed(site.sessions, site.cfg, mail(f"meeting {SLUG} move {second.public_ref}\nWhen: 2027-04-12 14:00\n",
                                       sender=CHAIR, msgid="<m2@x>"), now=at("2027-03-29T09:00"))
    confirm(site.sessions, site.cfg, CHAIR, now=at("2027-03-29T09:00"))
    site.tick("2027-04-09T15:00")
    assert len(reminders(site, "bob@ghent.example")) == 2     # the old time's reminder is not sent
    site.tick("2027-04-11T15:00")
    assert len(reminders(site, "bob@ghent.example")) == 3     # the new time's is
    feed(site.sessions, site.cfg, mail(f"meeting {SLUG} cancel", sender=CHAIR, msgid="<x2@x>"),
         now=at("2027-04-11T16:00"))
    confirm(site.sessions, site.cfg, CHAIR, now=at("2027-04-11T16:00"))
    for moment in ("2027-04-12T13:15", "2027-04-12T13:30"):
        site.tick(moment)
    assert len(reminders(site, "bob@ghent.example")) == 3
    assert [str(m.message["Subject"]) for m in site.to("bob@ghent.example", "Cancelled:")] == [
        "Cancelled: Migrant Inclusion meeting, 12 April 2027 at 14:00 CEST"]
    assert meeting.public_ref != second.public_ref


def test_minutes_reach_the_list_the_archive_the_page_and_the_feed(site_factory: Any,  # noqa: F811
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`minutes GROUP` after the meeting: confirmed, then the text and its PDF go to the list (the relay gets the
    list copy with the meeting's subject), into the archive, onto the group's page as a link, and into
    /deadlines.ics as the event's description under the invitation's UID; the roll-up lists the coming week's
    meetings and minutes missing a week after."""
    site = site_factory("igf", "")
    site.group("Migrant Inclusion", contact=CHAIR)
    add_members(site.sessions, SLUG, {"bob@ghent.example": "regular"})
    first = call(site, "2027-03-10 14:00", at("2027-03-01T09:00"), "<c1@x>")
    second = call(site, "2027-03-12 10:00", at("2027-03-01T09:05"), "<c2@x>")
    site.tick("2027-03-08T08:00")                 # Monday: the roll-up
    (rollup,) = site.to("office@example.org", "the week of 8 March 2027")
    text = " ".join(rollup.message.get_body(preferencelist=("plain",)).get_content().split())
    assert f"Migrant Inclusion: 10 March 2027 at 14:00 CET, Town Hall, Bologna ({first.public_ref})" in text
    assert f"12 March 2027 at 10:00 CET, Town Hall, Bologna ({second.public_ref})" in text

    feed(site.sessions, site.cfg, minutes_mail(at("2027-03-11T09:00")), now=at("2027-03-11T09:00"))
    confirm(site.sessions, site.cfg, CHAIR, now=at("2027-03-11T09:00"))
    site.tick("2027-03-11T09:01")
    (copy,) = site.to("bob@ghent.example", "Minutes of")
    subject = "[migrant-inclusion] Minutes of the Migrant Inclusion meeting of 10 March 2027"
    assert str(copy.message["Subject"]) == subject
    assert [p.get_filename() for p in copy.message.walk() if p.get_filename()] == ["minutes.pdf"]
    assert copy.envelope_from.startswith(f"{SLUG}-bounces+bob=ghent.example=")
    with site.sessions() as session:
        archived = session.scalars(select(ArchivedPost)).one()
    assert "the budget for 2027 is adopted" in archived.body
    monkeypatch.setattr(web, "now", lambda: at("2027-03-11T09:30"))
    page = get(site, f"/groups/{SLUG}/")
    assert page.status_code == 200 and "<h2>Meetings</h2>" in page.text
    assert f'href="/groups/{SLUG}/archive/msg/{archived.id}/">minutes</a>' in page.text
    assert "12 March 2027 at 10:00 CET" in page.text and "Town Hall, Bologna" in page.text
    feed_ics = icalendar.Calendar.from_ical(get(site, "/deadlines.ics").content)
    events = {str(e["uid"]): e for e in feed_ics.walk("VEVENT")}
    assert "the budget for 2027 is adopted" in str(events[first.uid]["description"])
    assert str(events[second.uid]["description"]) == "1. The budget"
    assert events[first.uid].decoded("dtstart") == dt.datetime(2027, 3, 10, 13, 0, tzinfo=dt.UTC)

    site.tick("2027-03-22T08:00")                 # a Monday, more than a week after the second meeting
    (rollup,) = site.to("office@example.org", "the week of 22 March 2027")
    text = " ".join(rollup.message.get_body(preferencelist=("plain",)).get_content().split())
    missing = text.split("Minutes still missing")[1].split("Members whose")[0]
    assert second.public_ref in missing and first.public_ref not in missing
