"""Group mailing lists over real SMTP: posts in through the listener, copies out to a capturing relay."""

from __future__ import annotations

import email
import mailbox
import re
import smtplib
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import make_config
from tests.helpers import Captured, Relay, add_members, free_port, make_group
from tests.integration.test_listener import Bot, wait_for
from wgbot.cli import main
from wgbot.db import migrate
from wgbot.store import Membership, Post, make_engine, make_sessionmaker

MEMBERS = {"r1@example.com": "regular", "r2@example.net": "regular", "d1@example.com": "digest",
           "n1@example.com": "nomail"}
REGULAR = {"chair@city.example", "r1@example.com", "r2@example.net"}


class ListBot:
    def __init__(self, bot: Bot, relay: Relay, tmp_path: Path) -> None:
        self.bot, self.relay, self.tmp_path = bot, relay, tmp_path
        self.n = 0

    def post(self, sender: str, body: str = "Hello all.\r\n", subject: str = "Hello", to: str = "grp@lists.example.org",
             headers: dict[str, str] | None = None, raw: bytes | None = None, envelope: str | None = None) -> None:
        self.n += 1
        if raw is None:
            lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: <post{self.n}@example.com>"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            if not any(k.lower() == "content-type" for k in (headers or {})):
                lines.append("Content-Type: text/plain; charset=utf-8")
            raw = ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
        with smtplib.SMTP("127.0.0.1", self.bot.port) as client:
            client.sendmail(envelope if envelope is not None else sender, [to], raw)

    def copies(self, n: int, subject: str = "[grp]") -> list[Captured]:
        def found() -> list[Captured]:
            return [m for m in list(self.relay.messages) if subject in str(m.message["Subject"])]
        wait_for(lambda: len(found()) >= n, timeout=10)
        return found()


def start(tmp_path: Path, relay: Relay, **lists: Any) -> Iterator[ListBot]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    network = lists.pop("network", {})
    web = lists.pop("web", {"enabled": False})
    cfg = make_config(tmp_path, network=network, lists=lists, web=web, **{"inbound.smtp": {"port": free_port()}},
                      outbound={"transport": "smtp", "port": relay.port})
    engine = make_engine(f"sqlite:///{tmp_path}/wgbot.sqlite3")
    migrate(engine)
    sessions = make_sessionmaker(engine)
    make_group(sessions, cfg, name="grp")
    add_members(sessions, "grp", MEMBERS)
    with Bot(cfg, sessions) as bot:
        yield ListBot(bot, relay, tmp_path)
    engine.dispose()


@pytest.fixture
def lists(tmp_path: Path, relay: Relay) -> Iterator[ListBot]:
    yield from start(tmp_path, relay)


def test_post_reaches_regular_members_with_list_headers(lists: ListBot, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A member's post goes to each regular member (not digest or nomail ones), one SMTP transaction each with a
    VERP return path, with the RFC 2369/2919 headers, the prefix, the footer, and the poster's threading."""
    lists.post("Alice <r1@example.com>", headers={"In-Reply-To": "<p0@example.com>",
                                                  "References": "<p00@example.com> <p0@example.com>"})
    copies = lists.copies(3)
    assert {c.rcpt_tos[0] for c in copies} == REGULAR and all(len(c.rcpt_tos) == 1 for c in copies)
    for c in copies:
        local, domain = c.rcpt_tos[0].split("@")
        assert re.fullmatch(rf"grp-bounces\+{re.escape(local)}={re.escape(domain)}=[0-9a-f]{{10}}@lists\.example\.org",
                            c.envelope_from), c.envelope_from
    m = copies[0].message
    assert m["List-Id"] == "grp <grp.lists.example.org>"
    assert m["List-Post"] == "<mailto:grp@lists.example.org>"
    assert m["List-Help"] == "<mailto:wgbot@lists.example.org?subject=help>"
    assert m["List-Subscribe"] == "<mailto:grp-join@lists.example.org>"
    assert m["List-Unsubscribe"] == "<mailto:grp-leave@lists.example.org>"
    assert m["Precedence"] == "list" and m["X-BeenThere"] == "grp@lists.example.org"
    assert m["Subject"] == "[grp] Hello" and m["Message-ID"] == "<post1@example.com>"
    assert m["In-Reply-To"] == "<p0@example.com>" and m["References"] == "<p00@example.com> <p0@example.com>"
    assert m["From"] == "Alice via grp <grp@lists.example.org>" and m["Reply-To"] == "Alice <r1@example.com>"
    body = m.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert body.startswith("Hello all.") and "\n-- \ngrp mailing list: grp@lists.example.org" in body
    # The archive keeps the original, headers and all.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text('[network]\nname = "N"\nlist_domain = "lists.example.org"\n'
                                          'bot_address = "wgbot@lists.example.org"\nrules = "igf"\n'
                                          f'[database]\nurl = "sqlite:///{tmp_path}/wgbot.sqlite3"\n')
    assert main(["--config", str(tmp_path / "config.toml"), "archive", "grp", "--output", "grp.mbox"]) == 0
    box = mailbox.mbox(str(tmp_path / "grp.mbox"))
    (archived,) = list(box)
    box.close()
    assert archived["From"] == "Alice <r1@example.com>" and archived["Subject"] == "Hello"


def test_reply_subject_is_not_prefixed_twice(lists: ListBot) -> None:
    """`Re: [grp] Hello` keeps a single prefix."""
    lists.post("r2@example.net", subject="Re: [grp] Hello")
    assert {str(c.message["Subject"]) for c in lists.copies(3)} == {"Re: [grp] Hello"}


def test_loop_is_dropped(lists: ListBot) -> None:
    """A post that has already been through this list (X-BeenThere or our List-Id) is dropped."""
    lists.post("r1@example.com", headers={"X-BeenThere": "grp@lists.example.org"}, subject="loop one")
    lists.post("r1@example.com", headers={"List-Id": "grp <grp.lists.example.org>"}, subject="loop two")
    lists.post("r1@example.com", subject="fine")
    lists.copies(3, "fine")
    assert not [m for m in lists.relay.messages if "loop" in str(m.message["Subject"])]


def test_footer_keeps_the_mime_structure(lists: ListBot) -> None:
    """On multipart/alternative the footer goes in a new multipart/mixed around the untouched alternative."""
    raw = (b"From: r1@example.com\r\nTo: grp@lists.example.org\r\nSubject: html\r\nMessage-ID: <alt@example.com>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=ALT\r\n\r\n"
           b"--ALT\r\nContent-Type: text/plain\r\n\r\nplain version\r\n"
           b"--ALT\r\nContent-Type: text/html\r\n\r\n<p>html version</p>\r\n--ALT--\r\n")
    lists.post("r1@example.com", raw=raw)
    m = lists.copies(3)[0].message
    assert m.get_content_type() == "multipart/mixed"
    alternative, footer = list(m.iter_parts())  # type: ignore[attr-defined]
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content().strip() for p in alternative.iter_parts()] == ["plain version", "<p>html version</p>"]
    assert "grp mailing list" in footer.get_content()


def test_from_policies(tmp_path: Path, relay: Relay) -> None:
    """keep leaves From alone; wrap sends the original as message/rfc822 from the list."""
    for policy_name in ("keep", "wrap"):
        relay.messages.clear()
        for lb in start(tmp_path / policy_name, relay, from_policy=policy_name):
            lb.post("Alice <r1@example.com>")
            m = lb.copies(3)[0].message
            if policy_name == "keep":
                assert m["From"] == "Alice <r1@example.com>" and m["Reply-To"] is None
            else:
                assert m["From"] == "Alice via grp <grp@lists.example.org>"
                parts = list(m.iter_parts())  # type: ignore[attr-defined]
                assert [p.get_content_type() for p in parts] == ["text/plain", "message/rfc822"]
                inner = parts[1].get_content()
                assert inner["From"] == "Alice <r1@example.com>" and inner["Subject"] == "Hello"
                assert m["List-Id"] == "grp <grp.lists.example.org>"


def test_batched_delivery_and_one_click_unsubscribe(tmp_path: Path, relay: Relay) -> None:
    """personalize = false sends one transaction for all recipients; with base_url each recipient gets its own
    https List-Unsubscribe and List-Unsubscribe-Post (RFC 8058) and so its own transaction."""
    for lb in start(tmp_path / "batched", relay, personalize=False):
        lb.post("r1@example.com")
        (copy,) = lb.copies(1)
        assert sorted(copy.rcpt_tos) == sorted(REGULAR) and copy.envelope_from == "grp-bounces@lists.example.org"
    relay.messages.clear()
    for lb in start(tmp_path / "oneclick", relay, network={"base_url": "https://lists.example.org"}):
        lb.post("r1@example.com")
        copies = lb.copies(3)
        urls = {str(c.message["List-Unsubscribe"]) for c in copies}
        assert len(urls) == 3 and all("<https://lists.example.org/unsubscribe/grp/" in u for u in urls)
        assert all(c.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for c in copies)
        assert all(len(c.message.get_all("List-Unsubscribe")) == 1 for c in copies)


def arrived(lists: ListBot, subject: str) -> Any:
    """The first message at the relay whose Subject contains `subject`, once it has arrived."""
    def found() -> Any:
        return next((m for m in lists.relay.messages if subject in str(m.message["Subject"])), None)
    wait_for(lambda: found() is not None)
    return found()


def test_moderation_by_reply(lists: ListBot) -> None:
    """A non-member's post is held; the contact approves by replying; the post then goes out; a second
    decision changes nothing."""
    lists.post("Stranger <stranger@else.example>", subject="Held one")
    request = arrived(lists, "Approval needed")
    assert request.rcpt_tos == ["chair@city.example"]
    text = request.message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "stranger@else.example is not a member of grp" in " ".join(text.split())
    held = arrived(lists, "waiting for approval")   # a separate message: it may come a moment later
    assert held.rcpt_tos == ["stranger@else.example"]
    reply_to = str(request.message["Reply-To"])
    lists.post("chair@city.example", body="approve\r\n", subject="Re: approval", to=reply_to)
    copies = lists.copies(3, "[grp] Held one")
    assert {c.rcpt_tos[0] for c in copies} == REGULAR


def test_moderation_reject_and_hold_reasons(lists: ListBot) -> None:
    """Rejected held posts are not sent and the poster hears why; too-large posts and unwanted attachment types
    are held with the reason."""
    lists.post("stranger@else.example", subject="Spam")
    request = arrived(lists, "Approval needed")
    lists.post("chair@city.example", body="reject: off topic\r\n", subject="Re: x", to=str(request.message["Reply-To"]))
    wait_for(lambda: any("was rejected" in str(m.message["Subject"]) for m in lists.relay.messages
                         if m.rcpt_tos == ["stranger@else.example"]))
    raw = (b"From: r1@example.com\r\nTo: grp@lists.example.org\r\nSubject: exe\r\nMessage-ID: <exe@example.com>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\nContent-Type: text/plain\r\n"
           b"\r\nsee attached\r\n--M\r\nContent-Type: application/x-msdownload; name=a.exe\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--M--\r\n")
    lists.post("r1@example.com", raw=raw)
    wait_for(lambda: any("application/x-msdownload" in m.data.decode(errors="replace")
                         for m in lists.relay.messages if "Approval needed" in str(m.message["Subject"])))
    assert not [m for m in lists.relay.messages if str(m.message["Subject"]).startswith("[grp] Spam")]


def test_owner_address_reaches_the_contacts(lists: ListBot) -> None:
    """Mail to SLUG-owner@ is forwarded to the group's contacts."""
    lists.post("someone@else.example", subject="Question for the owners", to="grp-owner@lists.example.org")
    wait_for(lambda: any(m.rcpt_tos == ["chair@city.example"] and "Question for the owners" in
                         str(m.message["Subject"]) for m in lists.relay.messages))


def test_posts_are_stored_for_archive_and_digests(lists: ListBot) -> None:
    """Every accepted post is kept with its original bytes."""
    lists.post("r1@example.com", subject="Kept")
    lists.copies(3, "Kept")
    with lists.bot.sessions() as session:
        (post,) = session.scalars(select(Post)).all()
    original = email.message_from_bytes(post.raw, policy=policy.default)
    assert original["Subject"] == "Kept" and original["From"] == "r1@example.com"


def test_one_click_unsubscribe_endpoint(tmp_path: Path, relay: Relay) -> None:
    """The https List-Unsubscribe URL works: a GET only shows a button (link scanners must not unsubscribe),
    a POST with List-Unsubscribe=One-Click removes the member, and a forged token is refused."""
    import urllib.error
    import urllib.request

    port = free_port()
    for lb in start(tmp_path, relay, network={"base_url": "https://lists.example.org/wg"},
                    web={"enabled": True, "port": port}):
        lb.post("r1@example.com")
        copy = next(c for c in lb.copies(3) if c.rcpt_tos == ["r2@example.net"])
        url = str(copy.message["List-Unsubscribe"]).split("<")[2].rstrip(">")
        local = url.replace("https://lists.example.org/wg", f"http://127.0.0.1:{port}")

        def members(lb: ListBot = lb) -> set[str]:
            with lb.bot.sessions() as session:
                return {m.member.address for m in session.scalars(select(Membership))}
        with urllib.request.urlopen(local, timeout=5) as page:
            assert page.status == 200 and b"<form method=\"post\">" in page.read()
        assert "r2@example.net" in members()
        forged = local[:-4] + "0000"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(forged, data=b"List-Unsubscribe=One-Click"), timeout=5)
        assert err.value.code == 404
        err.value.close()
        request = urllib.request.Request(local, data=b"List-Unsubscribe=One-Click", method="POST")
        with urllib.request.urlopen(request, timeout=5) as page:
            assert page.status == 200 and b"You have left grp" in page.read()
        assert "r2@example.net" not in members() and "r1@example.com" in members()


def test_group_set_moderates_and_sets_the_from_policy(lists: ListBot, tmp_path: Path) -> None:
    """`wgbot group set` puts a member under moderation and changes the group's From policy."""
    config = tmp_path / "config.toml"
    config.write_text('[network]\nname = "N"\nlist_domain = "lists.example.org"\n'
                      'bot_address = "wgbot@lists.example.org"\nrules = "igf"\n'
                      f'[database]\nurl = "sqlite:///{tmp_path}/wgbot.sqlite3"\n')
    assert main(["--config", str(config), "group", "set", "grp", "--moderate", "r1@example.com",
                 "--from-policy", "keep"]) == 0
    assert main(["--config", str(config), "group", "set", "grp", "--moderate", "nobody@x.example"]) == 1
    lists.post("Alice <r1@example.com>", subject="moderated")
    wait_for(lambda: any("Approval needed" in str(m.message["Subject"]) for m in lists.relay.messages))
    lists.post("Bob <r2@example.net>", subject="kept")
    (copy, *_) = lists.copies(3, "[grp] kept")
    assert copy.message["From"] == "Bob <r2@example.net>"
