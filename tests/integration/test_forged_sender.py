"""Issue 11 item 1 through the real listener: a forged From never earns a privileged answer at another
envelope sender, Reply-To or Sender; only the From address (the identity) gets it."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_config
from tests.helpers import Relay, add_members, mail, make_group
from tests.integration.botproc import BotProcess
from tests.integration.test_listener import Bot, start, wait_for
from wgbot.store import token_hash

ATTACKER = "attacker@evil.example"
FORGED = {"Reply-To": ATTACKER, "Sender": ATTACKER}


@pytest.fixture
def bot(tmp_path: Path, relay: Relay) -> Iterator[Bot]:
    cfg, sessions = start(tmp_path, relay)
    make_group(sessions, cfg, name="grp")
    add_members(sessions, "grp", {"secret-member@city.example": "regular"})
    with Bot(cfg, sessions) as b:
        yield b


def send(bot: Bot, envelope: str, sender: str, body: str, headers: dict[str, str] | None = None,
         to: str = "wgbot@lists.example.org") -> None:
    with smtplib.SMTP("127.0.0.1", bot.port) as client:
        client.sendmail(envelope, [to], mail(body, sender=sender, headers=headers,
                                             msgid=f"<{abs(hash((envelope, sender, body)))}@x.example>"))


@pytest.mark.parametrize("identity", ["chair@city.example", "office@example.org"])
def test_who_from_a_forged_privileged_sender_goes_to_the_from_address(bot: Bot, relay: Relay,
                                                                      identity: str) -> None:
    """`who` as a contact or the secretariat, from a foreign envelope (and Reply-To, Sender): the member
    addresses go to the From address only; the envelope sender gets nothing."""
    send(bot, ATTACKER, identity, "who grp", FORGED)
    wait_for(lambda: len(relay.messages) == 1)
    captured = relay.messages[0]
    assert captured.rcpt_tos == [identity]
    assert b"secret-member@city.example" in captured.data
    assert all(ATTACKER not in m.rcpt_tos for m in relay.messages)


@pytest.mark.parametrize("body", ["leave grp", "set grp delivery digest", "contact grp add deputy@city.example",
                                  "join grp", "close grp", "report grp", "support grp", "withdraw R-ABCDEFG",
                                  f"approve {'a' * 32}", f"reject {'a' * 32} no", '"leave" grp', "ＬＥＡＶＥ grp"])
def test_every_identity_dependent_answer_goes_to_the_from_address(bot: Bot, relay: Relay, body: str) -> None:
    """Whether the From is a member, a contact or an approver shows in these answers: with a foreign envelope
    they (and any confirmation request) go to the From address, never to the envelope, Reply-To or Sender."""
    send(bot, ATTACKER, "chair@city.example", body, FORGED)
    wait_for(lambda: any(m.rcpt_tos == ["chair@city.example"] and b"Results of your commands" in m.data
                         for m in relay.messages))
    assert all(m.rcpt_tos == ["chair@city.example"] for m in relay.messages)


def test_who_from_a_stranger_still_answers_the_envelope_without_addresses(bot: Bot, relay: Relay) -> None:
    """An answer with nothing privileged keeps going to the envelope sender (RFC 3834 §4), without addresses."""
    send(bot, "bounces-to@stranger.example", "Stranger <stranger@else.example>", "who grp")
    wait_for(lambda: len(relay.messages) == 1)
    assert relay.messages[0].rcpt_tos == ["bounces-to@stranger.example"]
    assert b"secret-member@city.example" not in relay.messages[0].data


def test_same_mailbox_envelope_keeps_the_envelope(bot: Bot, relay: Relay) -> None:
    """A contact whose envelope is a sub-address of their own mailbox is answered at the envelope as before."""
    send(bot, "chair+lists@city.example", "chair@city.example", "who grp")
    wait_for(lambda: len(relay.messages) == 1)
    assert relay.messages[0].rcpt_tos == ["chair+lists@city.example"]
    assert b"secret-member@city.example" in relay.messages[0].data


def test_wgbot_run_logs_no_live_token(tmp_path: Path, relay: Relay) -> None:
    """A real `wgbot run` at log level DEBUG (aiosmtpd then logs every RCPT TO and DATA line): after a join
    and its confirmation (Subject "Re: confirm TOKEN") through the listener, the log holds the token's hash,
    never the token."""
    proc = BotProcess(tmp_path, relay.port)
    proc.config.write_text(proc.config.read_text() + '\n[log]\nlevel = "DEBUG"\n')
    make_group(proc.sessions, make_config(tmp_path), name="grp")
    try:
        proc.start()
        with smtplib.SMTP("127.0.0.1", proc.port) as client:
            client.sendmail("alice@example.com", ["wgbot@lists.example.org"],
                            mail("join grp\nOrganisation: City of Graz\nCountry: Austria"))
        wait_for(lambda: any(str(m.message["Subject"]).startswith("confirm ") for m in relay.messages), 20)
        token = next(str(m.message["Subject"]).split()[1] for m in relay.messages
                     if str(m.message["Subject"]).startswith("confirm "))
        with smtplib.SMTP("127.0.0.1", proc.port) as client:
            client.sendmail("alice@example.com", [f"wgbot+confirm-{token}@lists.example.org"],
                            mail("yes", subject=f"Re: confirm {token}", msgid="<c2@example.com>"))
        wait_for(lambda: "joined" in " ".join(str(m.message["Subject"]) for m in relay.messages)
                 or len(relay.messages) >= 3, 20)
    finally:
        proc.stop()
    log = proc.log.read_text()
    assert "rcpt to" in log.lower() and token_hash(token) in log
    assert token not in log
