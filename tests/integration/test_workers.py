"""Several `wgbot run --role delivery` processes on one PostgreSQL database: they share the outbox without
sending a message twice (beyond the one in flight when a process is killed), and exactly one of them leads
(runs the scheduler and the poller); when the leader dies, another takes over."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from tests.conftest import make_config
from tests.helpers import Relay
from tests.integration.test_delivery import queue
from tests.integration.test_listener import wait_for
from wgbot.db import migrate
from wgbot.store import make_engine, make_sessionmaker

N = 300


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "wgbot", "--config", str(config), "run", "--role", "delivery"],
                                stdout=out, stderr=out)


def test_two_workers_share_the_outbox_and_the_leadership(tmp_path: Path, relay: Relay, pg_url: str) -> None:
    """300 messages, two workers with two SMTP connections each; SIGKILL the leader half-way: every message
    arrives, at most one per connection of the killed worker twice, and the survivor becomes the leader."""
    config = tmp_path / "config.toml"
    config.write_text(f"""
[network]
name = "Test"
rules = "igf"
list_domain = "lists.example.org"
bot_address = "wgbot@lists.example.org"
[database]
url = "{pg_url}"
[outbound]
transport = "smtp"
port = {relay.port}
connections = 2
batch_size = 20
lease_seconds = 20     # the killed worker's claimed rows are free again after 20 s, not 10 minutes (a live
                       # worker never holds a batch that long, even on a loaded machine)
[schedule]
rollup_on = ""
""")
    cfg = make_config(tmp_path, database={"url": pg_url})
    engine = make_engine(pg_url)
    migrate(engine)
    sessions = make_sessionmaker(engine)
    queue(sessions, cfg, N, now=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5))
    relay.on_data = lambda count: time.sleep(0.01)   # a relay that takes 10 ms a message
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    first = start(config, logs[0])
    second = None
    try:
        wait_for(lambda: "became the leader" in logs[0].read_text(), timeout=20)
        second = start(config, logs[1])
        wait_for(lambda: len(relay.messages) >= 100, timeout=60)
        assert "became the leader" not in logs[1].read_text()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        wait_for(lambda: "became the leader" in logs[1].read_text(), timeout=20)
        wait_for(lambda: len({str(m.message["Message-ID"]) for m in relay.messages}) == N, timeout=90)
        time.sleep(1)
        counts = Counter(str(m.message["Message-ID"]) for m in relay.messages)
        assert len(counts) == N
        assert sum(counts.values()) - N <= 2, "more messages were sent twice than were in flight"
        assert "delivery:" in logs[1].read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        engine.dispose()
