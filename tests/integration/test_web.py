"""The public pages over real HTTP, served by `wgbot run` (uvicorn on the bot's event loop) from a seeded store."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import icalendar
import pytest
from sqlalchemy import select

from tests.conftest import make_config
from tests.helpers import free_port
from tests.integration.website import GROUP, REPLY, Website, serve
from wgbot import web
from wgbot.cli import main
from wgbot.groups import list_groups
from wgbot.store import ArchivedPost, make_engine, make_sessionmaker

# A full address anywhere in a page, other than the bot's own public addresses.
FULL_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@(?!lists\.example\.org)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Website]:
    yield from serve(tmp_path_factory.mktemp("web"))


def message_id(site: Website, msgid: str) -> int:
    with site.sessions() as session:
        return int(session.scalars(select(ArchivedPost.id).where(ArchivedPost.message_id == msgid)).one())


def test_directory_shows_groups_as_the_rules_say(site: Website) -> None:
    """`/` lists active and forming groups with status, introduction, organisations by country, the contact's
    city, a ready join mailto, the next deadline, and what a forming ECCAR group still lacks; no address in full."""
    status, headers, page = site.get("/")
    assert status == 200 and "text/html" in headers["content-type"]
    assert "<title>Working groups · ECCAR Test Network</title>" in page and '<html lang="en">' in page
    assert "Cities sharing what works for the inclusion of migrants." in page
    assert "<h3>Member cities by country</h3>" in page and "<strong>Italy</strong>: City of Bologna" in page
    assert "City of Bologna (Italy)" in page and "migrant-inclusion-owner@lists.example.org" in page
    assert '<time datetime="2027-05-20">20 May 2027</time>' in page
    assert "Still needed: 2 more cities and support from 1 more country (other than Austria)." in page
    mailto = re.search(r'href="(mailto:wgbot@lists\.example\.org\?subject=join[^"]*body=join%20migrant[^"]*)"',
                       page)
    assert mailto is not None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(mailto.group(1).replace("&amp;", "&")).query)
    assert query["body"] == ["join migrant-inclusion\r\nOrganisation: (your city)\r\nCountry: (your country)\r\n"]
    assert FULL_ADDRESS.findall(page) == []


def test_group_page_shows_deadlines_reports_and_the_open_comment_period(site: Website) -> None:
    """`/groups/SLUG/` adds deliverables, approved reports, the comment address and the days left."""
    status, _, page = site.get(f"/groups/{GROUP}/")
    assert status == 200 and "<h1>Migrant Inclusion</h1>" in page
    assert "Yearly report: due" in page and "Yearly report: Inclusion in 2026" in page
    assert "10 days left" in page and "migrant-inclusion-comments@lists.example.org" in page
    report = re.search(r'href="(/groups/migrant-inclusion/reports/\d+/)"', page)
    assert report is not None
    status, _, text = site.get(report.group(1))
    assert status == 200 and "Twelve cities exchanged their integration indicators" in text
    assert site.get("/groups/no-such-group/")[0] == 404


def test_archive_is_threaded_with_quotes_folded_and_attachments(site: Website) -> None:
    """The archive lists months; a month is threaded by In-Reply-To; a message folds quoted text in <details>,
    offers its attachment as a download of the original bytes, and masks every address."""
    status, _, index = site.get(f"/groups/{GROUP}/archive/")
    assert status == 200 and 'href="/groups/migrant-inclusion/archive/2026-11/">November 2026</a> (3 messages)' in index
    _, _, month = site.get(f"/groups/{GROUP}/archive/2026-11/")
    kickoff, reply = message_id(site, "<kickoff@example.com>"), message_id(site, "<reply1@example.net>")
    order = re.findall(r'<li class="depth-(\d)"><a href="/groups/migrant-inclusion/archive/msg/(\d+)/', month)
    assert order.index(("0", str(kickoff))) + 1 == order.index(("1", str(reply)))
    assert "Held secret plan" not in month
    _, _, page = site.get(f"/groups/{GROUP}/archive/msg/{reply}/")
    assert ('<details class="quoted"><summary>Quoted text</summary><pre>On Sat, 21 Nov 2026, Alice Example wrote:'
            in page)
    assert "b…@example.net" in page and FULL_ADDRESS.findall(page) == []
    link = re.search(r'href="(/groups/migrant-inclusion/archive/msg/\d+/\d+/agenda\.pdf)" download', page)
    assert link is not None
    status, headers, _ = site.get(link.group(1))
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"] == 'attachment; filename="agenda.pdf"'
    import urllib.request

    with urllib.request.urlopen(site.url + link.group(1), timeout=10) as download:
        pdf = download.read()
    encoded = REPLY.split(b"base64\r\n\r\n")[1].split(b"\r\n--b1--")[0]
    assert pdf == base64.b64decode(encoded) and pdf.startswith(b"%PDF-1.4")


def test_hostile_post_reaches_the_page_inert(site: Website) -> None:
    """A hostile HTML post keeps its text and its https link; script, handlers, javascript:/data: URLs, CSS,
    the tracking image, iframe and form are gone, and the page carries a strict CSP."""
    hostile = message_id(site, "<hostile@example.org>")
    _, headers, page = site.get(f"/groups/{GROUP}/archive/msg/{hostile}/")
    body = page.split('<main id="content"', 1)[1]
    assert "Read the hostile report." in body and 'href="https://example.org/report"' in body
    for bad in ("<script", "javascript:", "data:text", "<style", "style=", "onclick", "onerror", "onload", "<img",
                "tracker.example", "<iframe", "evil.example", "<svg", "http-equiv"):
        assert bad not in body, bad
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt; Hostile newsletter" in body
    assert "script-src" not in headers["content-security-policy"]
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert headers["x-content-type-options"] == "nosniff"


def test_search_finds_public_posts_only(site: Website) -> None:
    """`/search` finds public posts by their words (per group with &group=), never a held or private one, and
    a query in FTS syntax is just words."""
    _, _, page = site.get("/search?q=integration+indicators")
    assert "Kick-off meeting in Bologna" in page and "1 result" in page
    _, _, page = site.get("/search?q=housing")
    assert "Kick-off meeting in Bologna" in page and "Private matter" not in page
    _, _, page = site.get("/search?q=must+never+be+published")
    assert "0 results" in page
    assert "1 result<" in site.get(f"/search?q=agenda&group={GROUP}")[2]
    assert "0 results" in site.get("/search?q=agenda&group=housing-first")[2]
    status, _, page = site.get("/search?q=" + urllib.parse.quote('housing* ")^:('))
    assert status == 200 and "Kick-off meeting in Bologna" in page


def test_private_archive_is_not_published_until_the_operator_says(site: Website, tmp_path: Path) -> None:
    """A group set private has no archive, messages or posts in its feed; `wgbot group set --archive public`
    publishes it."""
    private = message_id(site, "<private@example.com>")
    assert site.get("/groups/board-room/archive/")[0] == 404
    assert site.get(f"/groups/board-room/archive/msg/{private}/")[0] == 404
    assert "Private matter" not in site.get("/groups/board-room/feed.atom")[2]
    config = tmp_path / "config.toml"
    config.write_text('[network]\nname = "N"\nlist_domain = "lists.example.org"\n'
                      'bot_address = "wgbot@lists.example.org"'
                      f'\n[database]\nurl = "{site.cfg.database.url}"\n')
    try:
        assert main(["--config", str(config), "group", "set", "board-room", "--archive", "public"]) == 0
        assert site.get(f"/groups/board-room/archive/msg/{private}/")[0] == 200
        assert "Private matter" in site.get("/search?q=budget")[2]
    finally:
        assert main(["--config", str(config), "group", "set", "board-room", "--archive", "private"]) == 0
    assert site.get(f"/groups/board-room/archive/msg/{private}/")[0] == 404


def test_feeds_calendar_and_json(site: Website) -> None:
    """The Atom feed (RFC 4287) has the group's posts and report; the calendar (RFC 5545) parses and has the
    deadline and the comment period; /api/groups.json is exactly `wgbot groups --json`."""
    status, headers, atom = site.get(f"/groups/{GROUP}/feed.atom")
    assert status == 200 and headers["content-type"].startswith("application/atom+xml")
    ns = {"a": "http://www.w3.org/2005/Atom"}
    titles = [e.findtext("a:title", namespaces=ns) for e in ET.fromstring(atom).findall("a:entry", ns)]
    assert "Kick-off meeting in Bologna" in titles and "Yearly report: Inclusion in 2026" in titles
    assert len(titles) == 4
    _, headers, ics = site.get("/deadlines.ics")
    assert headers["content-type"].startswith("text/calendar")
    events = {str(e["SUMMARY"]): e for e in icalendar.Calendar.from_ical(ics).walk("VEVENT")}
    assert str(events["Migrant Inclusion: yearly report due"].decoded("DTSTART")) == "2027-05-20"
    comments = events["Migrant Inclusion: public comments on the yearly report"]
    assert "migrant-inclusion-comments@lists.example.org" in str(comments["DESCRIPTION"])
    assert all(str(e["UID"]).endswith("@lists.example.org") for e in events.values())
    _, headers, data = site.get("/api/groups.json")
    with site.sessions() as session:
        assert json.loads(data) == list_groups(session) and headers["content-type"] == "application/json"


def test_errors_are_pages(site: Website) -> None:
    """Unknown paths, months and messages, and a wrong method, get a page with the network's name."""
    for path in ("/nothing", f"/groups/{GROUP}/archive/1999-01/", f"/groups/{GROUP}/archive/msg/99999/",
                 f"/groups/{GROUP}/archive/msg/1/99/x.pdf"):
        status, headers, page = site.get(path)
        assert status == 404 and "<h1>Not found</h1>" in page and "ECCAR Test Network" in page, path
        assert headers["content-security-policy"]
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(site.url + "/", data=b"x", method="POST"), timeout=10)
    assert err.value.code == 405 and b"Not allowed" in err.value.read()
    err.value.close()


class Served:
    """web.start() on an event loop of its own in a thread, as `wgbot run` would call it."""

    def __init__(self, cfg: object, sessions: object) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.server: web.WebServer | None = None

        async def run() -> None:
            self.server = await web.start(sessions, cfg)  # type: ignore[arg-type]
            started.set()
            if self.server is not None:
                await self.server.wait_closed(30)
        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(run()))
        self.thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        if self.server is not None:
            self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(15)
        self.loop.close()


def test_a_fault_of_ours_is_a_page_and_a_taken_port_does_not_stop_the_bot(tmp_path: Path) -> None:
    """A store that fails (here: never migrated) gives a 500 page, not a traceback; a port already in use is
    logged and start() returns None so mail goes on."""
    port = free_port()
    cfg = make_config(tmp_path, web={"enabled": True, "port": port})
    engine = make_engine(f"sqlite:///{tmp_path}/empty.sqlite3")
    sessions = make_sessionmaker(engine)
    served = Served(cfg, sessions)
    try:
        assert served.server is not None
        status, headers, page = Website(cfg, sessions, f"http://127.0.0.1:{port}").get("/")
        assert status == 500 and "<h1>Sorry</h1>" in page and "Traceback" not in page
        assert headers["content-security-policy"]
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            busy = make_config(tmp_path, web={"enabled": True, "port": taken.getsockname()[1]})
            other = Served(busy, sessions)
            assert other.server is None
            other.stop()
    finally:
        served.stop()
        engine.dispose()


def test_embedded_set_up_serves_the_pages(tmp_path: Path) -> None:
    """`wgbot init && wgbot run` on the embedded defaults serves the directory at once (only the ports are moved
    off 8025/8080 so that tests can run side by side), and SIGTERM still stops the bot with exit 0."""
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in __import__("os").environ.items() if k != "WGBOT_CONFIG"}
    subprocess.run([sys.executable, "-m", "wgbot", "init"], cwd=tmp_path, check=True, capture_output=True, env=env)
    config = tmp_path / "config.toml"
    web_port, smtp_port = free_port(), free_port()
    text = config.read_text()
    assert "enabled = true                            # http://127.0.0.1:8080/" in text
    config.write_text(text.replace("port = 8080", f"port = {web_port}").replace("port = 8025", f"port = {smtp_port}"))
    bot = subprocess.Popen([sys.executable, "-m", "wgbot", "run"], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        site = Website(make_config(tmp_path), None, f"http://127.0.0.1:{web_port}")  # type: ignore[arg-type]
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, page = site.get("/")
                break
            except OSError:
                assert time.monotonic() < deadline, "the pages did not come up"
                time.sleep(0.1)
        assert status == 200 and "<h1>Example Network: working groups</h1>" in page
    finally:
        bot.send_signal(signal.SIGTERM)
        _, err = bot.communicate(timeout=30)
    assert bot.returncode == 0, err.decode()[-2000:]
