"""Postfix in front of the LMTP listener: a message to two of our addresses arrives exactly once each."""

from __future__ import annotations

import smtplib
from pathlib import Path

from sqlalchemy import select

from tests.helpers import Relay, free_port, mail, make_group, need
from tests.integration.botproc import BotProcess
from tests.integration.test_listener import wait_for
from tests.servers import have, postfix
from wgbot.store import InboundMessage


def test_two_recipients_through_postfix_arrive_once_each(tmp_path: Path, relay: Relay) -> None:
    """Postfix's lmtp client gets one answer per recipient, so nothing is deferred or delivered twice."""
    need(have("postfix"), "Postfix (apt-get install postfix) run as root")
    bot = BotProcess(tmp_path, relay.port, protocol="lmtp")
    from wgbot.config import load_config

    make_group(bot.sessions, load_config(bot.config), name="grp")
    bot.start()
    try:
        with postfix("lists.example.org", f"lmtp:[127.0.0.1]:{bot.port}", free_port()) as mta:
            rcpts = ["wgbot@lists.example.org", "grp-request@lists.example.org"]
            with smtplib.SMTP("127.0.0.1", mta.smtp_port, timeout=10) as client:
                for i in range(10):
                    client.sendmail("alice@example.com", rcpts, mail("help", msgid=f"<pf{i}@example.com>"))

            def stored() -> list[tuple[str, str]]:
                with bot.sessions() as session:
                    return [(r.message_id, r.recipient) for r in session.scalars(select(InboundMessage))]

            wait_for(lambda: len(stored()) == 20 and mta.queue_empty(), timeout=30)
            assert sorted(stored()) == sorted((f"<pf{i}@example.com>", r) for i in range(10) for r in rcpts)
            log = mta.log()
            sent = [line for line in log.splitlines() if f"relay=127.0.0.1[127.0.0.1]:{bot.port}" in line]
            assert len(sent) == 20 and all("status=sent" in line for line in sent)
            assert "deferred" not in log
    finally:
        bot.stop()
