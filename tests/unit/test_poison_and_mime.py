"""Attempt counting in processing (issue 11 item 5) and the transport safety of list copies (item 6), on both
backends; the killed-process proofs are in tests/integration/test_poison.py."""

from __future__ import annotations

import email
from email import policy

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import NOW, mail
from wgbot import inbox
from wgbot.config import Config
from wgbot.mimesafe import header_text, reencode_headers, transport_safe
from wgbot.store import AuditEntry, InboundMessage

S = sessionmaker[Session]


def stored(sessions: S, raw: bytes, to: str = "wgbot@lists.example.org") -> int:
    with sessions.begin() as session:
        [row_id] = inbox.accept(session, raw, [to], "alice@example.com", NOW)
    return row_id


def test_each_claim_is_counted_and_committed_before_processing(sessions: S, cfg: Config) -> None:
    """The attempt count is on record once processing starts (a killed process cannot undo it); a message that
    finishes has one attempt, and a fault of ours is not counted twice."""
    ok = stored(sessions, mail("help", msgid="<ok@example.com>"))
    refused = stored(sessions, b"Subject: no sender\r\n\r\nhelp\r\n")
    inbox.process_pending(sessions, cfg, lambda: NOW, ids=[ok, refused])
    with sessions() as session:
        rows = {r.id: r for r in session.scalars(select(InboundMessage))}
        assert (rows[ok].status, rows[ok].attempts) == ("done", 1)
        assert (rows[refused].status, rows[refused].attempts) == ("quarantined", 1)


def test_a_message_that_never_finished_three_times_is_quarantined_unread(sessions: S, cfg: Config) -> None:
    """Three claims that never finished (as a killed process leaves them): the fourth claim quarantines the
    message with the reason, unread, and audits it; `quarantine retry` gives it three fresh tries."""
    row_id = stored(sessions, mail("help", msgid="<p@example.com>"))
    with sessions.begin() as session:
        session.execute(update(InboundMessage).where(InboundMessage.id == row_id).values(attempts=inbox.MAX_ATTEMPTS))
    outcome = inbox.process_one(sessions, cfg, row_id, NOW)
    assert outcome is not None and outcome.status == "quarantined"
    assert f"did not finish in {inbox.MAX_ATTEMPTS} attempts" in outcome.outcome
    with sessions() as session:
        row = session.get(InboundMessage, row_id)
        assert row is not None and row.status == "quarantined" and "out-of-memory" in row.error
        assert session.scalars(select(AuditEntry.action)).all() == ["quarantine"]
    assert inbox.requeue(sessions, [row_id]) == 1
    again = inbox.process_one(sessions, cfg, row_id, NOW)
    assert again is not None and again.status == "done"


def test_header_text_reads_undeclared_utf8_then_windows_1252() -> None:
    """Raw 8-bit header bytes are read as UTF-8 when they are UTF-8, else as Windows-1252 (Outlook's)."""
    def raw(data: bytes) -> str:
        return data.decode("ascii", "surrogateescape")

    assert header_text(raw("Grüße".encode())) == "Grüße"
    assert header_text(raw("Grüße".encode("cp1252"))) == "Grüße"


def test_reencode_keeps_ascii_headers_and_their_order() -> None:
    """Only headers with 8-bit text change (to RFC 2047); the rest keep their bytes and order."""
    raw = ("Received: from a by b\r\nFrom: Zoë <zoe@example.org>\r\nX-Custom: =?utf-8?q?already?=\r\n"
           "Subject: Café\r\n\r\nbody\r\n").encode()
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    reencode_headers(msg)
    out = msg.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))
    head = out.split(b"\r\n\r\n")[0]
    assert head.isascii()
    assert [line.split(b":")[0] for line in head.split(b"\r\n")] == [b"Received", b"From", b"X-Custom", b"Subject"]
    assert b"X-Custom: =?utf-8?q?already?=" in head and b"<zoe@example.org>" in head
    parsed = email.message_from_bytes(out, policy=policy.default)
    assert str(parsed["From"]) == "Zoë <zoe@example.org>" and str(parsed["Subject"]) == "Café"


def test_transport_safe_reencodes_only_what_breaks_the_line_limit() -> None:
    """A binary attachment sent as 8bit with a 2,000-octet line becomes base64, a text part with NUL bytes loses
    them, and a well-formed part keeps its bytes and transfer encoding."""
    blob = bytes(b for b in range(1, 256) if b not in (10, 13)) * 8 + b"\r\n"   # one 2,024-octet line
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nfine line\r\n"
           b"--B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nnul\x00here\r\n"
           b"--B\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + blob +
           b"--B--\r\n")
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    transport_safe(msg)
    fine, nul, binary = [p for p in msg.walk() if not p.is_multipart()]
    assert fine.get("Content-Transfer-Encoding") is None and fine.get_payload() == "fine line"
    assert nul["Content-Transfer-Encoding"] == "quoted-printable" and b"\0" not in nul.get_payload(decode=True)
    assert binary["Content-Transfer-Encoding"] == "base64"
    assert binary.get_payload(decode=True) == blob[:-2]
    out = msg.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))
    assert max(len(line) for line in out.split(b"\r\n")) <= 998
