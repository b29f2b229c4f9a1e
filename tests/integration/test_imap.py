"""The IMAP poller against a private Dovecot: fetch without marking seen, move after the commit, failed folder,
UIDVALIDITY changes, reconnection."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient
from sqlalchemy import select

from tests.conftest import make_config
from tests.helpers import Relay, mail
from tests.integration.test_listener import Bot, wait_for
from tests.servers import DOVECOT_PASSWORD
from wgbot.db import migrate
from wgbot.store import ImapCursor, InboundMessage, make_engine, make_sessionmaker


def imap_bot(tmp_path: Path, relay: Relay, server: Any, user: str) -> Bot:
    cfg = make_config(tmp_path, **{"inbound.smtp": {"enabled": False},
                                   "inbound.imap": {"enabled": True, "host": "127.0.0.1", "port": server.imap_port,
                                                    "ssl": False, "username": user, "password": DOVECOT_PASSWORD,
                                                    "poll_seconds": 1}},
                      outbound={"transport": "smtp", "port": relay.port})
    engine = make_engine(f"sqlite:///{tmp_path}/wgbot.sqlite3")
    migrate(engine)
    return Bot(cfg, make_sessionmaker(engine))


def client(server: Any, user: str) -> IMAPClient:
    c = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10)
    c.login(user, DOVECOT_PASSWORD)
    return c


def count(c: IMAPClient, folder: str) -> int:
    if not c.folder_exists(folder):
        return 0
    return int(c.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])


def test_poller_processes_and_moves(tmp_path: Path, relay: Relay, dovecot_server: Any) -> None:
    """A message in INBOX is stored, answered and moved to the processed folder; a bad one to the failed folder."""
    user = dovecot_server.take_user()
    c = client(dovecot_server, user)
    c.append("INBOX", mail("help"))
    c.append("INBOX", b"To: wgbot@lists.example.org\r\nSubject: no sender\r\n\r\nhelp\r\n")
    with imap_bot(tmp_path, relay, dovecot_server, user) as bot:
        wait_for(lambda: count(c, "wgbot-processed") == 1 and count(c, "wgbot-failed") == 1, timeout=15)
        wait_for(lambda: len(relay.messages) == 1, timeout=10)
        assert relay.messages[0].rcpt_tos == ["alice@example.com"]
        assert count(c, "INBOX") == 0
        with bot.sessions() as session:
            statuses = sorted(r.status for r in session.scalars(select(InboundMessage)))
            cursor = session.get(ImapCursor, "INBOX")
        assert statuses == ["done", "quarantined"]
        assert cursor is not None and cursor.last_uid == 2 and cursor.last_poll_at is not None
        # New mail arrives while the poller waits (IDLE): it is picked up within seconds.
        c.append("INBOX", mail("groups", msgid="<new@example.com>"))
        assert wait_for(lambda: len(relay.messages) == 2, timeout=10) < 5
    c.logout()


def test_uidvalidity_change_reprocesses_nothing(tmp_path: Path, relay: Relay, dovecot_server: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """After UIDVALIDITY changes, a message stored before is found again but not processed again."""
    user = dovecot_server.take_user()
    c = client(dovecot_server, user)
    raw = mail("help")
    c.append("INBOX", raw)
    bot = imap_bot(tmp_path, relay, dovecot_server, user)
    with bot:
        wait_for(lambda: len(relay.messages) == 1, timeout=15)
    c.append("INBOX", raw)  # the same message again, as a server rebuild would leave it
    subprocess.run(["doveadm", "-c", str(dovecot_server.conf), "mailbox", "update", "-u", user,
                    "--uid-validity", "12345", "INBOX"], check=True)
    with caplog.at_level(logging.WARNING, logger="wgbot.imap"), Bot(bot.cfg, bot.sessions):
        wait_for(lambda: count(c, "INBOX") == 0, timeout=15)
        time.sleep(0.5)
    assert len(relay.messages) == 1
    assert "UIDVALIDITY of INBOX changed" in caplog.text
    with bot.sessions() as session:
        assert len(session.scalars(select(InboundMessage)).all()) == 1
        assert session.get(ImapCursor, "INBOX").uidvalidity == 12345  # type: ignore[union-attr]
    c.logout()


def test_reconnects_after_a_lost_connection(tmp_path: Path, relay: Relay, dovecot_server: Any,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """When the server drops the connection, the poller says so, reconnects with backoff and carries on."""
    user = dovecot_server.take_user()
    with caplog.at_level(logging.INFO, logger="wgbot.imap"), imap_bot(tmp_path, relay, dovecot_server, user):
        wait_for(lambda: "IMAP connected" in caplog.text, timeout=10)
        subprocess.run(["doveadm", "-c", str(dovecot_server.conf), "kick", user], check=True, capture_output=True)
        wait_for(lambda: "reconnecting in" in caplog.text, timeout=10)
        wait_for(lambda: caplog.text.count("IMAP connected") >= 2, timeout=15)
        c = client(dovecot_server, user)
        c.append("INBOX", mail("help"))
        wait_for(lambda: len(relay.messages) == 1, timeout=15)
    c.logout()


def test_polling_and_seen_flags_without_idle_or_move(tmp_path: Path, relay: Relay) -> None:
    """A server without IDLE is polled every poll_seconds; without MOVE, processed mail is flagged \\Seen and
    only unseen mail is fetched, so nothing is answered twice."""
    from tests.helpers import need
    from tests.servers import dovecot, have

    need(have("dovecot"), "Dovecot (apt-get install dovecot-imapd) run as root")
    with dovecot("imap_capability = IMAP4rev1 LITERAL+ UIDPLUS\n") as server:
        user = server.take_user()
        c = client(server, user)
        assert not c.has_capability("IDLE") and not c.has_capability("MOVE")
        c.append("INBOX", mail("help"))
        with imap_bot(tmp_path, relay, server, user):
            wait_for(lambda: len(relay.messages) == 1, timeout=15)
            c.append("INBOX", mail("groups", msgid="<second@example.com>"))
            wait_for(lambda: len(relay.messages) == 2, timeout=15)
            time.sleep(2.5)  # two more polls: nothing is fetched again
        c.select_folder("INBOX")
        assert len(c.search(["SEEN"])) == 2 and c.search(["UNSEEN"]) == []
        assert len(relay.messages) == 2
        c.logout()


def test_a_message_naming_many_of_our_addresses_is_capped(tmp_path: Path, relay: Relay, dovecot_server: Any) -> None:
    """A message in the mailbox whose To names 60 of our addresses is stored for the first [limits] max_rcpts
    (50) only, as the listener answers 452 beyond them: one message cannot cause hundreds of rows."""
    user = dovecot_server.take_user()
    c = client(dovecot_server, user)
    to = ", ".join(f"wgbot+confirm-{i:030d}@lists.example.org" for i in range(60))
    c.append("INBOX", b"From: Alice <alice@example.com>\r\nTo: " + to.encode() +
             b"\r\nSubject: many\r\nMessage-ID: <many@example.com>\r\n\r\nhelp\r\n")
    with imap_bot(tmp_path, relay, dovecot_server, user) as bot:
        wait_for(lambda: count(c, "INBOX") == 0, timeout=20)
        with bot.sessions() as session:
            assert len(session.scalars(select(InboundMessage.id)).all()) == 50
    c.logout()
