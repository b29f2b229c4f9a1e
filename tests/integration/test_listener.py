"""The SMTP/LMTP listener of `wgbot run`, in-process, with an aiosmtpd relay capturing what the bot sends."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import Relay, free_port, mail, make_group
from wgbot.app import Runner
from wgbot.config import Config
from wgbot.db import migrate
from wgbot.store import InboundMessage, make_engine, make_sessionmaker


class Bot:
    def __init__(self, cfg: Config, sessions: sessionmaker[Session]) -> None:
        self.cfg, self.sessions = cfg, sessions
        self.port = cfg.inbound.smtp.port
        self.runner = Runner(cfg, sessions)
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(asyncio.run(self.runner.main(False))))

    def __enter__(self) -> Bot:
        self.thread.start()
        assert self.runner.ready.wait(10), "the bot did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.request_stop()
        self.thread.join(20)
        assert self.result == [0]


def start(tmp_path: Path, relay: Relay, **smtp: Any) -> tuple[Config, sessionmaker[Session]]:
    cfg = make_config(tmp_path, **{"inbound.smtp": {"port": free_port(), **smtp}},
                      outbound={"transport": "smtp", "port": relay.port})
    engine = make_engine(f"sqlite:///{tmp_path}/wgbot.sqlite3")
    migrate(engine)
    return cfg, make_sessionmaker(engine)


@pytest.fixture
def bot(tmp_path: Path, relay: Relay) -> Iterator[Bot]:
    cfg, sessions = start(tmp_path, relay, max_message_size=100_000)
    make_group(sessions, cfg, name="grp")
    with Bot(cfg, sessions) as b:
        yield b


def wait_for(predicate: Any, timeout: float = 5.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_unknown_recipient_is_refused_at_rcpt(bot: Bot) -> None:
    """RCPT to an address that is not ours answers 550 5.1.1."""
    with smtplib.SMTP("127.0.0.1", bot.port) as client:
        client.ehlo("client.example")
        client.mail("alice@example.com")
        code, reply = client.rcpt("nobody@lists.example.org")
        assert (code, reply[:5]) == (550, b"5.1.1")
        assert client.rcpt("wgbot@lists.example.org")[0] == 250


def test_size_is_advertised_and_enforced(bot: Bot) -> None:
    """SIZE is advertised; a message over max_message_size gets 552 5.3.4 and nothing is stored."""
    with smtplib.SMTP("127.0.0.1", bot.port) as client:
        client.ehlo("client.example")
        assert client.has_extn("size") and client.esmtp_features["size"] == "100000"
        # A client that declares the size is refused at MAIL FROM ...
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("alice@example.com", ["wgbot@lists.example.org"], mail(("x" * 70 + "\r\n") * 3000))
        assert refused.value.smtp_code == 552 and refused.value.smtp_error.startswith(b"5.3.4")
        # ... and one that does not is refused after the data, which is discarded as it arrives.
        client.rset()
        client.mail("alice@example.com")
        client.rcpt("wgbot@lists.example.org")
        code, reply = client.data(mail(("x" * 70 + "\r\n") * 3000))
        assert code == 552 and reply.startswith(b"5.3.4")
    with bot.sessions() as session:
        assert session.scalars(select(InboundMessage)).all() == []


def test_stored_before_250_and_answered_within_seconds(bot: Bot, relay: Relay) -> None:
    """After the 250 the message is in the store; its reply reaches the relay within two seconds."""
    with smtplib.SMTP("127.0.0.1", bot.port) as client:
        client.sendmail("alice@example.com", ["wgbot@lists.example.org"], mail("help"))
        with bot.sessions() as session:
            assert len(session.scalars(select(InboundMessage)).all()) == 1
    elapsed = wait_for(lambda: len(relay.messages) == 1)
    assert elapsed < 2.0
    assert relay.messages[0].rcpt_tos == ["alice@example.com"]
    assert "Results of your commands" in str(relay.messages[0].message["Subject"])


def test_our_fault_answers_451(bot: Bot) -> None:
    """When the store cannot take the message, the answer is 451 4.3.0, never a 5xx."""
    with bot.sessions.begin() as session:
        session.execute(text("DROP TABLE inbound_messages"))
    with smtplib.SMTP("127.0.0.1", bot.port) as client:
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail("alice@example.com", ["wgbot@lists.example.org"], mail("help"))
        assert err.value.smtp_code == 451 and err.value.smtp_error.startswith(b"4.3.0")


def lmtp_conversation(port: int, rcpts: list[str], data: bytes) -> list[str]:
    """Speak LMTP by hand and return the lines answered after DATA (smtplib.LMTP reads only one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        f = sock.makefile("rwb")

        def send(line: bytes) -> None:
            f.write(line + b"\r\n")
            f.flush()

        def reply() -> list[str]:
            lines = []
            while True:
                line = f.readline().decode().rstrip("\r\n")
                lines.append(line)
                if len(line) < 4 or line[3] != "-":
                    return lines
        reply()
        send(b"LHLO client.example")
        reply()
        send(b"MAIL FROM:<alice@example.com>")
        reply()
        for r in rcpts:
            send(f"RCPT TO:<{r}>".encode())
            assert reply()[0].startswith("250")
        send(b"DATA")
        reply()
        f.write(data.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        f.flush()
        answers = [reply()[0] for _ in rcpts]
        send(b"QUIT")
        return answers


def test_lmtp_answers_once_per_recipient(tmp_path: Path, relay: Relay) -> None:
    """LMTP gives one reply line per recipient after DATA (RFC 2033), and stores one row per recipient."""
    cfg, sessions = start(tmp_path, relay, protocol="lmtp")
    make_group(sessions, cfg, name="grp")
    with Bot(cfg, sessions) as bot:
        answers = lmtp_conversation(bot.port, ["wgbot@lists.example.org", "grp-request@lists.example.org"],
                                    mail("help"))
        assert [a[:3] for a in answers] == ["250", "250"]
        with sessions() as session:
            assert sorted(r.recipient for r in session.scalars(select(InboundMessage))) == [
                "grp-request@lists.example.org", "wgbot@lists.example.org"]


def test_starttls_is_offered_with_a_certificate(tmp_path: Path, relay: Relay, tls_files: tuple[Path, Path]) -> None:
    """With tls_cert and tls_key, the listener offers STARTTLS and accepts mail over it."""
    import ssl

    cert, key = tls_files
    cfg, sessions = start(tmp_path, relay, tls_cert=str(cert), tls_key=str(key))
    with Bot(cfg, sessions) as bot, smtplib.SMTP("127.0.0.1", bot.port) as client:
        client.ehlo("client.example")
        assert client.has_extn("starttls")
        client.starttls(context=ssl.create_default_context(cafile=str(cert)))
        client.sendmail("alice@example.com", ["wgbot@lists.example.org"], mail("help"))
        wait_for(lambda: len(relay.messages) == 1)
