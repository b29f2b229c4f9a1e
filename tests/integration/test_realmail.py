"""Ordinary real-world mail goes through (issue 11 item 6, and the intake bullets of item 8): shapes that mail
clients write every day, sent through the real listener, with the list copies caught by a capturing relay
(aiosmtpd, which refuses lines over 1,001 octets as RFC 5321 §4.5.3.1.6 allows)."""

from __future__ import annotations

import email
import smtplib
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.helpers import Relay, queued
from tests.integration.test_listener import wait_for
from tests.integration.test_lists import REGULAR, ListBot, start
from wgbot.store import InboundMessage, OutgoingMessage, Post


@pytest.fixture
def lists(tmp_path: Path, relay: Relay) -> Iterator[ListBot]:
    yield from start(tmp_path, relay)


def send_raw(lists: ListBot, raw: bytes, sender: str,
             to: str = "grp@lists.example.org") -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", lists.bot.port) as client:
        return client.sendmail(sender, [to], raw)


def inbound(lists: ListBot) -> list[InboundMessage]:
    with lists.bot.sessions() as session:
        rows = list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))
        session.expunge_all()
        return rows


def wait_processed(lists: ListBot, n: int) -> list[InboundMessage]:
    wait_for(lambda: len(inbound(lists)) >= n and all(r.status != "pending" for r in inbound(lists)), timeout=20)
    return inbound(lists)


def test_folded_from_header_is_unfolded(lists: ListBot) -> None:
    """`From: Alice Example` CRLF ` <r1@example.com>` (a long display name, folded as RFC 5322 §2.2.3 allows) is
    read as one mailbox: the post reaches every regular member and the command gets its answer."""
    raw = (b"From: Alice Example of the City of Bologna Department of Social Affairs\r\n <r1@example.com>\r\n"
           b"To: grp@lists.example.org\r\nSubject: folded\r\nMessage-ID: <fold1@example.com>\r\n"
           b"Date: Mon, 30 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello all.\r\n")
    send_raw(lists, raw, "r1@example.com")
    copies = lists.copies(3, "[grp] folded")
    assert {c.rcpt_tos[0] for c in copies} == REGULAR
    assert "Alice Example of the City of Bologna" in str(copies[0].message["From"])
    command = raw.replace(b"grp@lists", b"wgbot@lists").replace(b"fold1", b"fold2").replace(b"Hello all.", b"help")
    send_raw(lists, command, "r1@example.com", "wgbot@lists.example.org")
    wait_for(lambda: any(m.rcpt_tos == ["r1@example.com"] for m in lists.relay.messages), timeout=10)
    assert [r.status for r in wait_processed(lists, 2)] == ["done", "done"]


def test_html_only_post_in_8bit_utf8_reaches_the_list(lists: ListBot) -> None:
    """A single-part text/html post in 8-bit UTF-8 (as Outlook and Apple Mail send one) is copied with its
    bytes intact instead of failing with UnicodeEncodeError."""
    html = "<html><body><p>Caffè e crème brûlée, 20 €, Ελληνικά.</p></body></html>\r\n"
    raw = ("From: Alice <r1@example.com>\r\nTo: grp@lists.example.org\r\nSubject: html\r\n"
           "Message-ID: <html1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n" + html).encode()
    send_raw(lists, raw, "r1@example.com")
    copies = lists.copies(3, "[grp] html")
    message = copies[0].message
    parts = {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}
    assert parts["text/html"].replace("\r\n", "\n") == html.replace("\r\n", "\n")
    assert "grp mailing list" in parts["text/plain"]      # the footer, as its own part


def test_undeclared_utf8_headers_are_reencoded(lists: ListBot) -> None:
    """Raw UTF-8 in From and Subject without encoded words (RFC 6532 style, sent to a server without SMTPUTF8)
    comes out RFC 2047-encoded: ASCII-only headers that decode to the same names, the address left intact."""
    raw = ("From: Jürgen Müller <r1@example.com>\r\nTo: Gruppe für Inklusion <grp@lists.example.org>\r\n"
           "Subject: Grüße aus Köln\r\nMessage-ID: <utf1@example.com>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo zusammen.\r\n"
           ).encode()
    send_raw(lists, raw, "r1@example.com")
    copies = lists.copies(3, "Köln")
    head = copies[0].data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    message = copies[0].message
    assert str(message["Subject"]) == "[grp] Grüße aus Köln"
    assert message["Reply-To"].addresses[0].addr_spec == "r1@example.com"
    assert message["Reply-To"].addresses[0].display_name == "Jürgen Müller"
    assert message["To"].addresses[0].display_name == "Gruppe für Inklusion"


def test_lines_over_998_octets_are_accepted_and_reencoded(lists: ListBot) -> None:
    """A plain-text post with a 3,000-octet line (a pasted paragraph, a long URL) is accepted at DATA (not 500)
    and its list copies are re-encoded quoted-printable, so a relay that enforces RFC 5322 §2.1.1 takes them."""
    paragraph = " ".join(f"word{i}" for i in range(500))
    assert len(paragraph) > 3000
    raw = ("From: Alice <r1@example.com>\r\nTo: grp@lists.example.org\r\nSubject: long line\r\n"
           "Message-ID: <long1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
           "Content-Transfer-Encoding: 7bit\r\n\r\n" + paragraph + "\r\n").encode()
    assert send_raw(lists, raw, "r1@example.com") == {}
    copies = lists.copies(3, "[grp] long line")
    assert all(len(line) <= 998 for c in copies for line in c.data.split(b"\r\n"))
    message = copies[0].message
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert paragraph in message.get_content()


def test_broken_mime_boundaries_fall_back_and_show_no_internal_error(lists: ListBot) -> None:
    """A message that is a bare message/rfc822 whose inner multipart never opens its boundary crashed
    mail-parser (TypeError) and the refusal quoted the exception; now the standard parser reads it."""
    raw = (b"From: Alice <r1@example.com>\r\nTo: wgbot@lists.example.org\r\nSubject: help\r\n"
           b"Message-ID: <mime1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
           b"From: Bob <bob@example.net>\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\nno delimiter line ever opens b1\r\n")
    send_raw(lists, raw, "r1@example.com", "wgbot@lists.example.org")
    [row] = wait_processed(lists, 1)
    assert row.status == "done", row.error
    replies = queued(lists.bot.sessions)
    assert replies and all("Error" not in str(m) for _, m in replies)


def test_post_without_message_id_gets_one_in_copies_and_archive(lists: ListBot) -> None:
    """A post without Message-ID (scripts, some webmail) gets one: every copy carries the same id, and the
    archived post has it too, so replies thread."""
    raw = (b"From: Alice <r1@example.com>\r\nTo: grp@lists.example.org\r\nSubject: no id\r\n"
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\nHello.\r\n")
    send_raw(lists, raw, "r1@example.com")
    copies = lists.copies(3, "[grp] no id")
    ids = {str(c.message["Message-ID"]) for c in copies}
    assert len(ids) == 1 and ids.pop().endswith("@lists.example.org>")
    with lists.bot.sessions() as session:
        post = session.scalars(select(Post)).one()
        archived = email.message_from_bytes(post.raw, policy=policy.default)
        assert post.message_id == str(copies[0].message["Message-ID"]) == str(archived["Message-ID"])
        stored = session.scalars(select(OutgoingMessage.message_id).where(OutgoingMessage.kind == "post")).one()
        assert stored == post.message_id


def test_nul_bytes_never_reach_list_copies(lists: ListBot) -> None:
    """NUL bytes in a post's body (RFC 5322 §2.3 forbids them) are stripped from the copies."""
    raw = (b"From: Alice <r1@example.com>\r\nTo: grp@lists.example.org\r\nSubject: nul\r\n"
           b"Message-ID: <nul1@example.com>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
           b"Hello\x00 all\x00.\r\n")
    send_raw(lists, raw, "r1@example.com")
    copies = lists.copies(3, "[grp] nul")
    assert all(b"\x00" not in c.data for c in copies)
    assert "Hello all." in copies[0].message.get_content()


def test_unreadable_header_block_gets_one_answer(lists: ListBot) -> None:
    """A message without any From header (a script's mail) from a valid envelope sender is answered once a day
    with the reason; a second one is not answered, nor one from an automated envelope or marked automated."""
    def without_from(n: int, extra: str = "") -> bytes:
        return (f"To: wgbot@lists.example.org\r\nSubject: report\r\nMessage-ID: <nofrom{n}@example.com>\r\n{extra}"
                "Content-Type: text/plain\r\n\r\nhelp\r\n").encode()

    send_raw(lists, without_from(1), "script@example.com", "wgbot@lists.example.org")
    send_raw(lists, without_from(2), "script@example.com", "wgbot@lists.example.org")
    send_raw(lists, without_from(3), "MAILER-DAEMON@mx.example.net", "wgbot@lists.example.org")
    send_raw(lists, without_from(4, "Auto-Submitted: auto-generated\r\n"), "cron@example.org",
             "wgbot@lists.example.org")
    rows = wait_processed(lists, 4)
    assert [r.status for r in rows] == ["quarantined"] * 4
    answers = queued(lists.bot.sessions)
    assert [r for r, _ in answers] == ["script@example.com"]
    body = answers[0][1].get_content()
    assert "no From header" in body and "could not be read" in str(answers[0][1]["Subject"])


def test_more_than_50_recipients_get_452(lists: ListBot) -> None:
    """RCPT TO number 51 and beyond in one transaction get 452 4.5.3 (RFC 5321 §4.5.3.1.10): the message is
    stored for 50 recipients, and the client sends the rest again in another transaction."""
    recipients = [f"wgbot+confirm-{i:030d}@lists.example.org" for i in range(60)]   # all routed as ours
    raw = b"From: Alice <r1@example.com>\r\nSubject: many\r\nMessage-ID: <many@example.com>\r\n\r\nhelp\r\n"
    with smtplib.SMTP("127.0.0.1", lists.bot.port) as client:
        refused = client.sendmail("r1@example.com", recipients, raw)
    assert sorted(refused) == sorted(recipients[50:])
    assert all(code == 452 and b"4.5.3" in text for code, text in refused.values())
    with lists.bot.sessions() as session:
        assert len(session.scalars(select(InboundMessage.id)).all()) == 50


@pytest.fixture
def kept(tmp_path: Path, relay: Relay) -> Iterator[ListBot]:
    yield from start(tmp_path, relay, from_policy="keep")


def test_two_lists_subscribed_to_each_other_do_not_loop(kept: ListBot) -> None:
    """r2@example.net forwards the list to another list that strips our X-BeenThere and List-Id before sending
    it back to us (as we used to strip theirs): the copy that comes back is dropped, not sent a second time."""
    kept.post("Alice <r1@example.com>", subject="round trip")
    copies = kept.copies(3, "[grp] round trip")
    back = next(c for c in copies if c.rcpt_tos == ["r2@example.net"]).message
    for name in ("X-BeenThere", "List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Unsubscribe",
                 "Precedence"):
        del back[name]
    back["X-BeenThere"] = "other@lists.other.example"
    # The other list sends from its posting address (a -owner/-bounces envelope is already dropped by the gate
    # as automated mail to a list): only the loop check can stop this copy.
    send_raw(kept, back.as_bytes(), "other@lists.other.example")
    rows = wait_processed(kept, 2)
    assert rows[1].status == "ignored" and "already distributed" in rows[1].outcome
    assert len(kept.copies(3, "round trip")) == 3


def test_another_lists_marker_is_kept_on_our_copy(kept: ListBot) -> None:
    """A post that came through another list keeps that list's X-BeenThere on our copy (so that list sees its
    own post come back), with ours added below it."""
    kept.post("Alice <r1@example.com>", subject="via other", headers={"X-BeenThere": "other@lists.other.example"})
    message = kept.copies(3, "[grp] via other")[0].message
    assert message.get_all("X-BeenThere") == ["other@lists.other.example", "grp@lists.example.org"]


def test_one_message_to_many_of_our_addresses_is_stored_once(lists: ListBot) -> None:
    """One SMTP transaction to the list, its owners and the command address stores the bytes once (the other
    rows refer to them), and each recipient's row is still processed with the whole message."""
    raw = (b"From: Alice <r1@example.com>\r\nTo: grp@lists.example.org, grp-owner@lists.example.org\r\n"
           b"Cc: wgbot@lists.example.org\r\nSubject: three ways\r\nMessage-ID: <three@example.com>\r\n"
           b"Content-Type: text/plain\r\n\r\nhelp\r\n" + b"x" * 20_000 + b"\r\n")
    with smtplib.SMTP("127.0.0.1", lists.bot.port) as client:
        client.sendmail("r1@example.com", ["grp@lists.example.org", "grp-owner@lists.example.org",
                                           "wgbot@lists.example.org"], raw)
    rows = wait_processed(lists, 3)
    assert [r.status for r in rows] == ["done", "done", "done"]
    assert sum(len(r.raw_bytes) for r in rows) == len(raw)
    assert all(r.raw_of == rows[0].id for r in rows[1:])
    lists.copies(3, "[grp] three ways")
    with lists.bot.sessions() as session:
        assert all(session.get(InboundMessage, r.id).raw == raw for r in rows)  # type: ignore[union-attr]


def test_one_message_to_many_spellings_of_a_list_is_one_row_and_one_request(lists: ListBot) -> None:
    """A stranger's message to grp@, GRP@, Grp@ and gRp@LISTS… (one address to route(), four to a naive store)
    is stored once and asks the contacts once, not once per spelling."""
    spellings = ["grp@lists.example.org", "GRP@lists.example.org", "Grp@lists.example.org", "gRp@LISTS.example.org"]
    raw = (b"From: Stranger <stranger@example.net>\r\nTo: grp@lists.example.org\r\nSubject: buy now\r\n"
           b"Message-ID: <spam1@example.net>\r\nContent-Type: text/plain\r\n\r\nAn offer.\r\n")
    with smtplib.SMTP("127.0.0.1", lists.bot.port) as client:
        assert client.sendmail("stranger@example.net", spellings, raw) == {}
    rows = wait_processed(lists, 1)
    assert len(rows) == 1 and "held for the contacts" in rows[0].outcome
    asked = [r for r, m in queued(lists.bot.sessions) if "buy now" in str(m["Subject"])]
    assert [r for r in asked if r != "stranger@example.net"] == ["chair@city.example"]
