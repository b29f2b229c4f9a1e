"""Hostile and odd inputs (mail-safety.md §4.1 items 6-31): one test per class, asserting the outcome the list
gives. Nothing crashes processing; what cannot be processed is quarantined with its reason."""

from __future__ import annotations

import base64
import email
import time
from email import policy

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import body_of, feed, last_reply, mail, make_group, queued, token_from
from wgbot.config import Config
from wgbot.store import InboundMessage, Membership, PendingAction

S = sessionmaker[Session]


@pytest.fixture
def db(sqlite_sessions: S) -> S:
    return sqlite_sessions


def status(sessions: S) -> tuple[str, str]:
    with sessions() as session:
        row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert row is not None
        return row.status, row.outcome


def pending(sessions: S) -> int:
    with sessions() as session:
        return len(session.scalars(select(PendingAction).where(PendingAction.used_at.is_(None))).all())


def raw_headers(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line and line[0] not in " \t"]


def all_outgoing(sessions: S) -> list[bytes]:
    from wgbot.store import OutgoingMessage

    with sessions() as session:
        return list(session.scalars(select(OutgoingMessage.raw)))


def simple(headers: str, body: bytes = b"help\r\n", sender: str = "alice@example.com") -> bytes:
    return (f"From: {sender}\r\nTo: wgbot@lists.example.org\r\nMessage-ID: <h@example.com>\r\n" + headers).encode() \
        + b"\r\n" + body


# -- Headers (items 6-16) -------------------------------------------------------------------------------------


def test_06_encoded_newline_in_subject_adds_no_header(db: S, cfg: Config) -> None:
    """An encoded LF+Bcc in the Subject never becomes a header of any reply (gh-121650)."""
    feed(db, cfg, mail("", subject="=?UTF-8?Q?join_g=0ABcc:_victim@example.org?="))
    out = all_outgoing(db)
    assert out, "the sender gets an answer"
    for data in out:
        assert "bcc" not in raw_headers(data)
        assert b"victim@example.org" not in data.split(b"\r\n\r\n", 1)[0]
    assert all(r != "victim@example.org" for r, _ in queued(db))


def test_07_bare_cr_in_subject_does_not_truncate_replies(db: S, cfg: Config) -> None:
    """A bare CR in the Subject leaves every header of the reply in place."""
    feed(db, cfg, simple("Subject: join grp\r\r\n"))
    (_, reply), = queued(db, "reply")
    for name in ("From", "To", "Subject", "Message-ID", "In-Reply-To", "Auto-Submitted"):
        assert reply[name], name
    assert "\r" not in str(reply["Subject"])


def test_08_odd_header_case_is_recognised(db: S, cfg: Config) -> None:
    """PRECEDENCE: bulk and auto-SUBMITTED: in odd case are treated exactly like the canonical names."""
    for i, header in enumerate(("PRECEDENCE: bulk", "auto-SUBMITTED: auto-replied", "list-id: <x.other.example>")):
        feed(db, cfg, simple(header + "\r\n").replace(b"<h@", f"<h{i}@".encode()))
        assert status(db)[0] == "ignored"
    assert queued(db) == []


def test_09_huge_headers_are_refused_before_parsing(db: S, cfg: Config) -> None:
    """10,000 Received headers, or one 200 KB Subject, are quarantined in bounded time, with no reply."""
    started = time.monotonic()
    feed(db, cfg, b"Received: from x by y\r\n" * 10_000 + mail("help"))
    state, reason = status(db)
    assert state == "quarantined" and ("Received" in reason or "header fields" in reason)
    feed(db, cfg, mail("help", subject="x" * 200_000, msgid="<big@example.com>"))
    assert status(db)[0] == "quarantined" and "Subject" in status(db)[1]
    assert time.monotonic() - started < 3
    assert queued(db) == []


def test_10_thousands_of_parameters_in_bounded_time(db: S, cfg: Config) -> None:
    """Content-Type: text/plain followed by 20,000 ';' is handled in bounded time (bpo-42909)."""
    started = time.monotonic()
    feed(db, cfg, simple("Content-Type: text/plain" + ";" * 20_000 + "\r\n"))
    assert time.monotonic() - started < 3
    assert status(db)[0] == "quarantined"


@pytest.mark.parametrize("froms", [
    "From: a@example.com\r\nFrom: b@example.com\r\n",
    "From: a@example.com, d@example.net\r\n",
    "",
    "From: undisclosed-recipients:;\r\n",
])
def test_11_not_exactly_one_from_mailbox(db: S, cfg: Config, froms: str) -> None:
    """Duplicate, doubled, missing or empty From: refused (quarantined), and no reply at all."""
    raw = (froms + "To: wgbot@lists.example.org\r\nSubject: help\r\nMessage-ID: <f@example.com>\r\n\r\n"
           "help\r\n").encode()
    feed(db, cfg, raw)
    assert status(db)[0] == "quarantined" and "From" in status(db)[1]
    assert queued(db) == []


@pytest.mark.parametrize("display", ['"office@example.org"', "=?utf-8?q?office=40example.org?="])
def test_12_display_name_is_not_identity(db: S, cfg: Config, display: str) -> None:
    """A display name that looks like the secretariat's address grants nothing: identity is the addr-spec."""
    slug = make_group(db, cfg)
    feed(db, cfg, mail(f"who {slug}", sender=f"{display} <attacker@evil.example>"))
    (rcpt, reply), = queued(db, "reply")
    assert rcpt == "attacker@evil.example"
    assert "chair@city.example" not in body_of(reply)


def test_13_ambiguous_from_is_refused(db: S, cfg: Config) -> None:
    """From: alice@example.org)<bob@example.org> (CVE-2023-27043) is refused as ambiguous, with no reply."""
    feed(db, cfg, mail("help", sender="alice@example.org)<bob@example.org>"))
    assert status(db)[0] == "quarantined" and "ambiguous" in status(db)[1]
    assert queued(db) == []


def test_14_deeply_parenthesised_from_is_quarantined(db: S, cfg: Config) -> None:
    """A From with 4,000 nested comments does not crash processing: it is quarantined."""
    feed(db, cfg, mail("help", sender="x " + "(" * 4000 + ")" * 4000 + " <a@example.com>"))
    assert status(db)[0] == "quarantined"


def test_15_forged_authentication_results_is_not_trusted(db: S, cfg: Config) -> None:
    """A forged Authentication-Results claiming dmarc=pass does not skip confirmation."""
    slug = make_group(db, cfg)
    feed(db, cfg, mail(f"join {slug}", headers={
        "Authentication-Results": "lists.example.org; dmarc=pass header.from=example.com"}))
    with db() as session:
        assert session.scalars(select(Membership)).all().__len__() == 1  # only the contact
    assert pending(db) == 1


def test_16_look_alike_domain_is_not_the_secretariat(db: S, cfg: Config) -> None:
    """office@examp1e.org is not office@example.org: no addresses are shown to it."""
    slug = make_group(db, cfg)
    feed(db, cfg, mail(f"who {slug}", sender="office@examp1e.org"))
    assert "chair@city.example" not in last_reply(db)


# -- MIME structure (items 17-23) ------------------------------------------------------------------------------


def test_17_deep_nesting_is_quarantined(db: S, cfg: Config) -> None:
    """2,000 nested multiparts are quarantined, not a crashed worker."""
    body = b"".join(f"--b{i}\r\nContent-Type: multipart/mixed; boundary=b{i + 1}\r\n\r\n".encode()
                    for i in range(2000))
    feed(db, cfg, simple("Content-Type: multipart/mixed; boundary=b0\r\n", body))
    assert status(db)[0] == "quarantined" and "multipart" in status(db)[1]


def test_18_many_parts_are_refused_by_the_cap(db: S, cfg: Config) -> None:
    """100,000 empty sibling parts are refused by the part cap before a full parse."""
    started = time.monotonic()
    feed(db, cfg, simple("Content-Type: multipart/mixed; boundary=B\r\n", b"--B\r\n\r\n" * 100_000 + b"--B--\r\n"))
    assert status(db)[0] == "quarantined" and "MIME parts" in status(db)[1]
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(("ctype", "body", "expect_help"), [
    ("multipart/mixed", b"--x\r\nContent-Type: text/plain\r\n\r\nhelp\r\n--x--\r\n", False),
    ("multipart/mixed; boundary=x", b"--x\r\nContent-Type: text/plain\r\n\r\nhelp\r\n", True),
    ("multipart/mixed; boundary=x",
     b"--x\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n"
     b"help\r\n--x--\r\n--x--\r\n", None),
])
def test_19_broken_boundaries(db: S, cfg: Config, ctype: str, body: bytes, expect_help: bool | None) -> None:
    """No boundary, an unclosed boundary, the same boundary inside and out: commands come only from the first
    text/plain part, or none are found; nothing crashes."""
    feed(db, cfg, simple(f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\n", body))
    assert status(db)[0] == "done"
    reply = last_reply(db)
    if expect_help is True:
        assert "> help" in reply
    elif expect_help is False:
        assert "> help" not in reply


def test_20_html_only_command_is_read(db: S, cfg: Config) -> None:
    """A command only in an HTML part is read after conversion (SPEC §3), and still needs confirmation."""
    slug = make_group(db, cfg)
    feed(db, cfg, simple("Content-Type: text/html\r\n", f"<p>join {slug}</p>".encode()))
    assert "confirmation request" in last_reply(db) and pending(db) == 1


def test_21_base64_with_trailing_junk(db: S, cfg: Config) -> None:
    """Y29uZmlybSBhYmM=x!! decodes to `confirm abc`: it is read as that, confirms nothing, and is answered."""
    feed(db, cfg, simple("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
                         b"Y29uZmlybSBhYmM=x!!\r\n"))
    assert status(db)[0] == "done"
    assert "> confirm abc" in last_reply(db) and "not one we know" in last_reply(db)


@pytest.mark.parametrize("cte", ["x-uuencode", "binary", "x-unknown"])
def test_22_unreadable_transfer_encodings_are_no_text(db: S, cfg: Config, cte: str) -> None:
    """x-uuencode, binary and unknown encodings are treated as no text: no command runs."""
    feed(db, cfg, simple(f"Content-Type: text/plain\r\nContent-Transfer-Encoding: {cte}\r\n", b"help\r\n"))
    assert "found no command" in last_reply(db)


def test_23_forwarded_message_is_never_read_as_commands(db: S, cfg: Config) -> None:
    """A command inside a forwarded message/rfc822 is never run."""
    slug = make_group(db, cfg)
    inner = mail(f"join {slug}", sender="victim@example.net")
    body = (b"--F\r\nContent-Type: text/plain\r\n\r\nFYI\r\n--F\r\nContent-Type: message/rfc822\r\n\r\n"
            + inner + b"\r\n--F--\r\n")
    feed(db, cfg, simple("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=F\r\n", body))
    assert pending(db) == 0 and "found no command" in last_reply(db)


# -- Charsets (items 24-27) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("charset", ['"x-bogus-42"', '""', "*=utf-8''x"])
def test_24_unknown_charsets_do_not_crash(db: S, cfg: Config, charset: str) -> None:
    """Unknown or empty charsets decode with replacement characters, and commands still run."""
    feed(db, cfg, simple(f"Content-Type: text/plain; charset={charset}\r\n", b"help\r\n\xff\xfe\r\n"))
    assert status(db)[0] == "done" and "> help" in last_reply(db)


def test_25_utf7_is_not_a_command_charset(db: S, cfg: Config) -> None:
    """A UTF-7 body is not decoded: +ADw-script+AD4- stays literal and never becomes <script>."""
    feed(db, cfg, simple("Content-Type: text/plain; charset=utf-7\r\n", b"+ADw-script+AD4-\r\nhelp\r\n"))
    reply = last_reply(db)
    assert "<script>" not in reply and "+ADw-script+AD4-" in reply


def test_26_eight_bit_without_charset(db: S, cfg: Config) -> None:
    """8-bit bytes with no Content-Type become replacement characters; an ASCII token still confirms."""
    slug = make_group(db, cfg)
    feed(db, cfg, mail(f"join {slug}"))
    token = token_from(db)
    raw = (f"From: alice@example.com\r\nTo: wgbot@lists.example.org\r\nMessage-ID: <e@example.com>\r\n\r\n"
           f"confirm {token}\r\n").encode() + b"merci \xe9t\xe9\r\n"
    feed(db, cfg, raw)
    assert "now a member" in last_reply(db)


def test_27_legacy_charset_subjects(db: S, cfg: Config) -> None:
    """koi8-r and iso-2022-jp Subjects are decoded; commands are ASCII-only."""
    koi = base64.b64encode("помощь".encode("koi8-r")).decode()
    feed(db, cfg, mail("", subject=f"=?koi8-r?B?{koi}?="))
    assert "found no command" in last_reply(db)
    jp = base64.b64encode("help".encode("iso-2022-jp")).decode()
    feed(db, cfg, mail("", subject=f"=?iso-2022-jp?B?{jp}?=", msgid="<jp@example.com>"))
    assert "> help" in last_reply(db)


# -- Command arguments (items 28-31) -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "found"), [
    ("GRP", True), ("ｇｒｐ", True), ("grp", True),
    ("grp%0d%0a", False), ("../../etc", False), ("grp;rm -rf", False), ("x" * 10_000, False), ('""', False),
    ("grр", False), ("g\u200brp", True), ("grp\u202ecba", False), ('"grp\rBcc: x@y"', False),
], ids=lambda v: ascii(v)[:20] if isinstance(v, str) else str(v))
def test_28_hostile_group_names(db: S, cfg: Config, name: str, found: bool) -> None:
    """Hostile group names are rejected, or normalised to the one canonical ASCII slug (full-width letters fold,
    invisible characters are dropped, look-alike letters never match); echoes are cleaned."""
    make_group(db, cfg, name="grp")
    feed(db, cfg, mail(f"info {name}\n"))
    reply = last_reply(db)
    assert ("status: active" in reply) is found
    if not found:
        assert "There is no group" in reply or "Wrong number" in reply or "unbalanced" in reply
    assert "\u202e" not in reply and "\u200b" not in reply and "\r" not in reply.replace("\r\n", "\n")
    assert len(reply) < 4000


def test_29_quoted_text_is_never_executed(db: S, cfg: Config) -> None:
    """1 MB of quoted `> confirm ...` lines runs nothing, quickly; only the first N lines are read."""
    slug = make_group(db, cfg)
    feed(db, cfg, mail(f"join {slug}"))
    token = token_from(db)
    started = time.monotonic()
    feed(db, cfg, mail(f"Thanks!\n\n> confirm {token}\n" + "> blah blah blah\n" * 60_000, msgid="<q@example.com>"))
    assert time.monotonic() - started < 5
    assert pending(db) == 1
    feed(db, cfg, mail("help\n" * 40, msgid="<many@example.com>"))
    assert last_reply(db).count("> help") == cfg.limits.max_command_lines


def test_30_stacked_prefixes_are_stripped(db: S, cfg: Config) -> None:
    """`Re: Re: AW: 回复: confirm TOKEN` confirms."""
    slug = make_group(db, cfg)
    feed(db, cfg, mail(f"join {slug}"))
    token = token_from(db)
    feed(db, cfg, mail("", subject=f"Re: Re: AW: 回复: confirm {token}", msgid="<p@example.com>"))
    assert "now a member" in last_reply(db)


def test_31_signature_commands_are_ignored(db: S, cfg: Config) -> None:
    """Commands after the `-- ` signature line are not run."""
    slug = make_group(db, cfg)
    feed(db, cfg, mail(f"help\n-- \njoin {slug}\n"))
    assert pending(db) == 0 and f"> join {slug}" not in last_reply(db)


def test_refused_message_gets_a_clear_answer_when_safe(db: S, cfg: Config) -> None:
    """A message refused for its structure, from a person, is answered with the reason; it is kept."""
    body = b"--B\r\n\r\n" * 5000 + b"--B--\r\n"
    feed(db, cfg, simple("Subject: help\r\nContent-Type: multipart/mixed; boundary=B\r\n", body))
    assert status(db)[0] == "quarantined"
    (rcpt, answer), = queued(db, "refused")
    assert rcpt == "alice@example.com" and "MIME parts" in body_of(answer)
    assert email.message_from_bytes(answer.as_bytes(), policy=policy.default)["Auto-Submitted"] == "auto-replied"
