"""wgbot benchmarks: speed and memory against the loopback SMTP limit, measured in the same run.

    python -m benchmarks.bench all                  # everything at the default sizes
    python -m benchmarks.bench fanout --sizes 1000,10000,100000 --runs 3
    python -m benchmarks.bench commands|import|digest|intake|intake-postfix|startup|web|countries
    python -m benchmarks.bench all --smoke          # tiny sizes, one run (what CI may run)

Every figure is a median of --runs runs. Each benchmark prints two baselines measured in the same run on the
same message size and count: Postfix's smtp-source into smtp-sink (the physical limit of loopback SMTP) and
Python's smtplib over one connection into the same sink; then wgbot's time and the ratios. Peak RSS is the
bot process's high-water mark (VmHWM). Needs the postfix package (smtp-source, smtp-sink) and root or a
user smtp-sink may run as; intake-postfix also starts a private Postfix (root). The machine's speed can vary
between runs: compare wgbot with the baselines of the same run.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BODY_4K = ("x" * 75 + "\r\n") * 53  # 4 KB
MAILMAN = {"fanout-personalized-10000": 111.0, "fanout-batched-10000": 6.7, "import-10000": 92.0,
           "commands-1000": 85.0 * 2, "startup-help": 0.7}  # Mailman 3.3.10 on this machine kind (issue 7)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


class Sink:
    """smtp-sink with its running counter read from stdout."""

    def __init__(self) -> None:
        if not shutil.which("smtp-sink"):
            raise SystemExit("smtp-sink not found: apt-get install postfix (it provides smtp-sink and smtp-source)")
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(["smtp-sink", *user, "-c", f"127.0.0.1:{self.port}", "1000"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.mesg = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        wait_port(self.port)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                return
            buf = (buf + chunk)[-4096:]
            found = re.findall(rb"mesg=(\d+)", buf)
            if found:
                with self.lock:
                    self.mesg = int(found[-1])

    def count(self) -> int:
        with self.lock:
            return self.mesg

    def wait_for(self, n: int, timeout: float = 600) -> float:
        """Seconds until the sink has `n` messages (from now)."""
        start = time.monotonic()
        while self.count() < n:
            if time.monotonic() - start > timeout:
                raise RuntimeError(f"sink got {self.count()} of {n} messages in {timeout} s")
            time.sleep(0.002)
        return time.monotonic()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def baseline_smtp_source(sink: Sink, n: int, size: int = 4096) -> float:
    before = sink.count()
    start = time.monotonic()
    subprocess.run(["smtp-source", "-s", "4", "-d", "-m", str(n), "-l", str(size), "-M", "bench.example",
                    "-f", "src@example.com", "-t", "rcpt@example.com", f"127.0.0.1:{sink.port}"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return sink.wait_for(before + n) - start


def baseline_smtplib(sink: Sink, n: int, size: int = 4096) -> float:
    before = sink.count()
    body = BODY_4K * max(1, size // len(BODY_4K))
    message = ("From: a@example.com\r\nTo: b@example.com\r\nSubject: x\r\n\r\n" + body).encode()
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", sink.port) as client:
        for i in range(n):
            client.sendmail("a@example.com", [f"r{i}@example.com"], message)
    return sink.wait_for(before + n) - start


class Site:
    """A configured wgbot with its own SQLite database, sending to the sink."""

    connections = 8

    def __init__(self, sink: Sink, personalize: bool = True, connections: int | None = None, extra: str = "") -> None:
        connections = connections or self.connections
        self.dir = Path(tempfile.mkdtemp(prefix="wgbot-bench-"))
        self.port = free_port()
        self.web_port = free_port()
        self.config = self.dir / "config.toml"
        self.config.write_text(f"""
[network]
name = "Bench"
rules = "igf"
list_domain = "lists.example.org"
bot_address = "wgbot@lists.example.org"
secretariat = ["office@example.org"]
[database]
url = "sqlite:///{self.dir}/wgbot.sqlite3"
[inbound.smtp]
port = {self.port}
[outbound]
transport = "smtp"
port = {sink.port}
connections = {connections}
[lists]
personalize = {"true" if personalize else "false"}
[limits]
replies_per_day = 100000
[schedule]
rollup_on = ""
[log]
level = "WARNING"
[web]
port = {self.web_port}
{extra}""")
        self.wgbot("init")
        self.proc: subprocess.Popen[bytes] | None = None

    def wgbot(self, *args: str) -> float:
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "wgbot", "--config", str(self.config), *args], check=True,
                       stdout=subprocess.DEVNULL, cwd=self.dir)
        return time.monotonic() - start

    def sessions(self) -> Any:
        sys.path.insert(0, str(ROOT))
        from wgbot.store import make_engine, make_sessionmaker

        return make_sessionmaker(make_engine(f"sqlite:///{self.dir}/wgbot.sqlite3"))

    def group_with_members(self, n: int, delivery: str = "regular") -> str:
        self.wgbot("group", "create", "Bench Group", "--contact", "chair@example.org")
        from sqlalchemy import insert, select

        from wgbot.store import Group, Member, Membership

        sessions = self.sessions()
        now = dt.datetime.now(dt.UTC)
        with sessions.begin() as session:
            gid = session.scalar(select(Group.id))
            session.execute(insert(Member), [{"address": f"m{i}@members.example",
                                              "address_key": f"m{i}@members.example", "name": "",
                                              "organisation": "", "country": "", "created_at": now}
                                             for i in range(n)])
            ids = session.scalars(select(Member.id).where(Member.address_key.like("%@members.example"))).all()
            session.execute(insert(Membership), [{"group_id": gid, "member_id": i, "role": "member",
                                                  "delivery": delivery, "delivery_reason": "", "moderated": False,
                                                  "digest_format": "mime", "joined_at": now} for i in ids])
        return "bench-group"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "wgbot", "--config", str(self.config), "run"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "run.log", "wb"))
        wait_port(self.port)

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM:")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS:")

    def _status_mb(self, field: str) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def send(port: int, messages: list[tuple[str, str, bytes]]) -> float:
    """Send (from, to, bytes) over one connection; returns the time of the first 250."""
    first = 0.0
    with smtplib.SMTP("127.0.0.1", port) as client:
        for sender, rcpt, raw in messages:
            client.sendmail(sender, [rcpt], raw)
            first = first or time.monotonic()
    return first


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(name: str, n: int, wgbot: list[float], source: list[float], stdlib: list[float], unit: str,
           rss: list[float] | None = None, target: str = "") -> None:
    w, s, p = median(wgbot), median(source), median(stdlib)
    per = f"{n / w:,.0f} {unit}/s" if w else ""
    rss_text = f", peak RSS {max(rss):.0f} MB" if rss else ""
    print(f"{name}: wgbot {w:.2f} s ({per}{rss_text}) | smtp-source→smtp-sink {s:.2f} s ({n / s:,.0f}/s) | "
          f"smtplib→smtp-sink {p:.2f} s ({n / p:,.0f}/s) | wgbot/smtp-source {w / s:.1f}x, wgbot/smtplib "
          f"{w / p:.1f}x" + (f" | target {target}" if target else ""))
    key = f"{name}"
    if key in MAILMAN:
        print(f"    Mailman 3.3.10 measured {MAILMAN[key]:.1f} s on this machine kind: wgbot is "
              f"{MAILMAN[key] / w:.0f}x faster")


def post_message(slug: str) -> bytes:
    return (f"From: chair@example.org\r\nTo: {slug}@lists.example.org\r\nSubject: Bench\r\n"
            f"Message-ID: <bench-{time.monotonic_ns()}@example.org>\r\n\r\n{BODY_4K}").encode()


def bench_fanout(sink: Sink, sizes: list[int], runs: int) -> None:
    for n in sizes:
        for personalize in (True, False):
            label = f"fanout-{'personalized' if personalize else 'batched'}-{n}"
            times, rss, source, stdlib = [], [], [], []
            for _ in range(runs):
                site = Site(sink, personalize=personalize)
                try:
                    slug = site.group_with_members(n)
                    site.start()
                    expected = n + 1 if personalize else -(-(n + 1) // 100)
                    before = sink.count()
                    first = send(site.port, [("chair@example.org", f"{slug}@lists.example.org", post_message(slug))])
                    times.append(sink.wait_for(before + expected) - first)
                    rss.append(site.peak_rss_mb())
                finally:
                    site.stop()
                source.append(baseline_smtp_source(sink, n + 1))
                stdlib.append(baseline_smtplib(sink, min(n + 1, 20000)) * (n + 1) / min(n + 1, 20000))
            target = ("< 5 s for 10,000" if personalize else "< 1 s for 10,000") if n == 10000 else ""
            report(label, n + 1, times, source, stdlib, "recipients", rss, target)


def bench_commands(sink: Sink, n: int, runs: int) -> None:
    times, rss, source, stdlib = [], [], [], []
    for _ in range(runs):
        site = Site(sink)
        try:
            site.wgbot("group", "create", "Bench Group", "--contact", "chair@example.org")
            site.start()
            messages = [(f"u{i}@people.example", "wgbot@lists.example.org",
                         (f"From: u{i}@people.example\r\nTo: wgbot@lists.example.org\r\nSubject: join bench-group\r\n"
                          f"Message-ID: <j{i}.{time.monotonic_ns()}@people.example>\r\n\r\n").encode())
                        for i in range(n)]
            before = sink.count()
            first = send(site.port, messages)
            times.append(sink.wait_for(before + 2 * n) - first)   # a reply and a confirmation request each
            rss.append(site.peak_rss_mb())
        finally:
            site.stop()
        source.append(baseline_smtp_source(sink, n))
        stdlib.append(baseline_smtplib(sink, n))
    report(f"commands-{n}", n, times, source, stdlib, "commands", rss, "< 5 s for 1,000")


def bench_import(sink: Sink, sizes: list[int], runs: int) -> None:
    for n in sizes:
        times, rss = [], []
        for _ in range(runs):
            site = Site(sink)
            try:
                site.wgbot("group", "create", "Bench Group", "--contact", "chair@example.org")
                path = site.dir / "members.csv"
                with open(path, "w", newline="") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["address", "name", "organisation", "country", "delivery"])
                    for i in range(n):
                        writer.writerow([f"m{i}@members.example", f"Member {i}", f"Org {i % 500}",
                                         ("IT", "DE", "Austria", "Sverige")[i % 4], "regular"])
                start = time.monotonic()
                proc = subprocess.Popen([sys.executable, "-m", "wgbot", "--config", str(site.config), "import",
                                         "bench-group", str(path)], stdout=subprocess.DEVNULL)
                _, status, usage = os.wait4(proc.pid, 0)
                times.append(time.monotonic() - start)
                assert status == 0, "import failed"
                rss.append(usage.ru_maxrss / 1024)
            finally:
                site.stop()
        print(f"import-{n}: wgbot {median(times):.2f} s ({n / median(times):,.0f} rows/s, peak RSS "
              f"{max(rss):.0f} MB) | target < 2 s for 10,000")
        if f"import-{n}" in MAILMAN:
            print(f"    Mailman 3.3.10 measured {MAILMAN[f'import-{n}']:.0f} s: wgbot is "
                  f"{MAILMAN[f'import-{n}'] / median(times):.0f}x faster")


def bench_digest(sink: Sink, members: int, posts: int, runs: int) -> None:
    times, rss, source, stdlib = [], [], [], []
    for _ in range(runs):
        site = Site(sink)
        try:
            site.group_with_members(members, delivery="digest")
            from sqlalchemy import insert, select

            from wgbot.store import Group, Post

            sessions = site.sessions()
            now = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
            with sessions.begin() as session:
                gid = session.scalar(select(Group.id))
                session.execute(insert(Post), [{"group_id": gid, "message_id": f"<p{i}@example.org>",
                                                "sender": "chair@example.org", "subject": f"Post {i}",
                                                "raw": post_message("bench-group"), "posted_at": now}
                                               for i in range(posts)])
            before = sink.count()
            start = time.monotonic()
            proc = subprocess.Popen([sys.executable, "-m", "wgbot", "--config", str(site.config), "tick", "--now",
                                     dt.datetime.now(dt.UTC).replace(hour=23, minute=0).isoformat()],
                                    stdout=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            times.append(sink.wait_for(before + members) - start)
            rss.append(usage.ru_maxrss / 1024)
        finally:
            site.stop()
        size = len(post_message("x")) * posts  # about the size of one digest
        source.append(baseline_smtp_source(sink, members, size))
        stdlib.append(baseline_smtplib(sink, members, size))
    report(f"digest-{members}x{posts}", members, times, source, stdlib, "digests", rss)


def lmtp_site(sink: Sink) -> Site:
    """A bot whose listener speaks LMTP (not started yet)."""
    site = Site(sink)
    site.config.write_text(site.config.read_text().replace('[inbound.smtp]\n', '[inbound.smtp]\nprotocol = "lmtp"\n'))
    return site


def inject_bounces(port: int, n: int, sessions: int, lmtp: bool = False) -> None:
    """smtp-source: n 4 KB messages from MAILER-DAEMON to the bot's address (cheap to process)."""
    subprocess.run(["smtp-source", *(["-L"] if lmtp else []), "-s", str(sessions), "-d", "-m", str(n), "-l", "4096",
                    "-M", "mx.example", "-f", "MAILER-DAEMON@mx.example", "-t", "wgbot@lists.example.org",
                    f"127.0.0.1:{port}"], check=True, stdout=subprocess.DEVNULL)


def bench_intake(sink: Sink, n: int, runs: int) -> None:
    """LMTP intake: smtp-source speaking LMTP (as Postfix's lmtp client does) into `wgbot run`, with 4 and with 20
    sessions (20 is Postfix's default_destination_concurrency_limit, which lmtp_destination_concurrency_limit
    inherits); the clock stops when smtp-source has every message answered 250, i.e. committed to the store.
    The senders are MAILER-DAEMON, so processing them is cheap and the figure is the intake's."""
    for sessions in (4, 20):
        times, rss, source = [], [], []
        for _ in range(runs):
            site = lmtp_site(sink)
            try:
                site.start()
                start = time.monotonic()
                inject_bounces(site.port, n, sessions, lmtp=True)
                times.append(time.monotonic() - start)
                rss.append(site.peak_rss_mb())
                from sqlalchemy import func, select

                from wgbot.store import InboundMessage

                with site.sessions()() as session:
                    stored = session.scalar(select(func.count()).select_from(InboundMessage))
                assert stored == n, f"{stored} of {n} messages stored"
            finally:
                site.stop()
            source.append(baseline_smtp_source(sink, n))
        w = median(times)
        print(f"intake-lmtp-{n}-{sessions}-sessions: wgbot {w:.2f} s ({n / w:,.0f} messages/s persisted, peak RSS "
              f"{max(rss):.0f} MB) | smtp-source→smtp-sink {median(source):.2f} s | target >= 500 messages/s")


def bench_intake_postfix(sink: Sink, n: int, runs: int) -> None:
    """Intake through a real Postfix (a private instance, as the tests run it): smtp-source injects n messages
    into Postfix with 20 sessions; Postfix queues them and delivers them to `wgbot run` over LMTP with its own
    concurrency. The clock stops when all n are committed in wgbot's store. Baseline: the same Postfix relaying
    the same messages to smtp-sink (Postfix's own limit on this machine). Needs root (Postfix runs as root)."""
    sys.path.insert(0, str(ROOT))
    import sqlite3

    from tests.servers import postfix

    times, rss, limit = [], [], []
    for _ in range(runs):
        site = lmtp_site(sink)
        try:
            site.start()

            with postfix("lists.example.org", f"lmtp:[127.0.0.1]:{site.port}", sink.port) as mta:
                db = sqlite3.connect(str(site.dir / "wgbot.sqlite3"), timeout=30)
                start = time.monotonic()
                inject_bounces(mta.smtp_port, n, 20)
                deadline = start + 600
                while db.execute("SELECT count(*) FROM inbound_messages").fetchone()[0] < n:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Postfix delivered too little to wgbot: {mta.log()[-2000:]}")
                    time.sleep(0.01)
                times.append(time.monotonic() - start)
                db.close()
            rss.append(site.peak_rss_mb())
        finally:
            site.stop()
        with postfix("lists.example.org", f"smtp:[127.0.0.1]:{sink.port}", sink.port) as mta:
            before = sink.count()
            start = time.monotonic()
            inject_bounces(mta.smtp_port, n, 20)
            limit.append(sink.wait_for(before + n) - start)
    w = median(times)
    print(f"intake-postfix-{n}: wgbot {w:.2f} s ({n / w:,.0f} messages/s persisted, peak RSS {max(rss):.0f} MB) | "
          f"the same Postfix into smtp-sink {median(limit):.2f} s ({n / median(limit):,.0f}/s) | "
          f"target >= 500 messages/s")


def bench_startup(sink: Sink, runs: int, smoke: bool = False) -> None:
    """`wgbot --help`; `wgbot process` of one message as a whole process, handed to a running `wgbot run` (what
    an MTA pipe does beside the bot) and processed in the command itself (--local, no bot running); each up to
    the reply accepted at the sink."""
    site = Site(sink)
    helps, handed, local = [], [], []
    repeats = 1 if smoke else max(runs, 5)   # process starts are cheap to repeat, except in the test suite

    def message(i: int, kind: str) -> Path:
        path = site.dir / f"{kind}{i}.eml"
        path.write_bytes((f"From: {kind}{i}@example.com\r\nTo: wgbot@lists.example.org\r\nSubject: help\r\n"
                          f"Message-ID: <{kind}{i}.{time.monotonic_ns()}@example.com>\r\n\r\n").encode())
        return path

    try:
        site.wgbot("group", "create", "Bench Group", "--contact", "chair@example.org")
        for i in range(repeats):
            start = time.monotonic()
            subprocess.run([sys.executable, "-m", "wgbot", "--help"], check=True, stdout=subprocess.DEVNULL)
            helps.append(time.monotonic() - start)
            local.append(site.wgbot("process", "--local", str(message(i, "local"))))
        site.start()
        for i in range(repeats):
            handed.append(site.wgbot("process", str(message(i, "handed"))))
    finally:
        site.stop()
    print(f"startup-help: wgbot --help {median(helps):.3f} s (Mailman's CLI: 0.7 s) | wgbot process (one message, "
          f"whole process, reply delivered): {median(handed):.3f} s handed to the running bot, "
          f"{median(local):.3f} s processed in the command (--local) | target < 0.3 s")


WORDS = ("meeting agenda report housing inclusion migrants city council budget indicators policy draft comment "
         "deadline assembly minutes training school health employment language culture youth sport mobility "
         "participation discrimination equality network partners survey workshop evaluation").split()


def fill_web(site: Site, groups: int, posts: int) -> list[int]:
    """`groups` groups with a contact each, and `posts` archived posts in the first one (over 24 months, in
    threads of five, each post answering the one before), written straight into the store with their search
    index, already sent in digests (as in a running list); returns some post ids."""
    import random

    from sqlalchemy import insert, select, text

    from wgbot.store import ArchivedPost, Group, Member, Membership, Post

    rng = random.Random(7)
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with site.sessions().begin() as session:
        session.execute(insert(Group), [{"slug": f"g{i}", "name": f"Working Group {i}", "status": "active",
                                         "introduction": " ".join(rng.choices(WORDS, k=40)), "created_at": now}
                                        for i in range(groups)])
        session.execute(insert(Member), [{"address": f"c{i}@city{i}.example", "address_key": f"c{i}@city{i}.example",
                                          "organisation": f"City {i}", "country": ("IT", "DE", "FR", "AT")[i % 4],
                                          "created_at": now} for i in range(groups)])
        gids = session.scalars(select(Group.id).order_by(Group.id)).all()
        mids = session.scalars(select(Member.id).order_by(Member.id)).all()
        session.execute(insert(Membership), [{"group_id": g, "member_id": m, "role": "contact", "joined_at": now}
                                             for g, m in zip(gids, mids, strict=True)])
        for start in range(0, posts, 5000):
            chunk = range(start, min(posts, start + 5000))
            session.execute(insert(Post), [{"id": i + 1, "group_id": gids[0], "message_id": f"<p{i}@b.example>",
                                            "sender": "a@b.example", "subject": "s", "raw": b"", "posted_at": now,
                                            "digested_at": now}
                                           for i in chunk])
            session.execute(insert(ArchivedPost), [
                {"id": i + 1, "post_id": i + 1, "group_id": gids[0], "message_id": f"<p{i}@b.example>",
                 "parent_id": i if i % 5 else None, "thread_id": i - i % 5 + 1,
                 "month": f"{2025 + (i * 24 // posts) // 12}-{(i * 24 // posts) % 12 + 1:02d}",
                 "author": f"Member {i % 300}", "subject": " ".join(rng.choices(WORDS, k=6)),
                 "body": "\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(8)), "html": "",
                 "attachments": [], "posted_at": now - dt.timedelta(minutes=posts - i)} for i in chunk])
        session.execute(text("INSERT INTO archive_fts(rowid, subject, body) "
                             "SELECT id, subject, body FROM archive_posts"))
    return [1, posts // 2, posts]


def time_search(site: Site) -> list[float]:
    """Milliseconds for searches of a common word, two words, and a word that is nowhere, on the store itself."""
    from sqlalchemy import select

    from wgbot.archive import search
    from wgbot.store import Group

    sessions = site.sessions()
    out = []
    with sessions() as session:
        gids = list(session.scalars(select(Group.id)))
        for words in ("housing", "budget indicators", "meeting agenda report", "nowhereword"):
            start = time.perf_counter()
            search(session, words, gids)
            out.append((time.perf_counter() - start) * 1000)
    return out


def load(url: str, seconds: float, connections: int = 16) -> dict[str, float]:
    """Load `url` from a second process (benchmarks.webload) and return its figures."""
    import json

    run = subprocess.run([sys.executable, "-m", "benchmarks.webload", url, "--connections", str(connections),
                          "--seconds", str(seconds)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def bench_web(sink: Sink, groups: int, posts: int, seconds: float) -> None:
    """The pages under load against a static file of the same size, served by the same server in the same run."""
    static = "[paths]\ntemplates = \"custom\"\n"
    site = Site(sink, extra=static)
    try:
        ids = fill_web(site, groups, posts)
        site.start()
        wait_port(site.web_port)
        idle = site.peak_rss_mb()
        base = f"http://127.0.0.1:{site.web_port}"
        folder = site.dir / "custom" / "web" / "static"
        folder.mkdir(parents=True)
        pages = {"directory": "/", "archive-index": "/groups/g0/archive/", "month": "/groups/g0/archive/2026-10/",
                 "message": f"/groups/g0/archive/msg/{ids[1]}/", "search": "/search?q=budget+indicators"}
        print(f"web: {groups:,} groups, {posts:,} archived posts; load from a second process, 16 connections, "
              f"{seconds:g} s each")
        for name, path in pages.items():
            import urllib.request

            with urllib.request.urlopen(base + path, timeout=60) as page:
                size = len(page.read())
            (folder / f"same-{name}.html").write_bytes(b"x" * size)
            dynamic = load(base + path, seconds)
            same = load(f"{base}/static/same-{name}.html", seconds)
            print(f"web-{name}: {size / 1024:,.0f} KiB | wgbot {dynamic['rps']:,.0f} req/s, p99 "
                  f"{dynamic['p99_ms']:.0f} ms | static file of the same size {same['rps']:,.0f} req/s, p99 "
                  f"{same['p99_ms']:.0f} ms | wgbot/static {same['rps'] / max(dynamic['rps'], 0.01):.1f}x | "
                  f"errors {int(dynamic['errors'])}+{int(same['errors'])} | peak RSS so far "
                  f"{site.peak_rss_mb():.0f} MB")
        searches = time_search(site)
        print(f"web-search-{posts}: " + ", ".join(f"{ms:.1f} ms" for ms in searches)
              + " (a common word, two words, three words, a word found nowhere) | target < 100 ms")
        print(f"web-rss: peak RSS of wgbot run {site.peak_rss_mb():.0f} MB ({idle:.0f} MB before the load) | "
              "target < 100 MB")
    finally:
        site.stop()


def bench_countries(sink: Sink) -> None:
    """Memory after resolving country names in every language the table knows: one `join` per name (the
    `Country:` line of issue 15's `Österreich` raised the bot from 63 to 153 MB for good)."""
    from wgbot.countries import _endonyms

    names = list(_endonyms())
    site = Site(sink)
    try:
        site.wgbot("group", "create", "Bench Group", "--contact", "chair@example.org")
        site.start()
        before = site.rss_mb()
        messages = [(f"c{i}@people.example", "wgbot@lists.example.org",
                     (f"From: c{i}@people.example\r\nTo: wgbot@lists.example.org\r\nSubject: join bench-group\r\n"
                      f"Message-ID: <c{i}.{time.monotonic_ns()}@people.example>\r\n"
                      f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
                      f"Organisation: City {i}\r\nCountry: {name}\r\n").encode()) for i, name in enumerate(names)]
        start = sink.count()
        send(site.port, messages)
        sink.wait_for(start + 2 * len(messages))
        print(f"countries-{len(names)}: wgbot RSS {before:.0f} MB before, {site.rss_mb():.0f} MB after resolving "
              f"{len(names)} country names in their own languages, peak RSS {site.peak_rss_mb():.0f} MB "
              f"| target < 100 MB")
    finally:
        site.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=["all", "fanout", "commands", "import", "digest", "intake",
                                          "intake-postfix", "startup", "web", "countries"])
    parser.add_argument("--sizes", default="1000,10000", help="member counts for fan-out and import")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run")
    parser.add_argument("--connections", type=int, default=8, help="[outbound] connections for the bot")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = args.runs
    commands, digest_members, digest_posts, intake = 1000, 1000, 200, 2000
    web_groups, web_posts, web_seconds = 1000, 100_000, 10.0
    if args.smoke:
        sizes, runs, commands, digest_members, digest_posts, intake = [100], 1, 50, 20, 10, 50
        web_groups, web_posts, web_seconds = 20, 500, 1.0
    Site.connections = args.connections
    sink = Sink()
    jobs: dict[str, Callable[[], None]] = {
        "fanout": lambda: bench_fanout(sink, sizes, runs),
        "commands": lambda: bench_commands(sink, commands, runs),
        "import": lambda: bench_import(sink, sizes, runs),
        "digest": lambda: bench_digest(sink, digest_members, digest_posts, runs),
        "intake": lambda: bench_intake(sink, intake, runs),
        "intake-postfix": lambda: bench_intake_postfix(sink, intake, runs),
        "startup": lambda: bench_startup(sink, runs, args.smoke),
        "web": lambda: bench_web(sink, web_groups, web_posts, web_seconds),
        "countries": lambda: bench_countries(sink),
    }
    try:
        for name, job in jobs.items():
            if args.which in (name, "all"):
                job()
    finally:
        sink.close()


if __name__ == "__main__":
    main()
