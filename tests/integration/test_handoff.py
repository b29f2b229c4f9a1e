"""`wgbot process` beside a running `wgbot run`: the message goes through the bot's own listener, and the
command still prints the outcome and returns once the replies were tried; never to a listener that is not
wgbot; --local processes in the command's own process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import select

from tests.helpers import Relay, mail
from tests.integration.botproc import BotProcess
from wgbot.handoff import proof
from wgbot.store import InboundMessage, secret_key


def process(bot: BotProcess, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wgbot", "--config", str(bot.config), "process", *args],
                          input=stdin.decode(), capture_output=True, text=True, timeout=60)


@pytest.fixture(params=["smtp", "lmtp", "smtp-postgresql"])
def bot(request: pytest.FixtureRequest, tmp_path: Path, relay: Relay) -> Iterator[BotProcess]:
    db_url = str(request.getfixturevalue("pg_url")) if request.param.endswith("postgresql") else ""
    b = BotProcess(tmp_path, relay.port, protocol=request.param.split("-")[0], db_url=db_url)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def sources(bot: BotProcess) -> list[str]:
    with bot.sessions() as session:
        return list(session.scalars(select(InboundMessage.source).order_by(InboundMessage.id)))


def test_process_hands_the_message_to_the_running_bot_and_waits_for_the_reply(bot: BotProcess,
                                                                               relay: Relay) -> None:
    run = process(bot, stdin=mail("", subject="help", msgid="<h1@example.com>"))
    assert run.returncode == 0, run.stderr
    assert "inbound 1: done: 1 command(s), 1 ok" in run.stdout and "delivery: 1 sent" in run.stdout
    # The reply was at the relay before the command returned, and the row came in through the listener.
    assert [m.rcpt_tos for m in relay.messages] == [["alice@example.com"]]
    assert sources(bot) == [bot_protocol(bot)]
    # The same message again (an MTA's retry) is stored once and answered once.
    again = process(bot, stdin=mail("", subject="help", msgid="<h1@example.com>"))
    assert again.returncode == 0 and "inbound 1:" in again.stdout
    time.sleep(0.3)
    assert len(relay.messages) == 1


def bot_protocol(bot: BotProcess) -> str:
    return "lmtp" if 'protocol = "lmtp"' in bot.config.read_text() else "smtp"


def test_recipients_the_bot_refuses_are_reported_and_the_rest_accepted(bot: BotProcess) -> None:
    run = process(bot, "--to", "nobody@elsewhere.example", "--to", "wgbot@lists.example.org",
                  stdin=mail("", subject="groups", msgid="<g1@example.com>"))
    assert run.returncode == 0, run.stderr
    assert "nobody@elsewhere.example is not one of our addresses (550" in run.stderr
    assert "inbound 1: done" in run.stdout
    only_foreign = process(bot, stdin=mail("help", to="nobody@elsewhere.example", msgid="<g2@example.com>"))
    assert only_foreign.returncode == 1 and "not accepted" in only_foreign.stderr


def test_local_processes_in_the_command_itself(bot: BotProcess, relay: Relay) -> None:
    run = process(bot, "--local", stdin=mail("", subject="help", msgid="<l1@example.com>"))
    assert run.returncode == 0, run.stderr
    assert "inbound 1: done" in run.stdout and sources(bot) == ["cli"]


class Proving(SMTP):
    """An aiosmtpd server that knows the installation's secret, so it passes the hand-off's proof."""

    secret = b""

    async def smtp_XWGBOT(self, arg: str) -> None:
        await self.push(f"250 {proof(self.secret, arg.strip())}")


class ProvingController(Controller):
    def factory(self) -> SMTP:
        return Proving(self.handler, **self.SMTP_kwargs)


def process_beside(bot: BotProcess, handler: object, msgid: str, secret: bytes | None = None,
                   **server: str) -> subprocess.CompletedProcess[str]:
    """`wgbot process` of a help request while `handler` (not a real bot) listens on the bot's port; with
    `secret` it can prove itself as the bot does."""
    Proving.secret = secret or b""
    kind = Controller if secret is None else ProvingController
    controller = kind(handler, hostname="127.0.0.1", port=bot.port, **server)  # type: ignore[arg-type]
    controller.start()
    try:
        return process(bot, stdin=mail("", subject="help", msgid=msgid))
    finally:
        controller.stop()
        bot.stop()


def test_a_listener_that_is_not_wgbot_is_never_used(tmp_path: Path, relay: Relay) -> None:
    """Another SMTP server on the configured port (an MTA, say) must not get the message: it could pass it
    straight back to `wgbot process`. The command processes it itself."""
    from tests.helpers import Relay as Other

    bot = BotProcess(tmp_path, relay.port)           # configured, not started
    other = Other("127.0.0.1", bot.port)
    run = process_beside(bot, other, "<o1@example.com>")
    assert run.returncode == 0, run.stderr
    assert other.messages == [] and "inbound 1: done" in run.stdout
    assert [m.rcpt_tos for m in relay.messages] == [["alice@example.com"]]


def test_a_bot_that_cannot_store_the_message_makes_the_mta_retry(tmp_path: Path, relay: Relay) -> None:
    """A running bot that answers 451 (its database is down, say): exit 75 (EX_TEMPFAIL), so the MTA keeps the
    message and tries again later; nothing is processed in the command instead."""
    class Failing:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "451 4.3.0 Temporary failure, try again later"

    bot = BotProcess(tmp_path, relay.port)
    with bot.sessions.begin() as session:
        secret = secret_key(session)
    run = process_beside(bot, Failing(), "<f1@example.com>", secret, server_hostname="lists.example.org",
                         ident="wgbot ESMTP")
    assert run.returncode == 75, run.stderr
    assert "could not take it now (451" in run.stderr and "try again later" in run.stderr
    assert sources(bot) == [] and relay.messages == []


def test_a_listener_that_only_says_it_is_wgbot_is_never_used(tmp_path: Path, relay: Relay) -> None:
    """A local listener with wgbot's very banner (anyone can bind the port while the bot is down) that cannot
    answer XWGBOT with the HMAC of the installation's secret gets nothing; the command processes the message."""
    from tests.helpers import Relay as Impostor

    bot = BotProcess(tmp_path, relay.port)
    with bot.sessions.begin() as session:
        secret_key(session)                     # a bot ran here before: the secret exists
    impostor = Impostor("127.0.0.1", bot.port)
    run = process_beside(bot, impostor, "<i1@example.com>", server_hostname="lists.example.org",
                         ident="wgbot ESMTP")
    assert run.returncode == 0, run.stderr
    assert impostor.messages == [] and "inbound 1: done" in run.stdout
    assert sources(bot) == ["cli"]
    assert [m.rcpt_tos for m in relay.messages] == [["alice@example.com"]]
