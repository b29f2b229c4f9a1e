"""The listener's quick reading of MAIL/RCPT paths gives exactly what aiosmtpd's careful parser gives."""

from __future__ import annotations

from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from wgbot.smtp_server import WgbotLMTP, WgbotSMTP

PATHS = ["<a@b.c>", "<a.b@c.d> SIZE=100 BODY=8BITMIME", " <x+y@z-q.example>", "<>", '<"q r"@x.y>', "<a@b>",
         "a@b.c", "<@relay.example:a@b.c>", "<a..b@c.d>", "<a@b.c>x", "<a@b.c> (comment) SIZE=1",
         "<a@b.c>\tSIZE=5", "<" + "x" * 70 + "@b.c>", "<a@[127.0.0.1]>", "<a@b.c", "<a b@c.d>", "<ü@b.c>",
         "<MAILER-DAEMON@mx.example>"]


class Handler:
    pass


@pytest.mark.parametrize("arg", PATHS)
@pytest.mark.parametrize("cls", [WgbotSMTP, WgbotLMTP])
def test_quick_path_reading_matches_aiosmtpd(arg: str, cls: Any) -> None:
    assert cls(Handler())._getaddr(arg) == SMTP(Handler())._getaddr(arg)


def test_the_local_part_limit_still_applies() -> None:
    server = WgbotSMTP(Handler())
    server.local_part_limit = 64
    assert server._getaddr("<" + "x" * 65 + "@b.c>") == (None, None)
    assert server._getaddr("<" + "x" * 64 + "@b.c>")[0] == "x" * 64 + "@b.c"
