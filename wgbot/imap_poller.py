"""imap_poller: fetch mail from an IMAP mailbox (imapclient) into the inbox, then move it out of the way.

Fetching uses BODY.PEEK[] so nothing is marked seen before it is stored; only after the commit is a message
moved to the processed folder (or flagged \\Seen where MOVE is missing), or to the failed folder when it
could not be processed. IDLE when offered (re-issued every 29 minutes, RFC 2177), else polling. A lost
connection reconnects with backoff and says so in the log (imapclient #234, #349).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from wgbot import inbox
from wgbot.config import Config, secret
from wgbot.handoff import envelope_sender, header_recipients
from wgbot.route import route
from wgbot.store import ImapCursor, InboundMessage, InboundStatus

log = logging.getLogger("wgbot.imap")

IDLE_RENEW_SECONDS = 29 * 60
FETCH_BATCH = 100


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Poller:
    """Runs in its own thread until `stop` is set."""

    def __init__(self, cfg: Config, sessions: sessionmaker[Session], stop: threading.Event,
                 on_processed: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self.imap = cfg.inbound.imap
        self.sessions = sessions
        self.stop = stop
        self.on_processed = on_processed
        self.client: Any = None

    # -- connection -------------------------------------------------------------------------------------------

    def connect(self) -> Any:
        from imapclient import IMAPClient

        context = ssl.create_default_context() if self.imap.ssl else None
        client = IMAPClient(self.imap.host, port=self.imap.port, ssl=self.imap.ssl, ssl_context=context,
                            timeout=60)
        client.login(self.imap.username, secret(self.imap.password, self.imap.password_env))
        for folder in (self.imap.processed_folder, self.imap.failed_folder):
            if not client.folder_exists(folder):
                client.create_folder(folder)
        return client

    def run(self) -> None:
        """Connect, drain, wait (IDLE or poll), repeat; reconnect with backoff on any connection error."""
        delay = 1.0
        while not self.stop.is_set():
            try:
                self.client = self.connect()
                log.info("IMAP connected to %s:%s as %s", self.imap.host, self.imap.port, self.imap.username)
                delay = 1.0
                self.session_loop()
            except Exception as exc:  # imapclient raises socket, ssl and IMAP errors alike
                self._record_error(f"{type(exc).__name__}: {exc}")
                if self.stop.is_set():
                    break
                log.warning("IMAP connection to %s:%s lost (%s: %s); reconnecting in %.0f s", self.imap.host,
                            self.imap.port, type(exc).__name__, exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, 60.0)
            finally:
                self._logout()

    def _logout(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:
                try:
                    self.client.shutdown()
                except Exception:
                    pass
            self.client = None

    def session_loop(self) -> None:
        client = self.client
        info = client.select_folder(self.imap.folder)
        uidvalidity = int(info.get(b"UIDVALIDITY", 0))
        self._check_uidvalidity(uidvalidity)
        can_move = client.has_capability("MOVE")
        can_idle = client.has_capability("IDLE")
        while not self.stop.is_set():
            self.drain(can_move)
            if can_idle:
                self.idle()
            else:
                self.stop.wait(self.imap.poll_seconds)

    def idle(self) -> None:
        client = self.client
        client.idle()
        started = time.monotonic()
        try:
            while not self.stop.is_set() and time.monotonic() - started < IDLE_RENEW_SECONDS:
                responses = client.idle_check(timeout=1)
                for r in responses:
                    # After `* BYE` the server closes the socket, and idle_check then returns [] forever.
                    if isinstance(r, tuple) and r and r[0] == b"BYE":
                        text = b" ".join(x for x in r[1:] if isinstance(x, bytes)).decode("ascii", "replace")
                        raise ConnectionError(f"server said BYE: {text}")
                if any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    break
        except ConnectionError:
            raise
        else:
            client.idle_done()

    # -- the cursor -------------------------------------------------------------------------------------------

    def _check_uidvalidity(self, uidvalidity: int) -> None:
        with self.sessions.begin() as session:
            cursor = session.get(ImapCursor, self.imap.folder)
            if cursor is None:
                session.add(ImapCursor(folder=self.imap.folder, uidvalidity=uidvalidity, last_uid=0,
                                       last_poll_at=_now(), last_error=""))
            elif cursor.uidvalidity != uidvalidity:
                # UIDs mean nothing now; the hash dedupe keeps what was stored from being processed again.
                log.warning("IMAP UIDVALIDITY of %s changed from %d to %d; rescanning the folder",
                            self.imap.folder, cursor.uidvalidity, uidvalidity)
                cursor.uidvalidity = uidvalidity
                cursor.last_uid = 0

    def _record_error(self, text: str) -> None:
        try:
            with self.sessions.begin() as session:
                cursor = session.get(ImapCursor, self.imap.folder)
                if cursor is not None:
                    cursor.last_error = text[:500]
        except Exception:
            log.exception("could not record the IMAP error")

    # -- fetching ---------------------------------------------------------------------------------------------

    def drain(self, can_move: bool) -> int:
        """Store, process and move every message waiting in the folder; returns how many were handled.

        Everything still in the folder is unprocessed (processed mail is moved out), so after a crash between
        fetch and move the message is fetched again: the hash dedupe finds it and it is only moved."""
        client = self.client
        handled = 0
        uids = sorted(client.search(["ALL"] if can_move else ["UNSEEN"]))
        for start in range(0, len(uids), FETCH_BATCH):
            if self.stop.is_set():
                break
            batch = uids[start:start + FETCH_BATCH]
            fetched = client.fetch(batch, ["BODY.PEEK[]"])
            for uid in batch:
                data = fetched.get(uid, {})
                raw = data.get(b"BODY[]")
                if raw is None:
                    continue
                self._handle(uid, bytes(raw), can_move)
                handled += 1
        with self.sessions.begin() as session:
            cursor = session.get(ImapCursor, self.imap.folder)
            if cursor is not None:
                cursor.last_poll_at = _now()
                cursor.last_error = ""
                if uids:
                    cursor.last_uid = max(cursor.last_uid, uids[-1])
        return handled

    def _handle(self, uid: int, raw: bytes, can_move: bool) -> None:
        recipients = header_recipients(raw) or [self.cfg.network.bot_address]
        with self.sessions.begin() as session:
            exists = inbox.group_exists(session)
            ours = [r for r in recipients if route(r, self.cfg, exists) is not None]
            cap = self.cfg.limits.max_rcpts
            if len(ours) > cap:   # as the listener's 452 beyond max_rcpts: one message causes at most this much
                log.warning("IMAP message %d names %d of our addresses; only the first %d are taken", uid, len(ours),
                            cap)
                ours = ours[:cap]
            ids = inbox.accept(session, raw, ours or [self.cfg.network.bot_address], envelope_sender(raw),
                               _now(), source="imap")
        inbox.process_pending(self.sessions, self.cfg, _now, ids=ids)
        self.on_processed()
        with self.sessions() as session:
            statuses = {session.get(InboundMessage, i).status for i in ids}  # type: ignore[union-attr]
        failed = InboundStatus.QUARANTINED.value in statuses
        target = self.imap.failed_folder if failed else self.imap.processed_folder
        if can_move:
            self.client.move([uid], target)
        else:
            self.client.add_flags([uid], [b"\\Seen"])
        log.debug("IMAP uid %d stored as inbound %s, moved to %s", uid, ids, target)


def run_poller(cfg: Config, sessions: sessionmaker[Session], stop: threading.Event,
               on_processed: Callable[[], None] = lambda: None) -> threading.Thread:
    """Start the poller thread; `on_processed` is called after each message is processed (to wake delivery)."""
    thread = threading.Thread(target=Poller(cfg, sessions, stop, on_processed).run, name="imap-poller", daemon=True)
    thread.start()
    return thread

