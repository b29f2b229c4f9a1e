"""handoff: `wgbot process` gives each message to the running `wgbot run` through its own listener.

An MTA pipe starts one `wgbot process` per message. Starting the whole bot for each (SQLAlchemy, the models,
mail-parser, Jinja2) costs half a second before any work; the running bot has all of that loaded. So when
`wgbot run` answers on `[inbound.smtp]` (its banner says wgbot: never another MTA, which could loop the
message back to us), the message goes to it over SMTP or LMTP, exactly as an MTA would deliver it: routed at
RCPT, stored and committed before the 250, which names the stored rows ("queued as 12"). The command then
waits, on a plain database connection, until the bot has processed those rows and tried the replies, and
prints the same lines as processing in-process. Anyone can write a banner, so before the message the listener
proves it is this installation's bot: it answers `XWGBOT nonce` with an HMAC of the nonce keyed with the secret
kept in the database (`store.secret_key`), which only the bot's user can read. Only the standard library (and
psycopg for PostgreSQL) is imported here. Without a running bot, or with `--local`, the command processes the
message itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import smtplib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wgbot.config import Config

PROOF_COMMAND = "XWGBOT"
CONNECT_TIMEOUT = 2.0
WAIT_SECONDS = 60.0       # how long to wait for the bot to process and try the replies before saying so
_QUEUED_AS = re.compile(r"queued as ([0-9,]+)")


def _split_head(raw: bytes) -> bytes:
    m = re.search(rb"\r?\n\r?\n", raw)
    return raw if m is None else raw[: m.start() + 1]


def header_recipients(raw: bytes) -> list[str]:
    """Recipients of a message without an envelope (IMAP, a file): Delivered-To / X-Original-To, then To, Cc."""
    from email.parser import BytesHeaderParser
    from email.utils import getaddresses

    msg = BytesHeaderParser().parsebytes(_split_head(raw) + b"\r\n")
    for names in (("delivered-to", "x-original-to"), ("to", "cc")):
        values = [str(v) for n in names for v in (msg.get_all(n) or [])]
        if values:
            found = [a for _, a in getaddresses(values) if "@" in a]
            if found:
                return list(dict.fromkeys(found))
    return []


def envelope_sender(raw: bytes) -> str | None:
    """The envelope sender of a message without an envelope: its Return-Path, else None (From is used)."""
    m = re.search(rb"(?im)^return-path:[ \t]*<([^>\r\n]*)>", _split_head(raw))
    return m.group(1).decode("ascii", "replace") if m else None


def from_address(raw: bytes) -> str:
    from email.parser import BytesHeaderParser
    from email.utils import getaddresses

    msg = BytesHeaderParser().parsebytes(_split_head(raw) + b"\r\n")
    found = [a for _, a in getaddresses([str(v) for v in msg.get_all("from") or []]) if "@" in a]
    return found[0] if len(found) == 1 else ""


def proof(secret: bytes, nonce: str) -> str:
    """What the bot's listener answers to `XWGBOT nonce`: an HMAC that only a holder of the secret can give."""
    return hmac.new(secret, b"wgbot handoff\0" + nonce.encode("ascii", "replace"), hashlib.sha256).hexdigest()


def handoff_secret(cfg: Config) -> bytes | None:
    """The installation's secret, read with a plain connection; None when there is none yet or no store."""
    try:
        conn, mark = _connect(cfg)
    except Exception:
        return None
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT value FROM settings WHERE key = {mark}", ("hmac_secret",))
        row = cur.fetchone()
        return bytes.fromhex(str(row[0])) if row else None
    except Exception:
        return None
    finally:
        conn.close()


@dataclass
class Submitted:
    ids: list[int]
    refused: dict[str, str]      # recipient → the listener's reply (not ours: 550 5.1.1)
    error: str = ""              # the whole message was not taken (our fault at the bot: 451, try again later)


class Listener:
    """A connection to the running bot's listener."""

    def __init__(self, cfg: Config, secret: bytes) -> None:
        smtp = cfg.inbound.smtp
        host = "127.0.0.1" if smtp.host in ("", "0.0.0.0", "::") else smtp.host
        self.lmtp = smtp.protocol == "lmtp"
        self.conn: smtplib.SMTP = smtplib.LMTP() if self.lmtp else smtplib.SMTP(timeout=CONNECT_TIMEOUT)
        self.conn.timeout = CONNECT_TIMEOUT
        code, banner = self.conn.connect(host, smtp.port)
        if code != 220 or b"wgbot" not in banner or cfg.network.list_domain.encode() not in banner:
            self.close()
            raise OSError(f"{host}:{smtp.port} is not a wgbot listener ({code} {banner[:60]!r})")
        self.conn.ehlo_or_helo_if_needed()
        nonce = secrets.token_hex(16)
        code, answer = self.conn.docmd(PROOF_COMMAND, nonce)
        if code != 250 or not hmac.compare_digest(answer.strip(), proof(secret, nonce).encode()):
            self.close()
            raise OSError(f"{host}:{smtp.port} says it is wgbot but cannot prove it ({code})")
        self.conn.sock.settimeout(300)  # type: ignore[union-attr]
        self.where = f"{host}:{smtp.port}"

    def submit(self, raw: bytes, envelope_from: str, recipients: Iterable[str]) -> Submitted:
        result = Submitted([], {})
        rcpts = list(dict.fromkeys(recipients))
        for batch in ([[r] for r in rcpts] if self.lmtp else [rcpts]):   # one LMTP reply per transaction
            code, reply = self.conn.mail(envelope_from)
            if code != 250:
                self.conn.rset()
                return Submitted(result.ids, result.refused, f"{code} {reply.decode(errors='replace')}")
            taken = []
            for rcpt in batch:
                code, reply = self.conn.rcpt(rcpt)
                if code in (250, 251):
                    taken.append(rcpt)
                else:
                    result.refused[rcpt] = f"{code} {reply.decode(errors='replace')}"
            if not taken:
                self.conn.rset()
                continue
            code, reply = self.conn.data(raw)
            text = reply.decode(errors="replace")
            if code != 250:
                return Submitted(result.ids, result.refused, f"{code} {text}")
            m = _QUEUED_AS.search(text)
            if m:
                result.ids += [int(i) for i in m.group(1).split(",") if i]
        return result

    def close(self) -> None:
        try:
            self.conn.quit()
        except (smtplib.SMTPException, OSError):
            self.conn.close()


def find_listener(cfg: Config) -> Listener | None:
    """The running bot's listener, or None when no wgbot answers there."""
    if not cfg.inbound.smtp.enabled:
        return None
    secret = handoff_secret(cfg)
    if secret is None:      # no bot ever ran on this store: nothing could prove itself
        return None
    try:
        return Listener(cfg, secret)
    except (OSError, smtplib.SMTPException):
        return None


def _connect(cfg: Config) -> tuple[Any, str]:
    """A plain DB-API connection to the store (sqlite3 or psycopg) and its parameter mark."""
    url = cfg.database.url
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url[len("sqlite:///"):].split("?")[0]
        if not path.startswith("/"):
            path = str(cfg.resolve(path))
        if not Path(path).exists():    # never create an empty store by looking into it
            raise OSError(f"no database at {path}")
        return sqlite3.connect(path, timeout=10), "?"
    if url.startswith("postgresql"):
        import psycopg

        scheme, _, rest = url.partition("://")
        return psycopg.connect(f"{scheme.split('+')[0]}://{rest}", autocommit=True), "%s"
    raise OSError(f"cannot read {url.split(':')[0]} databases without SQLAlchemy")


def wait_for(cfg: Config, ids: list[int], deliver: bool) -> tuple[dict[int, tuple[str, str]], dict[str, int]]:
    """Wait until the bot has processed `ids` (and, with `deliver`, tried every reply to them once); returns
    {id: (status, outcome)} and delivery counts {sent, deferred, failed, waiting}."""
    conn, mark = _connect(cfg)
    marks = ",".join([mark] * len(ids))
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        pause = 0.002
        while True:
            cur = conn.cursor()
            cur.execute(f"SELECT id, status, outcome FROM inbound_messages WHERE id IN ({marks})", ids)
            rows = {int(r[0]): (str(r[1]), str(r[2])) for r in cur.fetchall()}
            done = all(status != "pending" for status, _ in rows.values()) and len(rows) == len(ids)
            counts = {"sent": 0, "deferred": 0, "failed": 0, "waiting": 0}
            if done and deliver:
                cur.execute("SELECT o.status, o.attempts FROM outbox o JOIN outgoing_messages m ON m.id = o.message_fk "
                            f"WHERE m.inbound_id IN ({marks})", ids)
                for status, attempts in cur.fetchall():
                    key = {"sent": "sent", "failed": "failed"}.get(status, "deferred" if attempts else "waiting")
                    counts[key] += 1
            cur.close()
            if (done and not counts["waiting"]) or time.monotonic() > deadline:
                return rows, counts
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    finally:
        conn.close()


def process_via(listener: Listener, cfg: Config, inputs: list[tuple[str, bytes]], sender: str | None,
                to: list[str] | None, deliver: bool, err: Any, out: Any) -> int:
    """`wgbot process` through the running bot: 0 when every message was accepted, 1 when one was not ours
    or empty, 75 (EX_TEMPFAIL, the MTA retries) when the bot could not store one."""
    failures = 0
    tempfail = False
    try:
        for name, raw in inputs:
            if not raw.strip():
                print(f"{name}: empty message, nothing to do", file=err)
                failures += 1
                continue
            recipients = to or header_recipients(raw)
            envelope = sender if sender is not None else envelope_sender(raw)
            if envelope is None:
                envelope = from_address(raw)   # unknown: the From address stands in (never <>, a bounce)
            if not recipients:
                print(f"{name}: no recipient is ours; the message was not accepted", file=err)
                failures += 1
                continue
            result = listener.submit(raw, envelope, recipients)
            for other, reply in sorted(result.refused.items()):
                print(f"{name}: {other} is not one of our addresses ({reply}); skipped", file=err)
            if result.error:
                print(f"{name}: the running wgbot at {listener.where} could not take it now ({result.error}); "
                      "try again later", file=err)
                tempfail = True
                continue
            if not result.ids:
                print(f"{name}: no recipient is ours; the message was not accepted", file=err)
                failures += 1
                continue
            try:
                rows, counts = wait_for(cfg, result.ids, deliver)
            except Exception as exc:   # accepted and durable; only the wait for the outcome failed
                print(f"{name}: accepted by the running wgbot at {listener.where} ({type(exc).__name__}: {exc})",
                      file=out)
                continue
            for row_id in result.ids:
                status, outcome = rows.get(row_id, ("pending", "not processed yet"))
                print(f"{name}: inbound {row_id}: {status}: {outcome}", file=out)
            if any(counts.values()):
                print(f"delivery: {counts['sent']} sent, {counts['deferred']} deferred, {counts['failed']} failed"
                      + (f", {counts['waiting']} not tried yet" if counts["waiting"] else ""), file=out)
    finally:
        listener.close()
    if tempfail:
        return 75
    return 1 if failures else 0
