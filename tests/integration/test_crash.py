"""Nothing lost, nothing doubled: `wgbot run` killed with SIGKILL or SIGTERM in the middle of work."""

from __future__ import annotations

import signal
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.helpers import Relay, mail
from tests.integration.botproc import BotProcess, Sender
from tests.integration.test_imap import client, count
from tests.integration.test_listener import wait_for
from tests.servers import DOVECOT_PASSWORD
from wgbot.store import InboundMessage


def replies_by_sender(relay: Relay) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for m in list(relay.messages):
        out[m.rcpt_tos[0]].add(str(m.message["Message-ID"]))
    return out


def inbound(bot: BotProcess) -> list[tuple[str, str]]:
    with bot.sessions() as session:
        return [(r.message_id, r.status) for r in session.scalars(select(InboundMessage))]


@pytest.fixture
def bot(tmp_path: Path, relay: Relay) -> Iterator[BotProcess]:
    b = BotProcess(tmp_path, relay.port)
    try:
        yield b
    finally:
        b.stop()


def test_sigkill_during_200_commands_loses_and_doubles_nothing(bot: BotProcess, relay: Relay) -> None:
    """200 commands; SIGKILL while they are processed; after a restart every message has exactly one reply
    (one distinct Message-ID per sender) and none is stored twice."""
    n = 200
    bot.start()
    sender = Sender(bot.port, n)
    sender.start()
    wait_for(lambda: len(relay.messages) >= 40, timeout=60)
    assert bot.signal(signal.SIGKILL) == -signal.SIGKILL
    killed_at = len(relay.messages)
    bot.start()
    sender.join(120)
    assert sender.error is None
    wait_for(lambda: len(replies_by_sender(relay)) == n, timeout=90)
    replies = replies_by_sender(relay)
    assert all(len(ids) == 1 for ids in replies.values()), "a sender got two different replies"
    assert len(relay.messages) <= n + 1  # at most the one in flight at the kill is sent twice (same Message-ID)
    rows = inbound(bot)
    assert len(rows) == n and {s for _, s in rows} == {"done"}
    assert killed_at < n


def test_sigterm_mid_burst_loses_nothing(bot: BotProcess, relay: Relay) -> None:
    """SIGTERM in a burst: the process exits 0 after the message in hand; after a restart all are answered once."""
    n = 100
    bot.start()
    sender = Sender(bot.port, n)
    sender.start()
    wait_for(lambda: len(relay.messages) >= 20, timeout=60)
    assert bot.signal(signal.SIGTERM) == 0
    bot.start()
    sender.join(120)
    assert sender.error is None
    wait_for(lambda: len(replies_by_sender(relay)) == n, timeout=90)
    assert len(relay.messages) == n  # a clean stop sends nothing twice
    assert len(inbound(bot)) == n


def test_imap_sigkill_between_fetch_and_move(tmp_path: Path, relay: Relay, dovecot_server: Any) -> None:
    """60 messages in the mailbox; SIGKILL while the poller works; after a restart each is answered once and the
    mailbox ends empty, everything moved to the processed folder."""
    n = 60
    user = dovecot_server.take_user()
    c = client(dovecot_server, user)
    for i in range(n):
        c.append("INBOX", mail("groups", sender=f"u{i}@example.com", msgid=f"<i{i}@example.com>"))
    bot = BotProcess(tmp_path, relay.port, smtp_enabled=False,
                     imap={"host": "127.0.0.1", "port": dovecot_server.imap_port, "ssl": False, "username": user,
                           "password": DOVECOT_PASSWORD, "poll_seconds": 1})
    try:
        bot.start_imap_only()
        wait_for(lambda: len(relay.messages) >= 10, timeout=60)
        assert bot.signal(signal.SIGKILL) == -signal.SIGKILL
        assert count(c, "INBOX") > 0
        bot.start_imap_only()
        wait_for(lambda: count(c, "wgbot-processed") == n and count(c, "INBOX") == 0, timeout=90)
        wait_for(lambda: len(replies_by_sender(relay)) == n, timeout=30)
        assert all(len(ids) == 1 for ids in replies_by_sender(relay).values())
        assert len(relay.messages) <= n + 1
        assert len(inbound(bot)) == n
    finally:
        bot.stop()
        c.logout()
