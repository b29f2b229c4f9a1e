"""Schedules driven by `wgbot tick --now`, with what the bot sends captured by an aiosmtpd relay: digests,
deadline reminders and missed deadlines, reports and public comments, expiries and the weekly roll-up. Every
test ticks twice at the same moment at least once: nothing may be sent twice."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import Relay, add_members, approval_token, confirm, feed, mail
from wgbot.cli import main
from wgbot.config import load_config
from wgbot.db import migrate
from wgbot.groups import create_group, list_groups
from wgbot.store import Comment, Membership, make_engine, make_sessionmaker


class Site:
    def __init__(self, tmp_path: Path, relay: Relay, rules: str, extra: str = "") -> None:
        self.relay = relay
        self.config = tmp_path / "config.toml"
        self.config.write_text(f"""
[network]
name = "Test Network"
rules = "{rules}"
list_domain = "lists.example.org"
bot_address = "wgbot@lists.example.org"
secretariat = ["office@example.org"]
timezone = "Europe/Brussels"
[database]
url = "sqlite:///{tmp_path}/wgbot.sqlite3"
[outbound]
transport = "smtp"
port = {relay.port}
[limits]
replies_per_day = 1000
{extra}""")
        self.cfg = load_config(self.config)
        self.engine = make_engine(f"sqlite:///{tmp_path}/wgbot.sqlite3")
        migrate(self.engine)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)

    def tick(self, when: str) -> None:
        assert main(["--config", str(self.config), "tick", "--now", when]) == 0

    def group(self, name: str, contact: str = "chair@city.example", active_since: str = "2026-01-05") -> str:
        since = dt.datetime.fromisoformat(active_since).replace(tzinfo=dt.UTC)
        with self.sessions.begin() as session:
            group = create_group(session, self.cfg, name, contact=contact, now=since)
            group.activated_at = since
            return group.slug

    def to(self, address: str, subject_part: str = "") -> list[Any]:
        return [m for m in self.relay.messages if address in m.rcpt_tos and subject_part in str(m.message["Subject"])]

    def subjects(self) -> list[str]:
        return [str(m.message["Subject"]) for m in self.relay.messages]


@pytest.fixture
def site_factory(tmp_path: Path, relay: Relay) -> Iterator[Any]:
    made: list[Site] = []

    def make(rules: str = "igf", extra: str = "") -> Site:
        site = Site(tmp_path, relay, rules, extra)
        made.append(site)
        return site
    yield make
    for site in made:
        site.engine.dispose()


def post(site: Site, slug: str, subject: str, when: dt.datetime, sender: str = "r1@example.com") -> None:
    feed(site.sessions, site.cfg, mail(f"Text of {subject}.\n", subject=subject, sender=sender,
                                       msgid=f"<{subject.replace(' ', '')}@example.com>"),
         to=f"{slug}@lists.example.org", now=when)


def test_digests_daily_by_size_and_never_twice(site_factory: Any) -> None:
    """Digest members get one MIME or plain digest at send_at (Brussels time), not before, not twice, and not
    when nothing is new; past max_posts a digest goes at once."""
    site = site_factory(extra='[digests]\nsend_at = "07:00"\nmax_posts = 3\n[schedule]\nrollup_on = ""\n')
    slug = site.group("Youth")
    add_members(site.sessions, slug, {"r1@example.com": "regular", "d-mime@example.com": "digest",
                                      "d-plain@example.com": "digest", "n1@example.com": "nomail"})
    with site.sessions.begin() as session:
        ms = [m for m in session.scalars(select(Membership)) if m.member.address == "d-plain@example.com"][0]
        ms.digest_format = "plain"
    day = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)
    post(site, slug, "First topic", day)
    post(site, slug, "Second topic", day)
    site.tick("2026-11-23T06:59")
    assert not site.to("d-mime@example.com", "digest")
    site.tick("2026-11-23T07:00")
    site.tick("2026-11-23T07:00")      # the same moment again
    site.tick("2026-11-23T07:30")      # later the same day (a restart: every tick is a new process)
    (mime,) = site.to("d-mime@example.com", "digest")
    (plain,) = site.to("d-plain@example.com", "digest")
    assert not site.to("n1@example.com")
    assert re.fullmatch(r"youth-bounces\+d-mime=example\.com=[0-9a-f]{10}@lists\.example\.org", mime.envelope_from)
    m = mime.message
    assert str(m["Subject"]) == "Youth digest, issue 1" and m["List-Id"] == "Youth <youth.lists.example.org>"
    toc, digest = list(m.iter_parts())
    assert "1. First topic" in toc.get_content() and "2. Second topic" in toc.get_content()
    assert digest.get_content_type() == "multipart/digest"
    inner = [p.get_content() for p in digest.iter_parts()]
    assert [str(x["Subject"]) for x in inner] == ["First topic", "Second topic"]
    text = plain.message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    assert "Today's Topics:" in text and "\n------------------------------\n" in text
    assert "End of Youth digest, issue 1" in text and "Text of Second topic." in text
    site.tick("2026-11-24T07:00")      # nothing new: no digest
    assert len(site.to("d-mime@example.com", "digest")) == 1
    for i in range(3):
        post(site, slug, f"Busy {i}", dt.datetime(2026, 11, 24, 9, i, tzinfo=dt.UTC))
    site.tick("2026-11-24T10:00")      # past max_posts: at once, not waiting for 07:00
    site.tick("2026-11-24T10:00")
    assert [str(x.message["Subject"]) for x in site.to("d-mime@example.com", "digest")] == [
        "Youth digest, issue 1", "Youth digest, issue 2"]


def test_igf_draft_output_deadline(site_factory: Any) -> None:
    """Reminders 30, 7 and 1 days before 1 November go to the facilitators, once each, and stop when the draft
    is submitted; a group that submitted nothing is reported to its facilitators and the secretariat the day
    after."""
    site = site_factory("igf", '[schedule]\nrollup_on = ""\n')
    done = site.group("BPF Cybersecurity", contact="fac1@ngo.example")
    late = site.group("BPF Gender", contact="fac2@ngo.example")
    site.tick("2027-10-01T09:00")      # 31 days before: nothing yet
    assert site.to("fac1@ngo.example") == []
    site.tick("2027-10-02T09:00")
    site.tick("2027-10-02T09:00")
    site.tick("2027-10-03T09:00")
    assert len(site.to("fac1@ngo.example", "draft output due in 30 days")) == 1
    assert len(site.to("fac2@ngo.example", "draft output due in 30 days")) == 1
    site.tick("2027-10-25T09:00")
    assert len(site.to("fac1@ngo.example", "due in 7 days")) == 1
    # The facilitator of one group submits; the secretariat approves.
    when = dt.datetime(2027, 10, 26, 10, tzinfo=dt.UTC)
    feed(site.sessions, site.cfg, mail("Our draft output.\n", subject=f"report {done}", sender="fac1@ngo.example",
                                       msgid="<draft@ngo.example>"), now=when)
    confirm(site.sessions, site.cfg, "fac1@ngo.example", when)
    feed(site.sessions, site.cfg, mail("approve", sender="office@example.org", msgid="<ok@x.org>"),
         to=f"wgbot+approval-{approval_token(site.sessions)}@lists.example.org", now=when)
    site.tick("2027-10-31T09:00")
    assert not site.to("fac1@ngo.example", "due in 1 day") and len(site.to("fac2@ngo.example", "due in 1 day")) == 1
    site.tick("2027-11-02T09:00")
    site.tick("2027-11-02T09:00")
    assert len(site.to("fac2@ngo.example", "was not received")) == 1
    assert len(site.to("office@example.org", "BPF Gender: the draft output due 1 November 2027 was not received")) == 1
    assert not site.to("fac1@ngo.example", "was not received")
    # The approved draft went to the list, and a month of public comment is open.
    assert site.to("fac1@ngo.example", "[bpf-cybersecurity]")
    del late


def test_public_comments_are_acknowledged_and_compiled(site_factory: Any) -> None:
    """While the comment period is open anyone may comment at SLUG-comments@ and is thanked; when it ends the
    comments are compiled and sent to the facilitators, once."""
    site = site_factory("igf", '[schedule]\nrollup_on = ""\n')
    slug = site.group("BPF Spam", contact="fac@ngo.example")
    when = dt.datetime(2027, 3, 10, 10, tzinfo=dt.UTC)
    feed(site.sessions, site.cfg, mail("Spam draft.\n", subject=f"report {slug}", sender="fac@ngo.example",
                                       msgid="<d@ngo.example>"), now=when)
    confirm(site.sessions, site.cfg, "fac@ngo.example", when)
    feed(site.sessions, site.cfg, mail("approve", sender="office@example.org", msgid="<ok@x.org>"),
         to=f"wgbot+approval-{approval_token(site.sessions)}@lists.example.org", now=when)
    comments = f"{slug}-comments@lists.example.org"
    feed(site.sessions, site.cfg, mail("Please cover SMS spam.\n", sender="Citizen <c@public.example>",
                                       msgid="<c1@public.example>"), to=comments, now=when + dt.timedelta(days=3))
    feed(site.sessions, site.cfg, mail("Good work.\n", sender="other@public.example", msgid="<c2@public.example>"),
         to=comments, now=when + dt.timedelta(days=4))
    site.tick("2027-03-15T09:00")
    assert site.to("c@public.example", "Your comment on the BPF Spam draft output was received")
    site.tick("2027-04-10T09:00")
    site.tick("2027-04-10T09:00")
    (compiled,) = site.to("fac@ngo.example", "public comments on the draft output (2)")
    text = compiled.message.get_body(preferencelist=("plain",)).get_content()
    assert "Please cover SMS spam." in text and "Citizen <c@public.example>" in text
    feed(site.sessions, site.cfg, mail("Too late.\n", sender="late@public.example", msgid="<c3@public.example>"),
         to=comments, now=when + dt.timedelta(days=40))
    with site.sessions() as session:
        assert len(session.scalars(select(Comment)).all()) == 2
    site.tick("2027-04-21T09:00")
    assert site.to("late@public.example", "No comment period is open")


def test_expiries_with_one_reminder(site_factory: Any) -> None:
    """A pending confirmation gets one reminder three days before it expires, then expires; a proposal nobody
    decided on expires and its proposer is told."""
    site = site_factory("ietm", '[schedule]\nrollup_on = ""\n')
    slug = site.group("Dance")
    start = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC)
    feed(site.sessions, site.cfg, mail(f"join {slug}", sender="ann@x.example", msgid="<j@x>"), now=start)
    feed(site.sessions, site.cfg, mail("Circus.\n", subject="propose Circus", sender="bo@x.example",
                                       msgid="<p@x>"), now=start)
    confirm(site.sessions, site.cfg, "bo@x.example", start)
    site.tick("2026-12-01T10:00")
    assert not site.to("ann@x.example", "Reminder")
    site.tick("2026-12-04T10:00")
    site.tick("2026-12-05T10:00")
    assert len(site.to("ann@x.example", "Reminder: your confirmation is still needed")) == 1
    assert len(site.to("office@example.org", "Reminder: a decision is still needed")) == 1
    site.tick("2026-12-08T10:00")
    assert len(site.to("bo@x.example", "Your request has expired")) == 1
    with site.sessions() as session:
        status = {g["slug"]: g["status"] for g in list_groups(session)}
    assert status["circus"] == "closed"


def test_weekly_rollup(site_factory: Any) -> None:
    """The secretariat gets one roll-up a week, on Monday at 08:00 Brussels time."""
    site = site_factory("igf")
    site.group("BPF Spam", contact="fac@ngo.example")
    site.tick("2026-11-23T07:59")      # Monday, a minute early
    assert not site.to("office@example.org", "working groups: the week")
    site.tick("2026-11-23T08:00")
    site.tick("2026-11-23T08:00")
    site.tick("2026-11-24T08:00")
    (rollup,) = site.to("office@example.org", "working groups: the week of 23 November 2026")
    text = rollup.message.get_body(preferencelist=("plain",)).get_content()
    assert "active   BPF Spam (bpf-spam)" in text and "Deadlines in the next 30 days" in text
    site.tick("2026-11-30T09:00")
    assert len(site.to("office@example.org", "working groups: the week")) == 2


def test_eccar_general_assembly(site_factory: Any, tmp_path: Path) -> None:
    """ECCAR: the yearly report is due before the General Assembly (from the configuration); the chair is
    reminded and asked to declare continue or close; with close_without_declaration, groups that never
    declared are closed after the assembly and their members told."""
    rules = tmp_path / "eccar-strict.toml"
    from wgbot.resources import data_dir

    rules.write_text((data_dir("rules") / "eccar.toml").read_text().replace(
        "reminder_days = [30, 7, 1]", "reminder_days = [30, 7, 1]\nclose_without_declaration = true"))
    site = site_factory(str(rules), '[schedule]\ngeneral_assembly = "2027-06-15"\nrollup_on = ""\n')
    quiet = site.group("Housing", contact="chair@ghent.example")
    active = site.group("Policing", contact="chair@graz.example")
    add_members(site.sessions, quiet, {"city@lyon.example": "regular"})
    site.tick("2027-05-16T09:00")
    (reminder,) = site.to("chair@ghent.example", "Housing: yearly report due in 30 days (15 June 2027)")
    text = " ".join(reminder.message.get_body(preferencelist=("plain",)).get_content().split())
    assert "before the General Assembly" in text and '"continue housing" or "close housing"' in text
    when = dt.datetime(2027, 6, 1, 9, tzinfo=dt.UTC)
    feed(site.sessions, site.cfg, mail(f"continue {active}", sender="chair@graz.example", msgid="<c@graz>"), now=when)
    confirm(site.sessions, site.cfg, "chair@graz.example", when)
    site.tick("2027-06-16T09:00")
    site.tick("2027-06-16T09:00")
    with site.sessions() as session:
        status = {g["slug"]: g["status"] for g in list_groups(session)}
    assert status == {"housing": "closed", "policing": "active"}
    assert len(site.to("city@lyon.example", "Housing is closed")) == 1
