"""Issue 11 item 1 through the real listener: a forged From never earns a privileged answer at another
envelope sender, Reply-To or Sender; only the From address (the identity) gets it."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Relay, add_members, mail, make_group
from tests.integration.test_listener import Bot, start, wait_for

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
                                  f"approve {'a' * 32}", f"reject {'a' * 32} no"])
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
