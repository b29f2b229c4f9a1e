"""smtp_server: the aiosmtpd handler for SMTP and LMTP. It routes at RCPT, stores the raw message at DATA,
and answers 250 only after the commit; a fault of ours answers 451 4.3.0, never a 5xx.

It decides nothing about a message's meaning: processing happens afterwards, from the stored row.
LMTP answers one line per recipient after DATA (RFC 2033 §4.2; aiosmtpd issue #517, realparts.md §3.5).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import queue
import re
import ssl
import threading
from collections.abc import Callable
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, syntax
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.orm import Session, sessionmaker

from wgbot import inbox
from wgbot.config import Config
from wgbot.errors import SMTP_OK, SMTP_OUR_FAULT, SMTP_TOO_BIG, SMTP_TOO_MANY_RECIPIENTS, SMTP_UNKNOWN_RECIPIENT
from wgbot.handoff import PROOF_COMMAND, proof
from wgbot.route import route
from wgbot.store import secret_key

log = logging.getLogger("wgbot.smtp")


class GroupCommit:
    """One writer thread stores every message waiting in one transaction and one fsync, then releases all their
    250s: the fsync a commit needs (RFC 5321 §6.1) is shared by concurrent sessions instead of paid by each."""

    MAX_BATCH = 64

    def __init__(self, sessions: sessionmaker[Session], source: str) -> None:
        self.sessions = sessions
        self.source = source
        self.queue: queue.Queue[tuple[bytes, list[str], str, concurrent.futures.Future[list[int]]]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self.thread.start()

    def submit(self, raw: bytes, rcpts: list[str], mail_from: str) -> concurrent.futures.Future[list[int]]:
        future: concurrent.futures.Future[list[int]] = concurrent.futures.Future()
        self.queue.put((raw, rcpts, mail_from, future))
        return future

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                results = []
                # A Core connection, not a Session: this runs for every message and a Session's setup cost more
                # than the INSERT.
                with self.sessions.kw["bind"].begin() as conn:
                    now = dt.datetime.now(dt.UTC)
                    for raw, rcpts, mail_from, _ in batch:
                        results.append(inbox.accept(conn, raw, rcpts, mail_from, now, source=self.source))
            except BaseException as exc:  # nothing of the batch is stored: every sender gets 451 and retries
                for *_, future in batch:
                    future.set_exception(exc)
                continue
            for (*_, future), ids in zip(batch, results, strict=True):
                future.set_result(ids)


class Handler:
    """aiosmtpd handler: RCPT → route; DATA → accept and commit, then 250 (one line per LMTP recipient)."""

    def __init__(self, cfg: Config, sessions: sessionmaker[Session], lmtp: bool,
                 on_accepted: Callable[[list[int]], None] = lambda ids: None) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.lmtp = lmtp
        self.on_accepted = on_accepted
        self.writer = GroupCommit(sessions, "lmtp" if lmtp else "smtp")
        self._secret: bytes | None = None
        try:    # made now, so that `wgbot process` finds it while the bot runs
            self.handoff_secret()
        except Exception:
            log.warning("the hand-off secret could not be read yet; `wgbot process` works locally until it is")

    def _is_ours_without_store(self, address: str) -> bool | None:
        """The bot's own addresses (commands, confirmations, approvals) need no query: answered here, on the
        event loop. None when the answer depends on which groups exist."""

        def ask(_slug: str) -> bool:
            raise LookupError

        try:
            return route(address, self.cfg, ask) is not None
        except LookupError:
            return None

    def handoff_secret(self) -> bytes:
        """The installation's secret, read once (created on first use), for `XWGBOT` (see wgbot/handoff.py)."""
        if self._secret is None:
            with self.sessions.begin() as session:
                self._secret = secret_key(session)
        return self._secret

    def _is_ours(self, address: str) -> bool:
        with self.sessions() as session:
            return route(address, self.cfg, inbox.group_exists(session)) is not None

    async def handle_RCPT(self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        try:
            ours = self._is_ours_without_store(address)
            if ours is None:   # a group's address: whether the group exists is a question for the store
                ours = await asyncio.to_thread(self._is_ours, address)
        except Exception:
            log.exception("RCPT %s: store unavailable", address)
            return SMTP_OUR_FAULT
        if not ours:
            log.info("RCPT %s refused: not one of our addresses", address)
            return SMTP_UNKNOWN_RECIPIENT
        if len(envelope.rcpt_tos) >= self.cfg.limits.max_rcpts:
            # One message to hundreds of our addresses would be stored and processed once each: the client sends
            # the rest in another transaction (RFC 5321 §4.5.3.1.10; every MTA does on 452).
            log.info("RCPT %s deferred: %d recipients in this transaction already", address, len(envelope.rcpt_tos))
            return SMTP_TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        rcpts = list(envelope.rcpt_tos)
        try:
            # The commit (fsync) happens before we answer: RFC 5321 §6.1.
            ids = await asyncio.wrap_future(self.writer.submit(raw, rcpts, envelope.mail_from or ""))
        except Exception:
            log.exception("DATA from %s: could not store the message; answering 451", envelope.mail_from)
            return self._per_recipient(rcpts, SMTP_OUR_FAULT)
        self.on_accepted(ids)
        # "queued as" names the stored rows, as Postfix names its queue file; `wgbot process` reads it.
        return self._per_recipient(rcpts, f"{SMTP_OK} as {','.join(str(i) for i in dict.fromkeys(ids))}")

    def _per_recipient(self, rcpts: list[str], reply: str) -> str:
        if not self.lmtp or len(rcpts) <= 1:
            return reply
        return "\r\n".join(reply for _ in rcpts)


def _reply(status: str) -> str:
    """aiosmtpd answers an oversized message with a bare 552; we give the enhanced code of SPEC §6."""
    return SMTP_TOO_BIG if status.startswith("552 ") else status


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_NONCE = re.compile(r"[0-9a-f]{16,128}")
_PLAIN_PATH = re.compile(rf"\s*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)\Z", re.DOTALL)


class _Fast:
    """What both protocols share: our enhanced status codes, and a quick reading of plain `<local@domain>`
    paths (aiosmtpd parses every MAIL and RCPT with email's header parser, a third of its time a message);
    anything else (quoted local parts, `<>`, source routes) still goes the careful way."""

    local_part_limit: int
    line_length_limit: int
    event_handler: Handler

    def __init__(self, *args: Any, max_line: int = 1001, **kwargs: Any) -> None:
        # aiosmtpd answers a DATA line over 1,001 octets with 500 and drops the message. Real mail has such
        # lines (RFC 5322 §2.1.1 is broken every day); the size limit bounds them, and parsing decides.
        self.line_length_limit = max_line
        super().__init__(*args, **kwargs)

    @syntax(f"{PROOF_COMMAND} nonce")
    async def smtp_XWGBOT(self, arg: str) -> None:
        """`wgbot process` asks the listener to prove it is this installation's bot before it hands mail over."""
        if not _NONCE.fullmatch(arg.strip()):
            await self.push("501 5.5.4 Syntax: XWGBOT nonce (16 to 128 hex digits)")
            return
        try:
            secret = await asyncio.to_thread(self.event_handler.handoff_secret)
        except Exception:
            log.exception("XWGBOT: store unavailable")
            await self.push(SMTP_OUR_FAULT)
            return
        await self.push(f"250 {proof(secret, arg.strip())}")

    async def push(self, status: AnyStr) -> None:
        await super().push(_reply(status) if isinstance(status, str) else status)  # type: ignore[misc]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _PLAIN_PATH.match(arg)
        rest = m.group(2).lstrip(" \t") if m else ""
        if (m is None or rest.startswith("(")
                or (self.local_part_limit and len(m.group(1).rpartition("@")[0]) > self.local_part_limit)):
            return super()._getaddr(arg)  # type: ignore[misc,no-any-return]
        return m.group(1), rest


class WgbotSMTP(_Fast, SMTP):
    pass


class WgbotLMTP(_Fast, LMTP):
    pass


def tls_context(cfg: Config) -> ssl.SSLContext | None:
    smtp = cfg.inbound.smtp
    if not smtp.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cfg.resolve(smtp.tls_cert)), str(cfg.resolve(smtp.tls_key)))
    return context


def server_factory(cfg: Config, handler: Handler) -> Callable[[], SMTP]:
    """A protocol factory for loop.create_server, with the limits of mail-safety.md A20."""
    smtp = cfg.inbound.smtp
    kwargs: dict[str, Any] = {
        "data_size_limit": smtp.max_message_size,
        "enable_SMTPUTF8": False,
        "decode_data": False,
        "hostname": cfg.network.list_domain,
        "ident": "wgbot ESMTP",
        "timeout": 300,
        "command_call_limit": 1000,
        "tls_context": tls_context(cfg),
    }
    cls = WgbotLMTP if smtp.protocol == "lmtp" else WgbotSMTP

    def factory() -> SMTP:
        return cls(handler, max_line=smtp.max_message_size + 2, **kwargs)
    return factory
