"""The automated-mail gate: RFC 3834 and loop markers, read case-insensitively."""

from __future__ import annotations

import pytest

from tests.helpers import mail
from wgbot import gate
from wgbot.config import Config
from wgbot.parse import parse


def verdict(cfg: Config, raw: bytes, envelope: str | None = "alice@example.com") -> gate.Verdict:
    return gate.check(parse(raw), envelope, cfg)


def test_a_person_passes(cfg: Config) -> None:
    """An ordinary message from a person is not automated."""
    assert not verdict(cfg, mail("help")).automated
    assert not verdict(cfg, mail("help", headers={"Auto-Submitted": "no"})).automated


@pytest.mark.parametrize(("headers", "reason"), [
    ({"Auto-Submitted": "auto-replied"}, "Auto-Submitted"),
    ({"AUTO-SUBMITTED": "Auto-Generated; x"}, "Auto-Submitted"),
    ({"Precedence": "bulk"}, "Precedence"),
    ({"precedence": "JUNK"}, "Precedence"),
    ({"Precedence": "list"}, "Precedence"),
    ({"List-Id": "Other list <other.example.net>"}, "another list"),
    ({"List-Id": "<migrants.lists.example.org>"}, "own List-Id"),
    ({"X-Loop": "wgbot@lists.example.org"}, "X-Loop"),
    ({"X-Autoreply": "yes"}, "vacation"),
])
def test_automated_headers(cfg: Config, headers: dict[str, str], reason: str) -> None:
    """Each automation marker classes the message as automated, with the reason."""
    v = verdict(cfg, mail("help", headers=headers))
    assert v.automated and reason in v.reason


def test_null_sender_is_a_bounce(cfg: Config) -> None:
    """The null envelope sender is never answered and may be a bounce."""
    v = verdict(cfg, mail("join x"), envelope="")
    assert v.automated and v.bounce
    assert verdict(cfg, mail("join x"), envelope="<>").bounce


@pytest.mark.parametrize("sender", ["MAILER-DAEMON@example.com", "postmaster@example.com",
                                    "owner-list@example.com", "list-request@example.com"])
def test_responder_addresses(cfg: Config, sender: str) -> None:
    """Mail from MAILER-DAEMON, postmaster and list addresses is automated (RFC 3834 §2)."""
    assert verdict(cfg, mail("help", sender=sender), envelope=sender).automated


def test_our_own_mail_is_a_loop(cfg: Config) -> None:
    """Our own address or our own Message-ID domain marks a loop."""
    assert verdict(cfg, mail("help", sender="wgbot@lists.example.org")).automated
    assert verdict(cfg, mail("help", msgid="<123.456@lists.example.org>")).automated
