"""render.compose: the direct writer of plain messages gives the same bytes as email.headerregistry, and
anything that needs quoting, encoding or folding takes the headerregistry way."""

from __future__ import annotations

import datetime as dt
import email
from email import policy
from typing import Any

import pytest

from wgbot import render
from wgbot.config import Config
from wgbot.parse import Caps, parse

NOW = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
CONFIRM = {"token": "a" * 32, "ref": "R-ABCDEFG", "description": "join the group Migrant Inclusion",
           "address": "alice@example.com", "days": 7}


def both_ways(monkeypatch: pytest.MonkeyPatch, cfg: Config, **kwargs: Any) -> tuple[render.Composed, bytes]:
    """(compose as it runs, the bytes of the headerregistry way) with the same Message-ID."""
    monkeypatch.setattr(render.utils, "make_msgid", lambda domain=None: f"<fixed@{domain}>")
    fast = render.compose(cfg, now=NOW, **kwargs)
    monkeypatch.setattr(render, "_fast_bytes", lambda fields, body: None)
    slow = render.compose(cfg, now=NOW, **kwargs)
    monkeypatch.undo()
    return fast, slow.raw


def test_plain_message_is_written_directly_with_the_generators_bytes(monkeypatch: pytest.MonkeyPatch,
                                                                     cfg: Config) -> None:
    parent = parse(b"From: Alice <alice@example.com>\r\nTo: wgbot@lists.example.org\r\nSubject: join x\r\n"
                   b"Message-ID: <q1@example.com>\r\nReferences: <q0@example.com>\r\n\r\njoin x\r\n", Caps())
    cases: list[dict[str, Any]] = [
        {"template": "notices/confirm.txt", "context": CONFIRM, "to": ["alice@example.com"],
         "reply_to": "wgbot+confirm-" + "a" * 32 + "@lists.example.org"},
        {"template": "replies/refused.txt", "context": {"reason": "no", "address": "alice@example.com"},
         "to": ["Alice Smith <alice@example.com>"], "parent": parent, "auto_submitted": "auto-replied"},
        {"template": "notices/confirm.txt", "context": CONFIRM, "to": ["bob@example.org", "carol@example.net"],
         "extra_headers": {"X-Test": "plain value"}},
    ]
    for case in cases:
        fast, slow = both_ways(monkeypatch, cfg, **case)
        assert fast.raw == slow, case["template"]
        assert render._fast_bytes(list(fast.fields), "x\n") is not None   # it really took the direct way
        msg = email.message_from_bytes(fast.raw, policy=policy.default)
        assert msg["Message-ID"] == "<fixed@lists.example.org>" and fast["Message-ID"] == msg["Message-ID"]
        assert msg.get_content_type() == "text/plain" and msg["Content-Transfer-Encoding"] == "7bit"


@pytest.mark.parametrize("case", [
    {"to": ["Zoë Müller <zoe@example.com>"]},                      # a name to encode (RFC 2047)
    {"to": ['"Smith, Alice" <alice@example.com>']},                  # a name to quote
    {"to": ["alice@example.com"], "extra_headers": {"X-Long": "word " * 30}},   # a field to fold
    {"to": ["alice@example.com"], "extra_headers": {"X-Look": "=?utf-8?q?not_a_word?="}},
    {"to": ["alice@example.com"], "context": {**CONFIRM, "description": "join the group Österreich"}},  # 8bit body
])
def test_anything_unusual_takes_the_headerregistry_way(monkeypatch: pytest.MonkeyPatch, cfg: Config,
                                                       case: dict[str, Any]) -> None:
    kwargs = {"template": "notices/confirm.txt", "context": CONFIRM, **case}
    fast, slow = both_ways(monkeypatch, cfg, **kwargs)
    assert fast.raw == slow
    msg = email.message_from_bytes(fast.raw, policy=policy.default)
    assert all(len(line) <= 78 for line in fast.raw.split(b"\r\n")), "a line longer than 78 characters"
    assert str(msg["To"]).split("<")[-1].rstrip(">") in kwargs["to"][0]
    assert "\n" not in str(msg["Subject"])


def test_header_values_cannot_carry_line_breaks(monkeypatch: pytest.MonkeyPatch, cfg: Config) -> None:
    fast, _ = both_ways(monkeypatch, cfg, template="notices/confirm.txt", context=CONFIRM,
                        to=["alice@example.com"], extra_headers={"X-Evil": "a\r\nBcc: victim@example.com"})
    msg = email.message_from_bytes(fast.raw, policy=policy.default)
    assert msg["Bcc"] is None and "victim@example.com" in str(msg["X-Evil"])
