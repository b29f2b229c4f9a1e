"""app: `wgbot run` — the listener, the IMAP poller, processing and delivery in one process (SPEC §8).

It wires the steps together and owns their lifecycle; it holds no logic of its own. SIGTERM and SIGINT stop
it cleanly: the listener stops accepting, the message in hand is finished, connections are closed, exit 0.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import signal
import threading
import time
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from wgbot import inbox, outbox, watchdog
from wgbot.config import Config
from wgbot.store import InboundMessage

log = logging.getLogger("wgbot.run")

DELIVERY_INTERVAL = 5.0    # seconds between delivery rounds when nothing new was queued
PROCESS_INTERVAL = 1.0     # seconds between looks at the inbox when no listener woke us
GRACE_SECONDS = 10.0       # how long a stop waits for a transaction in progress
LEADER_INTERVAL = 2.0      # seconds between tries to become the leader (and checks that we still are)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Runner:
    """Owns the asyncio loop of `wgbot run`."""

    def __init__(self, cfg: Config, sessions: sessionmaker[Session], role: str = "all") -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.role = role
        from wgbot.db import delivery_sessions

        self.delivery_sessions = delivery_sessions(cfg)
        self.stopping = threading.Event()
        self.fresh: collections.deque[int] = collections.deque()   # ids the listener just stored
        self.protocols: set[Any] = set()
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def request_stop(self) -> None:
        """Stop as SIGTERM would; callable from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def main(self, signals: bool = True) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        self._loop, self._stop = loop, stop
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        wake_processing = asyncio.Event()
        deliverer = outbox.Deliverer(self.delivery_sessions, self.cfg, _now, interval=DELIVERY_INTERVAL)

        def accepted(ids: list[int]) -> None:
            self.fresh.extend(ids)   # processed next, without a query for pending rows
            loop.call_soon_threadsafe(wake_processing.set)

        processed = deliverer.wake

        listen = self.role == "all" and self.cfg.inbound.smtp.enabled
        server = await self._start_listener(accepted) if listen else None
        web = None
        if self.cfg.web.enabled and self.role == "all":
            from wgbot import web as web_module

            web = await web_module.start(self.sessions, self.cfg)
        leader_task = asyncio.create_task(self._lead(processed), name="leadership")
        await asyncio.to_thread(deliverer.start)
        guard = self._watchdog()
        tasks = [asyncio.create_task(self._processing(wake_processing, deliverer), name="processing")]
        log.info("wgbot running (outbound: %s); SIGTERM or Ctrl-C stops it", self._outbound())
        self.ready.set()
        await stop.wait()
        log.info("stopping: no new connections; finishing the message in hand")
        if server is not None:
            server.close()
        if web is not None:
            web.close()
        self.stopping.set()
        wake_processing.set()
        await asyncio.wait([*tasks, leader_task, asyncio.create_task(asyncio.to_thread(deliverer.stop, GRACE_SECONDS))],
                           timeout=GRACE_SECONDS)
        for proto in list(self.protocols):
            transport = getattr(proto, "transport", None)
            if transport is not None:
                transport.close()
        if server is not None:
            await asyncio.wait_for(server.wait_closed(), timeout=GRACE_SECONDS)
        if web is not None:
            await web.wait_closed(GRACE_SECONDS)
        guard.stop()
        watchdog.install(None)
        log.info("stopped")
        return 0

    def _watchdog(self) -> watchdog.Watchdog:
        """The time limit on one message's processing: past it the process restarts in place, and the fresh one
        notes the reason on the row (see wgbot/watchdog.py); the row's attempt count does the rest."""
        limit = self.cfg.limits.process_seconds
        note = watchdog.take_note()
        if note is not None:
            row_id, reason = note
            with self.delivery_sessions.begin() as session:
                session.execute(update(InboundMessage).where(InboundMessage.id == row_id).values(error=reason))

        def expired(row_id: int, seconds: float) -> None:
            reason = f"processing took over {limit:g} s ([limits] process_seconds); wgbot run restarted to stop it"
            log.critical("inbound %d: %s", row_id, reason)
            watchdog.restart_in_place(row_id, reason)

        guard = watchdog.Watchdog(limit, expired).start()
        watchdog.install(guard)
        return guard

    def _outbound(self) -> str:
        out = self.cfg.outbound
        if out.transport == "maildir":
            return f"Maildir {self.cfg.resolve(out.maildir)}"
        return f"SMTP {out.host}:{out.port}"

    async def _start_listener(self, accepted: Any) -> asyncio.AbstractServer:
        from wgbot.smtp_server import Handler, server_factory

        smtp = self.cfg.inbound.smtp
        handler = Handler(self.cfg, self.sessions, smtp.protocol == "lmtp", accepted)
        make = server_factory(self.cfg, handler)

        def factory() -> Any:
            proto = make()
            self.protocols.add(proto)
            original = proto.connection_lost

            def lost(exc: Exception | None) -> None:
                self.protocols.discard(proto)
                original(exc)
            proto.connection_lost = lost  # type: ignore[method-assign,assignment]
            return proto

        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, host=smtp.host, port=smtp.port, reuse_address=True)
        tls = " with STARTTLS" if smtp.tls_cert else ""
        log.info("listening on %s:%d (%s%s, max %d bytes)", smtp.host, smtp.port, smtp.protocol.upper(), tls,
                 smtp.max_message_size)
        return server

    async def _lead(self, processed: Any) -> None:
        """Try to become the leader; while leading, run the IMAP poller and the scheduler."""
        from wgbot.leader import Leadership
        from wgbot.schedule import start_scheduler

        leadership = Leadership(self.sessions.kw["bind"])
        scheduler: Any = None
        poller: Any = None
        try:
            while not self.stopping.is_set():
                leading = await asyncio.to_thread(leadership.try_acquire)
                if leading and scheduler is None:
                    log.info("became the leader: running the scheduler%s",
                             " and the IMAP poller" if self.cfg.inbound.imap.enabled else "")
                    scheduler = start_scheduler(self.sessions, self.cfg, processed)
                    if self.cfg.inbound.imap.enabled:
                        from wgbot.imap_poller import run_poller

                        poller = run_poller(self.cfg, self.sessions, self.stopping, processed)
                elif not leading and scheduler is not None:
                    log.warning("no longer the leader: stopping the scheduler")
                    scheduler.shutdown(wait=False)
                    scheduler = None
                for _ in range(int(LEADER_INTERVAL * 10)):
                    if self.stopping.is_set():
                        break
                    await asyncio.sleep(0.1)
        finally:
            if scheduler is not None:
                await asyncio.to_thread(scheduler.shutdown, True)
            if poller is not None:
                await asyncio.to_thread(poller.join, GRACE_SECONDS)
            await asyncio.to_thread(leadership.release)

    async def _processing(self, wake: asyncio.Event, deliverer: outbox.Deliverer) -> None:
        """Process what the listener just stored as soon as it says so; every PROCESS_INTERVAL, and when woken
        without ids, look for any pending row (IMAP, a restart after a crash, a retried quarantine)."""
        last_scan = 0.0

        def wake_deliverer(outcome: inbox.Outcome) -> None:
            if outcome.mail:
                deliverer.wake()

        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(wake.wait(), timeout=PROCESS_INTERVAL)
            except TimeoutError:
                pass
            wake.clear()
            if self.stopping.is_set():
                break
            ids = [self.fresh.popleft() for _ in range(len(self.fresh))]
            scan = not ids or time.monotonic() - last_scan >= PROCESS_INTERVAL
            try:
                # The raw message is already durable (fsync'd before the 250); a processing commit lost to a power
                # cut only means the row is processed again, so it needs no fsync of its own.
                if ids:
                    await asyncio.to_thread(inbox.process_pending, self.delivery_sessions, self.cfg, _now, ids,
                                            self.stopping.is_set, wake_deliverer)
                if scan:
                    last_scan = time.monotonic()
                    await asyncio.to_thread(inbox.process_pending, self.delivery_sessions, self.cfg, _now, None,
                                            self.stopping.is_set, wake_deliverer)
            except Exception:
                log.exception("processing round failed; retrying in %.0f s", PROCESS_INTERVAL)


def run(cfg: Config, sessions: sessionmaker[Session], role: str = "all") -> int:
    return asyncio.run(Runner(cfg, sessions, role).main())
