"""parse: caps before parsing, one From mailbox, decoded subject, first text part, case-insensitive headers."""

from __future__ import annotations

import time

import pytest

from tests.helpers import mail
from wgbot.errors import MessageRefused
from wgbot.parse import Caps, parse


def test_plain_message() -> None:
    """The sender's addr-spec, subject, text and Message-ID come out of a plain message."""
    msg = parse(mail("join migrants\r\n", subject="hello", sender='"Alice A." <Alice@Example.com>'))
    assert msg.sender == "Alice@Example.com" and msg.display_name == "Alice A."
    assert msg.subject == "hello" and msg.text.strip() == "join migrants" and msg.message_id == "<m1@example.com>"


def test_encoded_subject_is_decoded() -> None:
    """RFC 2047 encoded words in the Subject are decoded."""
    msg = parse(mail("x", subject="=?utf-8?q?caf=C3=A9_join?="))
    assert msg.subject == "café join"


def test_first_text_part_of_multipart() -> None:
    """The first text/plain part is read; attachments and later parts are not."""
    raw = (b"From: a@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n"
           b"help\r\n--XX\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nleave x\r\n--XX--\r\n")
    assert parse(raw).text.strip() == "help"


def test_html_only_is_converted() -> None:
    """An HTML-only message is read as text (SPEC §3); scripts vanish, entities decode."""
    raw = (b"From: a@example.com\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n"
           b"<html><body><p>join migrants</p><script>leave x</script><div>who a&amp;b</div></body></html>")
    msg = parse(raw)
    assert msg.text_from_html
    assert [line for line in msg.text.splitlines() if line] == ["join migrants", "who a&b"]


def test_automation_headers_are_case_insensitive() -> None:
    """PRECEDENCE, auto-SUBMITTED and list-id are read whatever their case."""
    msg = parse(mail("x", headers={"PRECEDENCE": "bulk", "auto-SUBMITTED": "auto-replied", "list-id": "<a.b.c>"}))
    assert msg.header("Precedence") == "bulk" and msg.header("AUTO-SUBMITTED") == "auto-replied"
    assert msg.header("List-Id") == "<a.b.c>"


@pytest.mark.parametrize(("caps", "raw", "why"), [
    (Caps(max_size=100), mail("x" * 200), "limit is 100"),
    (Caps(max_header_bytes=500), mail("x", headers={"X-Big": "y" * 600}), "header block"),
    (Caps(max_header_fields=20), mail("x", headers={f"X-{i}": "y" for i in range(30)}), "header fields"),
    (Caps(), b"".join(b"Received: from x\r\n" for _ in range(150)) + mail("x"), "Received"),
])
def test_caps_refuse_before_parsing(caps: Caps, raw: bytes, why: str) -> None:
    """Messages over a cap are refused, naming the cap."""
    with pytest.raises(MessageRefused, match=why):
        parse(raw, caps)


def test_many_parts_refused_quickly() -> None:
    """100,000 sibling parts are refused by the part cap in bounded time (mail-safety §4.1 item 18)."""
    raw = (b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           + b"--B\r\n\r\n" * 100_000 + b"--B--\r\n")
    started = time.monotonic()
    with pytest.raises(MessageRefused, match="MIME parts"):
        parse(raw, Caps(max_size=len(raw) + 1))
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("name", ["Subject", "List-Id", "Auto-Submitted", "Precedence", "X-BeenThere", "X-Loop",
                                  "Authentication-Results", "Delivered-To", "Return-Path", "X-Original-To",
                                  "List-Post", "X-Mailer", "Received", "To", "Cc", "Message-ID"])
@pytest.mark.parametrize("value", ["hello world", "  leading", "trailing  ", "a\r\n b", "a\r\n\tb", "a  b",
                                   "x (comment) y", "<a@b.example>", "Alice <a@b.example>, bob@c.example",
                                   "list <x.y.z>", "a\tb", "=?utf-8?q?caf=C3=A9?=", 'quoted "x y"',
                                   "mx.example; dmarc=pass header.from=x.org", "Zoë", "a,b"])
def test_the_quick_header_text_is_what_emails_parser_gives(name: str, value: str) -> None:
    from wgbot import parse as parse_module

    try:
        expected = str(parse_module._decode_header(name, value))
    except Exception:
        expected = value
    assert parse_module._decoded(name, value) == expected
