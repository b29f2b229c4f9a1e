"""outbox: queue outgoing mail in the caller's transaction, and deliver what is due (SMTP or Maildir).

Enqueueing never touches the network. Delivery commits after every message, so a crash between the relay's
250 and our commit resends at most that one message, with the same bytes and Message-ID. 4xx replies and
connection failures are retried with exponential backoff until `give_up_days`; 5xx is permanent.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import smtplib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from wgbot.config import Config
from wgbot.parse import Message
from wgbot.render import POLICY, Composed, compose
from wgbot.store import OutboxEntry, OutboxStatus, OutgoingMessage, ReplyCount, address_key, prepared
from wgbot.transports import Transport, make_transport

log = logging.getLogger("wgbot.outbox")


def mail(session: Session, cfg: Config, now: dt.datetime, template: str, context: dict[str, Any], to: str, *,
         per_day: int | None = None, kind: str = "notice", inbound_id: int | None = None, envelope_from: str = "",
         sender: str | Address | None = None, reply_to: str | None = None, parent: Message | None = None,
         auto_submitted: str = "auto-generated", extra_headers: dict[str, str] | None = None,
         finish: Callable[[bytes], bytes] | None = None) -> int | None:
    """The one way to queue a message written from a template (`Context.mail` calls it with the command's
    session): composed for `to` alone and queued in the caller's transaction. With `per_day`, the mail counts
    against `to`'s daily allowance of automatic mail and is not queued past it (RFC 3834 §2); `finish` is a
    last step on the composed bytes (a calendar beside the text: wgbot.ical.with_calendar). The outgoing
    message's id, or None when the allowance stopped it."""
    if per_day is not None and not allow_reply(session, to, now, per_day):
        return None
    msg = compose(cfg, template, context, to=[to], sender=sender, reply_to=reply_to, parent=parent,
                  auto_submitted=auto_submitted, now=now, extra_headers=extra_headers)
    raw = msg.raw if finish is None else finish(msg.raw)
    return enqueue_raw(session, raw, str(msg["Message-ID"]), [to], envelope_from or cfg.network.bot_address, now,
                       kind, inbound_id)


def enqueue(session: Session, msg: EmailMessage | Composed, recipients: Iterable[str], envelope_from: str,
            now: dt.datetime, kind: str = "reply", inbound_id: int | None = None) -> int:
    """Queue `msg` for each recipient, in the caller's transaction; returns the outgoing message's id."""
    return enqueue_raw(session, msg.as_bytes(policy=POLICY), str(msg["Message-ID"]), recipients, envelope_from,
                       now, kind, inbound_id)


_MESSAGES: Any = OutgoingMessage.__table__
_ENTRIES: Any = OutboxEntry.__table__


def _insert_message(_insert: Any) -> Any:
    return insert(_MESSAGES)


def _count_reply(dialect_insert: Any) -> Any:
    table: Any = ReplyCount.__table__
    stmt = dialect_insert(table).values(address_key=bindparam("key"), day=bindparam("day"), count=1)
    return stmt.on_conflict_do_update(index_elements=[table.c.address_key, table.c.day],
                                      set_={"count": table.c.count + 1}).returning(table.c.count)


_INSERT_ENTRIES = insert(_ENTRIES)


def enqueue_raw(session: Session, raw: bytes, message_id: str, recipients: Iterable[str], envelope_from: str,
                now: dt.datetime, kind: str, inbound_id: int | None = None) -> int:
    """Queue bytes (composed, or forwarded to a group's owners) in the caller's transaction. Core inserts:
    the ORM's unit of work cost more than the rest of queueing a reply."""
    result = session.execute(prepared(session, _insert_message), {
        "message_id": message_id, "kind": kind, "raw": raw, "created_at": now, "inbound_id": inbound_id})
    out_id = int(result.inserted_primary_key[0])  # type: ignore[attr-defined]
    note_queued(session)
    session.execute(_INSERT_ENTRIES, [
        {"message_fk": out_id, "recipient": r, "envelope_from": envelope_from, "status": OutboxStatus.QUEUED.value,
         "attempts": 0, "next_attempt_at": now, "created_at": now, "last_error": "", "headers": "",
         "lease_owner": ""} for r in recipients])
    return out_id


def note_queued(session: Session) -> None:
    """Remember that this transaction queued mail: `wgbot run` wakes a deliverer only then."""
    session.info["queued_mail"] = True


def mailbox_key(address: str) -> str:
    """The mailbox behind an address: sub-address (RFC 5233 `+detail`) dropped, case folded, so that
    victim+a@ and Victim+b@ count as one person."""
    local, at, domain = address_key(address).strip("<>").rpartition("@")
    if not at:
        return domain
    return f"{local.partition('+')[0] or local}@{domain}"


def allow_reply(session: Session, address: str, now: dt.datetime, per_day: int) -> bool:
    """Count one automatic mail to `address`'s mailbox today; False once `per_day` is reached (RFC 3834 §2).
    One upsert."""
    count = session.execute(prepared(session, _count_reply),
                            {"key": mailbox_key(address), "day": now.astimezone(dt.UTC).date()}).scalar_one()
    if count > per_day:
        log.warning("rate limit: not replying to %s (already %d automatic mails today, limit %d)",
                    address, count - 1, per_day)
        return False
    return True


def allow_caused(session: Session, sender: str, now: dt.datetime, per_day: int) -> bool:
    """Count one mail that `sender`'s mailbox makes us send to others (a message forwarded to a group's
    contacts); False once `per_day` is reached: a stranger's flood reaches nobody beyond that."""
    return allow_reply(session, "caused-by:" + mailbox_key(sender), now, per_day)


@dataclass
class DeliveryReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed"


def backoff(cfg: Config, attempts: int) -> dt.timedelta:
    """The wait before attempt number `attempts + 1`: doubling from retry_base_seconds, capped."""
    seconds = cfg.outbound.retry_base_seconds * (2 ** max(0, attempts - 1))
    return dt.timedelta(seconds=min(seconds, cfg.outbound.retry_max_seconds))


def _classify(exc: Exception) -> tuple[bool, str]:
    """(permanent?, text) for a delivery error."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return code >= 500, f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
    if isinstance(exc, smtplib.SMTPResponseException):
        err = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return exc.smtp_code >= 500, f"{exc.smtp_code} {err}"
    return False, f"{type(exc).__name__}: {exc}"


_HOST = socket.gethostname()[:60]


def _owner() -> str:
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_leases(sessions: sessionmaker[Session], now: dt.datetime) -> int:
    """Free rows leased by a deliverer on this host whose process is gone (a crash or SIGKILL), so a restart
    resumes at once instead of waiting for the lease to run out. Leases of other hosts simply expire."""
    with sessions.begin() as session:
        owners = session.scalars(select(OutboxEntry.lease_owner).where(
            OutboxEntry.status == OutboxStatus.QUEUED.value, OutboxEntry.lease_until > now).distinct()).all()
        dead = []
        for owner in owners:
            host, _, rest = owner.partition(":")
            pid = rest.partition(":")[0]
            if host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                dead.append(owner)
        if not dead:
            return 0
        result = session.execute(update(OutboxEntry).where(OutboxEntry.lease_owner.in_(dead),
                                                           OutboxEntry.status == OutboxStatus.QUEUED.value)
                                 .values(lease_until=None))
        count = int(getattr(result, "rowcount", 0) or 0)
    log.warning("released %d outbox rows leased by %d dead deliverer(s); one of them may be sent twice",
                count, len(dead))
    return count


def _claim(sessions: sessionmaker[Session], cfg: Config, now: dt.datetime,
           only: list[int] | None) -> list[Any]:
    """Claim up to batch_size due rows for this deliverer and return them, in one UPDATE … RETURNING (Core, and
    prepared once: a claim runs for every wake of a deliverer, and building it cost more than the send)."""
    engine = sessions.kw["bind"]
    lease = dt.timedelta(seconds=cfg.outbound.lease_seconds)
    params = {"b_now": now, "b_owner": _owner(), "b_until": now + lease, "b_limit": cfg.outbound.batch_size}
    with engine.begin() as conn:
        if only is None:
            rows = conn.execute(prepared(conn, _claim_due), params).all()
        else:
            rows = conn.execute(_claim_statement(only), params).all()
    return sorted(rows, key=lambda row: row.id)


def _claim_due(_insert: Any) -> Any:
    return _claim_statement(None)


def _claim_statement(only: list[int] | None) -> Any:
    t = _ENTRIES
    free = or_(t.c.lease_until.is_(None), t.c.lease_until < bindparam("b_now"))
    due = (select(t.c.id).where(t.c.status == OutboxStatus.QUEUED.value, t.c.next_attempt_at <= bindparam("b_now"),
                                free)
           .order_by(t.c.id).limit(bindparam("b_limit")))
    if only is not None:
        due = due.where(t.c.message_fk.in_(only))
    # PostgreSQL: rows another deliverer holds are skipped, not waited for (SQLite has one writer anyway).
    due = due.with_for_update(skip_locked=True)
    # The lease condition is repeated in the UPDATE, so two deliverers never both claim a row.
    return (update(t).where(t.c.id.in_(due.scalar_subquery()), t.c.status == OutboxStatus.QUEUED.value, free)
            .values(lease_owner=bindparam("b_owner"), lease_until=bindparam("b_until"))
            .returning(t.c.id, t.c.message_fk, t.c.recipient, t.c.envelope_from, t.c.headers, t.c.attempts,
                       t.c.created_at))


MAX_RCPTS = 100  # recipients in one SMTP transaction (RFC 5321 §4.5.3.1.8: servers take at least 100)


def _units(batch: list[Any]) -> list[list[Any]]:
    """Rows that can share one SMTP transaction: same message, same envelope sender, no per-recipient headers."""
    units: list[list[Any]] = []
    for row in batch:
        last = units[-1] if units else None
        if (last is not None and len(last) < MAX_RCPTS and not row.headers and not last[0].headers
                and last[0].message_fk == row.message_fk and last[0].envelope_from == row.envelope_from):
            last.append(row)
        else:
            units.append([row])
    return units


def _raw_messages(sessions: sessionmaker[Session], ids: set[int]) -> dict[int, bytes]:
    t: Any = OutgoingMessage.__table__
    with sessions.kw["bind"].connect() as conn:
        return {row.id: row.raw for row in conn.execute(select(t.c.id, t.c.raw).where(t.c.id.in_(ids)))}


def deliver_due(sessions: sessionmaker[Session], cfg: Config, now: Callable[[], dt.datetime],
                transport_factory: Callable[[Config], Transport] = make_transport,
                only_message_ids: Iterable[int] | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> DeliveryReport:
    """Send every queued recipient that is due; commit after each, retry later on 4xx, give up on 5xx.
    With [outbound] connections > 1 (SMTP), that many connections work in parallel, each on rows it claimed.
    `should_stop` is asked between messages; what is not sent keeps its lease until it runs out."""
    only = list(only_message_ids) if only_message_ids is not None else None
    release_dead_leases(sessions, now())
    workers = cfg.outbound.connections if cfg.outbound.transport == "smtp" else 1
    if workers == 1:
        return _deliver_worker(sessions, cfg, now, transport_factory, only, should_stop)
    from concurrent.futures import ThreadPoolExecutor

    report = DeliveryReport()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deliver") as pool:
        futures = [pool.submit(_deliver_worker, sessions, cfg, now, transport_factory, only, should_stop)
                   for _ in range(workers)]
        for future in futures:
            part = future.result()
            report.sent += part.sent
            report.deferred += part.deferred
            report.failed += part.failed
    return report


def _deliver_worker(sessions: sessionmaker[Session], cfg: Config, now: Callable[[], dt.datetime],
                    transport_factory: Callable[[Config], Transport], only: list[int] | None,
                    should_stop: Callable[[], bool]) -> DeliveryReport:
    report = DeliveryReport()
    marker = _Marker(sessions.kw["bind"])
    try:
        return _deliver_loop(sessions, cfg, now, transport_factory, only, should_stop, report, marker)
    finally:
        marker.close()


class _Marker:
    """Marks rows sent, one commit per SMTP transaction, on a connection kept for the whole run. Plain DBAPI:
    the ORM's bulk-update bookkeeping cost more than the send itself (183 µs a mark against 52 µs)."""

    def __init__(self, engine: Any) -> None:
        self.sqlite = engine.dialect.name == "sqlite"
        self.conn = engine.raw_connection()
        mark = "?" if self.sqlite else "%s"
        self.sql = (f"UPDATE outbox SET status = 'sent', sent_at = {mark}, attempts = attempts + 1, "
                    f"last_error = '', lease_until = NULL WHERE id = {mark}")

    def mark(self, ids: list[int], when: dt.datetime) -> None:
        # The same stored form as store.UTCDateTime: naive UTC text on SQLite, aware on PostgreSQL.
        stamp: Any = when.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds") \
            if self.sqlite else when
        cursor = self.conn.cursor()
        try:
            cursor.executemany(self.sql, [(stamp, row_id) for row_id in ids])
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        self.conn.close()


def _deliver_loop(sessions: sessionmaker[Session], cfg: Config, now: Callable[[], dt.datetime],
                  transport_factory: Callable[[Config], Transport], only: list[int] | None,
                  should_stop: Callable[[], bool], report: DeliveryReport, marker: _Marker) -> DeliveryReport:
    link = _Link(cfg, transport_factory)
    try:
        while not should_stop():
            batch = _claim(sessions, cfg, now(), only)
            if not batch:
                return report
            _send_batch(sessions, cfg, now, link, batch, should_stop, report, marker)
    finally:
        link.close()
    return report


class _Link:
    """A relay connection kept across batches, opened when first needed. A connection that was already used
    and is found closed by the relay (an idle timeout, a per-connection message limit) is reopened once."""

    def __init__(self, cfg: Config, factory: Callable[[Config], Transport]) -> None:
        self.cfg = cfg
        self.factory = factory
        self.transport: Transport | None = None
        self.used = False
        self.last_used = 0.0

    def get(self) -> Transport:
        if self.transport is None:
            self.transport = self.factory(self.cfg)
            self.used = False
        return self.transport

    def send(self, envelope_from: str, recipients: list[str], raw: bytes) -> dict[str, tuple[int, bytes]]:
        transport = self.get()
        try:
            refused = transport.send(envelope_from, recipients, raw)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self.close()
            if not self.used:
                raise
            log.info("relay closed a kept connection (%s); reconnecting", exc)
            refused = self.get().send(envelope_from, recipients, raw)
        self.used = True
        self.last_used = time.monotonic()
        return refused

    def close(self) -> None:
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.close()


def _send_batch(sessions: sessionmaker[Session], cfg: Config, now: Callable[[], dt.datetime], link: _Link,
                batch: list[Any], should_stop: Callable[[], bool], report: DeliveryReport, marker: _Marker) -> None:
    """Send claimed rows over `link`, marking each SMTP transaction's rows as it is accepted."""
    try:
        link.get()
    except (OSError, smtplib.SMTPException) as exc:
        _, text = _classify(exc)
        if cfg.outbound.transport == "maildir":   # not a relay: say which folder, and the key that names it
            log.warning("cannot write to the Maildir %s (outbound.maildir): %s; %d messages deferred",
                        cfg.resolve(cfg.outbound.maildir), text, len(batch))
        else:
            log.warning("relay %s:%s unavailable: %s; %d messages deferred", cfg.outbound.host, cfg.outbound.port,
                        text, len(batch))
        for row in batch:
            _record_failure(sessions, cfg, row.id, row.attempts, row.created_at, text, False, now(), report)
        return
    raws = _raw_messages(sessions, {row.message_fk for row in batch})
    units = _units(batch)
    for index, unit in enumerate(units):
        if should_stop():
            _release(sessions, [r.id for u in units[index:] for r in u])
            return
        raw = raws[unit[0].message_fk]
        if unit[0].headers:
            raw = unit[0].headers.encode("utf-8") + raw
        try:
            refused = link.send(unit[0].envelope_from, [r.recipient for r in unit], raw)
        except (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError) as exc:
            # The connection is gone: this unit and the rest of the batch wait for the next attempt.
            link.close()
            for rest in (r for u in units[index:] for r in u):
                _record_failure(sessions, cfg, rest.id, rest.attempts, rest.created_at,
                                f"{type(exc).__name__}: {exc}", False, now(), report)
            return
        except smtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients
        except (smtplib.SMTPException, OSError) as exc:
            permanent, text = _classify(exc)
            for row in unit:
                _record_failure(sessions, cfg, row.id, row.attempts, row.created_at, text, permanent, now(),
                                report)
            continue
        sent = [r for r in unit if r.recipient not in refused]
        for row in unit:
            if row.recipient in refused:
                code, text_b = refused[row.recipient]
                text = f"{code} {text_b.decode('utf-8', 'replace') if isinstance(text_b, bytes) else text_b}"
                _record_failure(sessions, cfg, row.id, row.attempts, row.created_at, text, code >= 500,
                                now(), report)
        if sent:
            marker.mark([r.id for r in sent], now())
            report.sent += len(sent)


class Deliverer:
    """The delivery side of `wgbot run`: `connections` long-lived workers, each keeping its relay connection
    and its database connection while there is work, sleeping until woken (something was queued) or until
    `interval` passes (retries that came due). A relay connection idle for `KEEP_SECONDS` is closed."""

    KEEP_SECONDS = 2.0

    def __init__(self, sessions: sessionmaker[Session], cfg: Config, now: Callable[[], dt.datetime],
                 transport_factory: Callable[[Config], Transport] = make_transport, interval: float = 5.0) -> None:
        self.sessions = sessions
        self.cfg = cfg
        self.now = now
        self.factory = transport_factory
        self.interval = interval
        self.stopping = threading.Event()
        self.changed = threading.Condition()
        self.generation = 0
        count = cfg.outbound.connections if cfg.outbound.transport == "smtp" else 1
        self.threads = [threading.Thread(target=self._worker, name=f"deliver-{i}", daemon=True) for i in range(count)]
        self.last_sweep = 0.0

    def start(self) -> None:
        try:
            release_dead_leases(self.sessions, self.now())
        except Exception:   # the store is down: the workers retry, and sweep again within a minute
            log.exception("could not release the leases of dead deliverers; trying again later")
        self.last_sweep = time.monotonic()
        for thread in self.threads:
            thread.start()

    def wake(self, workers: int = 1) -> None:
        """Something was queued: one idle worker looks for it now. Waking all of them for every reply would have
        them all race for the same few rows; a worker that claims a full batch wakes the next one instead."""
        with self.changed:
            self.generation += 1
            self.changed.notify(workers)

    def stop(self, timeout: float) -> None:
        self.stopping.set()
        self.wake(len(self.threads))
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _worker(self) -> None:
        marker: _Marker | None = None
        link = _Link(self.cfg, self.factory)
        try:
            while not self.stopping.is_set():
                with self.changed:
                    seen = self.generation
                try:
                    if marker is None:
                        marker = _Marker(self.sessions.kw["bind"])
                    if time.monotonic() - self.last_sweep > 60:
                        self.last_sweep = time.monotonic()
                        release_dead_leases(self.sessions, self.now())
                    batch = _claim(self.sessions, self.cfg, self.now(), None)
                    if len(batch) == self.cfg.outbound.batch_size:
                        self.wake()   # there may be more: another worker takes the next batch in parallel
                    if batch:
                        report = DeliveryReport()
                        _send_batch(self.sessions, self.cfg, self.now, link, batch, self.stopping.is_set, report,
                                    marker)
                        log.info("delivery: %s", report)
                        continue
                except Exception:
                    log.exception("delivery failed; retrying in %.0f s", self.interval)
                    link.close()
                    if marker is not None:
                        marker.close()
                        marker = None
                    self.stopping.wait(self.interval)
                    continue
                # Nothing due: close an idle relay connection, then sleep until woken or the interval passes.
                wait = self.interval
                if link.transport is not None:
                    idle = time.monotonic() - link.last_used
                    if idle >= self.KEEP_SECONDS:
                        link.close()
                    else:
                        wait = min(wait, self.KEEP_SECONDS - idle)
                with self.changed:
                    if self.generation == seen and not self.stopping.is_set():
                        self.changed.wait(wait)
        finally:
            link.close()
            if marker is not None:
                marker.close()


def _release(sessions: sessionmaker[Session], ids: list[int]) -> None:
    """Give back claimed rows that were not tried (a clean stop), so the next start sends them at once."""
    with sessions.begin() as session:
        session.execute(update(OutboxEntry).where(OutboxEntry.id.in_(ids)).values(lease_until=None))


def _record_failure(sessions: sessionmaker[Session], cfg: Config, entry_id: int, attempts: int,
                    created_at: dt.datetime, text: str, permanent: bool, now: dt.datetime,
                    report: DeliveryReport) -> None:
    attempts += 1
    give_up = now - created_at >= dt.timedelta(days=cfg.outbound.give_up_days)
    with sessions.begin() as session:
        if permanent or give_up:
            why = text if permanent else f"gave up after {cfg.outbound.give_up_days:g} days: {text}"
            session.execute(update(OutboxEntry).where(OutboxEntry.id == entry_id).values(
                status=OutboxStatus.FAILED.value, attempts=attempts, last_error=why[:2000], lease_until=None))
            report.failed += 1
            log.warning("outbox %d failed permanently: %s", entry_id, why)
        else:
            session.execute(update(OutboxEntry).where(OutboxEntry.id == entry_id).values(
                attempts=attempts, last_error=text[:2000], next_attempt_at=now + backoff(cfg, attempts),
                lease_until=None))
            report.deferred += 1
            log.info("outbox %d deferred (attempt %d): %s", entry_id, attempts, text)
