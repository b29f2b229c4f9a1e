"""A seeded network served by a real `wgbot run` (Runner) with its web pages on a free loopback port.

Posts reach the archive the way mail does (inbox.accept + processing → lists.distribute), so the pages read what
the list really stored. Used by test_web.py (HTTP) and test_browser.py (Chromium).
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import add_members, feed, free_port
from tests.integration.test_listener import Bot
from wgbot.config import Config
from wgbot.db import migrate
from wgbot.groups import create_group
from wgbot.store import Group, Report, make_engine, make_sessionmaker

GROUP = "migrant-inclusion"
LIST = f"{GROUP}@lists.example.org"
MEMBERS = {"alice@example.com": "regular", "bob@example.net": "regular", "carla@example.org": "digest"}

KICKOFF = (b"From: Alice Example <alice@example.com>\r\nTo: " + LIST.encode() + b"\r\n"
           b"Subject: Kick-off meeting in Bologna\r\nMessage-ID: <kickoff@example.com>\r\n"
           b"Date: Sat, 21 Nov 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           b"Dear all,\r\n\r\nthe kick-off is on 3 December in Bologna. Write to bob@example.net for the\r\n"
           b"venue. We will discuss housing policy and the integration indicators.\r\n\r\nAlice\r\n")

# A reply (RFC 5322 §3.6.4 threading) with quoted text and a PDF attachment (RFC 2046 multipart/mixed).
REPLY = (b"From: Bob <bob@example.net>\r\nTo: " + LIST.encode() + b"\r\n"
         b"Subject: Re: [migrant-inclusion] Kick-off meeting in Bologna\r\nMessage-ID: <reply1@example.net>\r\n"
         b"In-Reply-To: <kickoff@example.com>\r\nReferences: <kickoff@example.com>\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
         b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
         b"Thanks, the agenda is attached.\r\n\r\nOn Sat, 21 Nov 2026, Alice Example wrote:\r\n"
         b"> the kick-off is on 3 December in Bologna.\r\n> Write to bob@example.net for the venue.\r\n"
         b"--b1\r\nContent-Type: application/pdf; name=\"agenda.pdf\"\r\n"
         b"Content-Disposition: attachment; filename=\"agenda.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         b"JVBERi0xLjQKJcTl8uXrp/Og0MTGCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCnRyYWlsZXIKPDwvUm9vdCAxIDAg"
         b"Uj4+CiUlRU9GCg==\r\n--b1--\r\n")

# Hostile HTML-only mail: script, inline handlers, javascript: and data: links, CSS, a remote tracking image,
# an iframe, a form and a meta refresh: none of it may be live on a page.
HOSTILE = (b"From: Carla <carla@example.org>\r\nTo: " + LIST.encode() + b"\r\n"
           b"Subject: <script>alert('subject')</script> Hostile newsletter\r\nMessage-ID: <hostile@example.org>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
           b"<html><head><style>body{background:red}</style><meta http-equiv=\"refresh\" content=\"0;url=https://evil.example/\">"
           b"<script>document.title='pwned'</script></head><body>"
           b"<p style=\"color:red\" onclick=\"alert(1)\">Read the hostile report.</p>"
           b"<a href=\"javascript:alert('link')\">click me</a> "
           b"<a href=\"data:text/html,<script>alert(2)</script>\">data</a>"
           b"<a href=\"https://example.org/report\">the real report</a>"
           b"<img src=\"https://tracker.example/pixel.gif?u=carla\" width=\"1\" height=\"1\" onerror=\"alert(3)\">"
           b"<iframe src=\"https://evil.example/\"></iframe>"
           b"<form action=\"https://evil.example/\"><input name=\"pw\"></form>"
           b"<svg onload=\"alert(4)\"></svg></body></html>\r\n")

REPORT = (b"From: chair@comune.bologna.example\r\nTo: wgbot@lists.example.org\r\nSubject: report migrant-inclusion"
          b"\r\nMessage-ID: <report@comune.bologna.example>\r\n\r\nTwelve cities exchanged their integration "
          b"indicators this year.\r\n")

HELD = (b"From: Stranger <stranger@example.com>\r\nTo: " + LIST.encode() + b"\r\n"
        b"Subject: Held secret plan\r\nMessage-ID: <held@example.com>\r\n\r\nThis must never be published.\r\n")


@dataclass
class Website:
    cfg: Config
    sessions: sessionmaker[Session]
    url: str

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        """(status, headers, body) of a GET, error statuses included."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as page:
                return page.status, dict(page.headers.items()), page.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            with err:
                return err.code, dict(err.headers.items()), err.read().decode(errors="replace")


def seed(cfg: Config, sessions: sessionmaker[Session]) -> None:
    from tests.helpers import NOW

    with sessions.begin() as session:
        create_group(session, cfg, "Migrant Inclusion", contact="chair@comune.bologna.example",
                     organisation="City of Bologna", country="IT", now=NOW,
                     introduction="Cities sharing what works for the inclusion of migrants.")
        create_group(session, cfg, "Housing First", contact="lead@graz.example", organisation="City of Graz",
                     country="AT", now=NOW, status="forming", introduction="Housing as a human right.")
        create_group(session, cfg, "Board Room", contact="board@example.org", organisation="City of Ghent",
                     country="BE", now=NOW)
        session.scalars(select(Group).where(Group.slug == "board-room")).one().archive = "private"
    add_members(sessions, GROUP, MEMBERS)
    add_members(sessions, "board-room", {"alice@example.com": "regular"})
    with sessions.begin() as session:   # an approved yearly report whose public comment period is open
        group = session.scalars(select(Group).where(Group.slug == GROUP)).one()
        now = dt.datetime.now(dt.UTC)
        session.add(Report(group_id=group.id, kind="yearly report", submitted_by="chair@comune.bologna.example",
                           subject="Inclusion in 2026", raw=REPORT, status="approved", submitted_at=now,
                           decided_at=now, comments_until=now + dt.timedelta(days=10, hours=-1)))
    for raw in (KICKOFF, REPLY, HOSTILE, HELD):
        feed(sessions, cfg, raw, to=LIST)
    feed(sessions, cfg, b"From: alice@example.com\r\nTo: board-room@lists.example.org\r\nSubject: Private matter"
                        b"\r\nMessage-ID: <private@example.com>\r\n\r\nBudget figures about housing.\r\n",
         to="board-room@lists.example.org")


def serve(tmp_path: Path) -> Iterator[Website]:
    port = free_port()
    cfg = make_config(tmp_path, network={"name": "ECCAR Test Network", "rules": "eccar"},
                      web={"enabled": True, "port": port}, **{"inbound.smtp": {"port": free_port()}},
                      schedule={"general_assembly": "2027-05-20"})
    engine = make_engine(f"sqlite:///{tmp_path}/wgbot.sqlite3")
    migrate(engine)
    sessions = make_sessionmaker(engine)
    seed(cfg, sessions)
    with Bot(cfg, sessions):
        yield Website(cfg, sessions, f"http://127.0.0.1:{port}")
    engine.dispose()
