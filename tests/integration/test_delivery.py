"""Outbound delivery over real SMTP to an aiosmtpd relay on loopback: reuse, retries, permanent failures, crashes."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import make_config
from tests.helpers import NOW, Relay, free_port
from wgbot import outbox
from wgbot.config import Config
from wgbot.render import compose
from wgbot.store import OutboxEntry


def smtp_config(tmp_path: Path, relay: Relay | None, port: int | None = None) -> Config:
    return make_config(tmp_path, outbound={"transport": "smtp", "host": "127.0.0.1",
                                           "port": port or (relay.port if relay else 1)})


def queue(sessions: sessionmaker[Session], cfg: Config, n: int, now: dt.datetime = NOW) -> None:
    with sessions.begin() as session:
        for i in range(n):
            msg = compose(cfg, "replies/refused.txt", {"reason": f"test {i}", "address": f"m{i}@example.com"},
                          to=[f"m{i}@example.com"], now=now)
            outbox.enqueue(session, msg, [f"m{i}@example.com"], cfg.network.bot_address, now)


def rows(sessions: sessionmaker[Session]) -> list[OutboxEntry]:
    with sessions() as session:
        return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def test_delivers_over_one_connection(sqlite_sessions: sessionmaker[Session], tmp_path: Path, relay: Relay) -> None:
    """Ten queued messages reach the relay over one reused connection, each with its envelope."""
    cfg = smtp_config(tmp_path, relay)
    queue(sqlite_sessions, cfg, 10)
    report = outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW)
    assert report.sent == 10 and report.deferred == 0
    assert sorted(m.rcpt_tos[0] for m in relay.messages) == sorted(f"m{i}@example.com" for i in range(10))
    assert {m.envelope_from for m in relay.messages} == {"wgbot@lists.example.org"}
    assert len({m.peer for m in relay.messages}) == 1
    assert all(r.status == "sent" and r.sent_at == NOW and r.attempts == 1 for r in rows(sqlite_sessions))
    # Nothing is sent twice: a second run finds nothing due.
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW).sent == 0 and len(relay.messages) == 10


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_deliverer_keeps_its_connection_while_busy_and_closes_it_when_idle(
        sqlite_sessions: sessionmaker[Session], tmp_path: Path, relay: Relay,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`wgbot run`'s deliverer sends what each wake finds over the connection it kept from the last one, and
    closes a connection idle for KEEP_SECONDS (the next mail opens a new one)."""
    monkeypatch.setattr(outbox.Deliverer, "KEEP_SECONDS", 0.5)
    cfg = smtp_config(tmp_path, relay)
    deliverer = outbox.Deliverer(sqlite_sessions, cfg, lambda: NOW, interval=30)
    deliverer.start()
    try:
        queue(sqlite_sessions, cfg, 3)
        deliverer.wake()
        wait_until(lambda: len(relay.messages) == 3)
        queue(sqlite_sessions, cfg, 2)
        deliverer.wake()
        wait_until(lambda: len(relay.messages) == 5)
        assert len({m.peer for m in relay.messages}) == 1
        time.sleep(1.0)
        queue(sqlite_sessions, cfg, 1)
        deliverer.wake()
        wait_until(lambda: len(relay.messages) == 6)
        assert len({m.peer for m in relay.messages}) == 2
    finally:
        deliverer.stop(5)
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(sqlite_sessions))


def test_deliverer_reconnects_when_the_relay_drops_a_kept_connection(
        sqlite_sessions: sessionmaker[Session], tmp_path: Path, relay: Relay) -> None:
    """A relay that closes the connection after each message (a per-connection limit, an idle timeout): the
    next message goes over a new connection at once instead of waiting for a retry."""
    import asyncio

    original = relay.handle_DATA
    hung_up: list[int] = []

    async def data_then_hang_up(server: Any, session: Any, envelope: Any) -> str:
        reply = await original(server, session, envelope)

        def hang_up() -> None:
            server.transport.close()
            hung_up.append(1)
        asyncio.get_running_loop().call_later(0.05, hang_up)
        return reply

    relay.handle_DATA = data_then_hang_up  # type: ignore[method-assign]
    cfg = smtp_config(tmp_path, relay)
    deliverer = outbox.Deliverer(sqlite_sessions, cfg, lambda: NOW, interval=30)
    deliverer.start()
    try:
        for expected in (1, 2, 3):
            queue(sqlite_sessions, cfg, 1)
            deliverer.wake()
            wait_until(lambda n=expected: len(relay.messages) == n)
            # Under load the next message could otherwise be claimed before the relay has hung up.
            wait_until(lambda n=expected: len(hung_up) == n)
    finally:
        deliverer.stop(5)
    assert len({m.peer for m in relay.messages}) == 3
    assert all(r.status == "sent" and r.attempts == 1 and r.last_error == "" for r in rows(sqlite_sessions))


def test_4xx_is_retried_with_backoff(sqlite_sessions: sessionmaker[Session], tmp_path: Path, relay: Relay) -> None:
    """A 4xx answer defers the message with a growing wait; it goes out once the relay accepts it."""
    cfg = smtp_config(tmp_path, relay)
    queue(sqlite_sessions, cfg, 1)
    relay.rcpt_reply["m0@example.com"] = "450 4.2.0 Mailbox busy"
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW).deferred == 1
    row = rows(sqlite_sessions)[0]
    assert row.status == "queued" and row.attempts == 1 and "450" in row.last_error
    assert row.next_attempt_at == NOW + dt.timedelta(seconds=cfg.outbound.retry_base_seconds)
    # Not due yet: nothing happens.
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW + dt.timedelta(seconds=1)).deferred == 0
    later = NOW + dt.timedelta(seconds=cfg.outbound.retry_base_seconds)
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: later).deferred == 1
    row = rows(sqlite_sessions)[0]
    wait = dt.timedelta(seconds=2 * cfg.outbound.retry_base_seconds)
    assert row.attempts == 2 and row.next_attempt_at == later + wait
    del relay.rcpt_reply["m0@example.com"]
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: row.next_attempt_at).sent == 1
    assert len(relay.messages) == 1


def test_5xx_is_permanent(sqlite_sessions: sessionmaker[Session], tmp_path: Path, relay: Relay) -> None:
    """A 5xx answer marks the message failed with the relay's words, and it is not tried again."""
    cfg = smtp_config(tmp_path, relay)
    queue(sqlite_sessions, cfg, 2)
    relay.rcpt_reply["m0@example.com"] = "550 5.1.1 No such user"
    report = outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW)
    assert (report.sent, report.failed) == (1, 1)
    failed = rows(sqlite_sessions)[0]
    assert failed.status == "failed" and "550 5.1.1 No such user" in failed.last_error
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW + dt.timedelta(days=1)).failed == 0


def test_relay_down_defers_then_gives_up(sqlite_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """With no relay listening, mail waits and is retried; after give_up_days it is marked failed."""
    cfg = smtp_config(tmp_path, None, port=free_port())
    queue(sqlite_sessions, cfg, 3)
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW).deferred == 3
    assert all(r.status == "queued" and "ConnectionRefused" in r.last_error for r in rows(sqlite_sessions))
    late = NOW + dt.timedelta(days=cfg.outbound.give_up_days, hours=1)
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: late).failed == 3
    assert all(r.status == "failed" and "gave up after 5 days" in r.last_error for r in rows(sqlite_sessions))


def test_backoff_is_capped() -> None:
    """The wait doubles from retry_base_seconds up to retry_max_seconds."""
    cfg = make_config(Path("/tmp"))
    waits = [outbox.backoff(cfg, n).total_seconds() for n in range(1, 12)]
    assert waits[:4] == [60, 120, 240, 480] and max(waits) == cfg.outbound.retry_max_seconds


def test_maildir_transport(sqlite_sessions: sessionmaker[Session], cfg: Config) -> None:
    """transport = maildir writes one file per recipient, with Delivered-To and Return-Path."""
    queue(sqlite_sessions, cfg, 2)
    assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW).sent == 2
    files = sorted((cfg.resolve(cfg.outbound.maildir) / "new").iterdir())
    assert len(files) == 2
    data = files[0].read_bytes()
    assert data.startswith(b"Return-Path: <wgbot@lists.example.org>\nDelivered-To: m")
    assert b"\r" not in data  # Maildir files use LF line ends


def test_crash_between_send_and_commit_resends_only_that_message(tmp_path: Path, relay: Relay) -> None:
    """SIGKILL of `wgbot deliver` while the relay holds message 3: the restart sends 3 again (same Message-ID)
    and everything else exactly once."""
    from wgbot.db import migrate
    from wgbot.store import make_engine, make_sessionmaker

    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(f"""
[network]
name = "Test"
list_domain = "lists.example.org"
bot_address = "wgbot@lists.example.org"
[database]
url = "sqlite:///{tmp_path}/wgbot.sqlite3"
[outbound]
transport = "smtp"
host = "127.0.0.1"
port = {relay.port}
""")
    cfg = smtp_config(tmp_path, relay)
    engine = make_engine(f"sqlite:///{tmp_path}/wgbot.sqlite3")
    migrate(engine)
    sessions = make_sessionmaker(engine)
    queue(sessions, cfg, 8, now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))
    holder: dict[str, subprocess.Popen[bytes]] = {}

    def kill_on_third(count: int) -> None:
        if count == 3 and "killed" not in holder:
            holder["killed"] = holder["proc"]
            os.kill(holder["proc"].pid, signal.SIGKILL)
            holder["proc"].wait(timeout=10)

    relay.on_data = kill_on_third
    cmd = [sys.executable, "-m", "wgbot", "--config", str(cfg_path), "deliver"]
    holder["proc"] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder["proc"].wait(timeout=60)
    assert holder["proc"].returncode == -signal.SIGKILL
    assert len(relay.messages) == 3
    relay.on_data = None
    done = subprocess.run(cmd, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    ids = [str(m.message["Message-ID"]) for m in relay.messages]
    assert len(set(ids)) == 8                      # every message arrived
    assert len(ids) == 9                           # ... and exactly one of them twice
    assert ids.count(ids[2]) == 2                  # the one in flight when the process died
    assert all(r.status == "sent" for r in rows(sessions))
    engine.dispose()


def test_starttls_and_auth(sqlite_sessions: sessionmaker[Session], tmp_path: Path,
                           tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """With starttls and a username, delivery upgrades the connection, verifies the certificate and logs in."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"s3cret")

    port = free_port()
    handler = Relay("127.0.0.1", port)
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True)
    controller.start()
    try:
        monkeypatch.setenv("WGBOT_TEST_RELAY_PW", "s3cret")
        cfg = make_config(tmp_path, outbound={"transport": "smtp", "host": "127.0.0.1", "port": port,
                                              "starttls": True, "ca_file": str(cert), "username": "bot",
                                              "password_env": "WGBOT_TEST_RELAY_PW"})
        queue(sqlite_sessions, cfg, 2)
        assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW).sent == 2
        assert logins == [(b"bot", b"s3cret")] and len(handler.messages) == 2
        # Without the CA the certificate is not trusted: nothing is sent, the mail waits.
        untrusted = make_config(tmp_path, outbound={"transport": "smtp", "host": "127.0.0.1", "port": port,
                                                    "starttls": True})
        queue(sqlite_sessions, untrusted, 1)
        assert outbox.deliver_due(sqlite_sessions, untrusted, lambda: NOW).deferred == 1
        assert len(handler.messages) == 2
    finally:
        controller.stop()


def _smtp_sink(tmp_path: Path, *options: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    import shutil

    from tests.helpers import need
    from tests.servers import have

    need(have("smtp-sink"), "smtp-sink (apt-get install postfix) run as root")
    import tempfile

    # Not under tmp_path: pytest keeps that 0700, and smtp-sink writes as nobody (realparts.md §6).
    dump = Path(tempfile.mkdtemp(prefix="wgbot-sink-", dir="/tmp"))
    dump.chmod(0o755)
    shutil.chown(dump, "nobody")
    port = free_port()
    proc = subprocess.Popen(["smtp-sink", "-u", "nobody", *options, "-d", f"{dump}/%M.", f"127.0.0.1:{port}", "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket as _socket

    from tests.integration.test_listener import wait_for


    def up() -> bool:
        try:
            _socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(up, timeout=10)
    return proc, port, dump


def test_pipelined_delivery_to_a_pipelining_relay(sqlite_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Against a relay that offers PIPELINING (Postfix's smtp-sink), messages go out pipelined: each arrives
    whole, with its envelope; a batch of recipients shares one transaction; a refused RCPT fails the row."""
    proc, port, dump = _smtp_sink(tmp_path)
    try:
        cfg = make_config(tmp_path, outbound={"transport": "smtp", "host": "127.0.0.1", "port": port})
        queue(sqlite_sessions, cfg, 20)
        with sqlite_sessions.begin() as session:
            msg = compose(cfg, "replies/refused.txt", {"reason": "batch", "address": "x@example.com"},
                          to=["list@example.com"], now=NOW)
            outbox.enqueue(session, msg, [f"b{i}@example.com" for i in range(150)], "grp-bounces@lists.example.org",
                           NOW)
        assert outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW).sent == 170
        from tests.integration.test_listener import wait_for

        wait_for(lambda: len(list(dump.iterdir())) == 20 + 2, timeout=10)
        files = [p.read_bytes() for p in dump.iterdir()]
        batches = [f for f in files if b"grp-bounces@lists.example.org" in f.split(b"\r\n\r\n")[0]]
        assert sorted(f.count(b"X-Rcpt-Args:") for f in batches) == [50, 100]
        assert all(b"We received a message from" in f for f in files)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(dump, ignore_errors=True)
    proc, port, dump = _smtp_sink(tmp_path / "refusing", "-f", "RCPT")
    try:
        cfg = make_config(tmp_path, outbound={"transport": "smtp", "host": "127.0.0.1", "port": port})
        queue(sqlite_sessions, cfg, 2, now=NOW + dt.timedelta(seconds=1))
        report = outbox.deliver_due(sqlite_sessions, cfg, lambda: NOW + dt.timedelta(seconds=1))
        assert report.failed == 2 and report.sent == 0
        assert all("5" == r.last_error[0] for r in rows(sqlite_sessions) if r.status == "failed")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(dump, ignore_errors=True)
