"""`wgbot run` as a real process, for tests that kill it."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import free_port, mail
from wgbot.db import migrate
from wgbot.store import make_engine, make_sessionmaker


class BotProcess:
    def __init__(self, tmp_path: Path, relay_port: int, *, protocol: str = "smtp",
                 imap: dict[str, object] | None = None, smtp_enabled: bool = True, db_url: str = "",
                 limits: str = "") -> None:
        self.port = free_port()
        self.config = tmp_path / "config.toml"
        self.log = tmp_path / "run.log"
        imap_toml = ""
        if imap:
            imap_toml = "[inbound.imap]\nenabled = true\n" + "".join(
                f"{k} = {v!r}\n".replace("'", '"').replace("True", "true").replace("False", "false")
                for k, v in imap.items())
        self.config.write_text(f"""
[network]
name = "Test Network"
list_domain = "lists.example.org"
bot_address = "wgbot@lists.example.org"
secretariat = ["office@example.org"]
[database]
url = "{db_url or f"sqlite:///{tmp_path}/wgbot.sqlite3"}"
[inbound.smtp]
enabled = {"true" if smtp_enabled else "false"}
port = {self.port}
protocol = "{protocol}"
{imap_toml}
[outbound]
transport = "smtp"
port = {relay_port}
[limits]
replies_per_day = 1000
{limits}
[web]
enabled = false
""")
        self.engine = make_engine(db_url or f"sqlite:///{tmp_path}/wgbot.sqlite3")
        migrate(self.engine)
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "wgbot", "--config", str(self.config), "run"],
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"wgbot run exited: {self.log.read_text()}") from None
                time.sleep(0.05)
        raise RuntimeError("wgbot run did not listen in time")

    def start_imap_only(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "wgbot", "--config", str(self.config), "run"],
                                         stdout=log, stderr=log)

    def signal(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        self.engine.dispose()


class Sender(threading.Thread):
    """Sends messages 0..n-1 like an MTA would: each retried until it is answered 250."""

    def __init__(self, port: int, n: int, body: str = "groups") -> None:
        super().__init__(daemon=True)
        self.port, self.n, self.body = port, n, body
        self.retries = 0
        self.error: Exception | None = None

    def message(self, i: int) -> bytes:
        return mail(self.body, sender=f"u{i}@example.com", msgid=f"<c{i}@example.com>")

    def run(self) -> None:
        client: smtplib.SMTP | None = None
        try:
            for i in range(self.n):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client is None:
                            client = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
                        client.sendmail(f"u{i}@example.com", ["wgbot@lists.example.org"], self.message(i))
                        break
                    except (OSError, smtplib.SMTPException):
                        if time.monotonic() > deadline:
                            raise
                        self.retries += 1
                        if client is not None:
                            try:
                                client.close()
                            except OSError:
                                pass
                        client = None
                        time.sleep(0.1)
        except Exception as exc:
            self.error = exc
        finally:
            if client is not None:
                try:
                    client.quit()
                except (OSError, smtplib.SMTPException):
                    client.close()
