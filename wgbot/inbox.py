"""inbox: `accept` stores raw mail idempotently (before any acknowledgement); `process_pending` turns stored
rows into effects: parse → gate → route → dispatch, in ONE transaction per message.

A fault while processing rolls that transaction back and quarantines the row with its error; it never stops
the loop. Processing a row twice is impossible (its status changes in the same transaction as its effects),
and a message delivered twice is stored once (keyed by Message-ID + body hash, per recipient).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from wgbot import commands, gate
from wgbot.config import Config
from wgbot.errors import MessageRefused
from wgbot.leniency import address_command
from wgbot.outbox import allow_reply, enqueue
from wgbot.parse import Caps, Message, clean_header_text, parse, parse_headers, split_head
from wgbot.render import compose
from wgbot.route import Destination, Kind, route
from wgbot.store import Group, InboundMessage, InboundStatus, audit, prepared

log = logging.getLogger("wgbot.inbox")

MAX_ATTEMPTS = 3  # crash recoveries before a message is quarantined for good (Mailman's MAX_BAK_COUNT)


def caps_for(cfg: Config) -> Caps:
    lim = cfg.limits
    return Caps(max_size=cfg.inbound.smtp.max_message_size, max_header_bytes=lim.max_header_bytes,
                max_header_fields=lim.max_header_fields, max_parts=lim.max_parts, max_depth=lim.max_depth,
                max_received=lim.max_received)


def dedupe_hash(raw: bytes) -> str:
    """Message-ID plus body: an MTA's retry (RFC 1047) adds Received headers but keeps both."""
    head, body = split_head(raw)
    m = re.search(rb"(?im)^message-id:[ \t]*(<[^>\r\n]{1,900}>)", head)
    if m is None:
        return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(m.group(1).strip() + b"\0" + body).hexdigest()


def group_exists(session: Session) -> Callable[[str], bool]:
    def exists(slug: str) -> bool:
        return session.scalar(select(Group.id).where(Group.slug == slug)) is not None
    return exists


def accept(session: Session | Connection, raw: bytes, recipients: Iterable[str], envelope_from: str | None,
           now: dt.datetime, source: str = "smtp") -> list[int]:
    """Store `raw` once per recipient (idempotently) and flush; the caller commits, then acknowledges.

    `envelope_from` None means unknown (the From address stands in); "" or "<>" is the null sender, stored
    as "<>". Returns the ids of the rows stored, new or already there."""
    stored_from = "" if envelope_from is None else (envelope_from.strip() or "<>")
    digest = dedupe_hash(raw)
    head, _ = split_head(raw)
    m = re.search(rb"(?im)^message-id:[ \t]*(<[^>\r\n]{1,900}>)", head)
    msgid = m.group(1).decode("ascii", "replace") if m else ""
    ids: list[int] = []
    for rcpt in dict.fromkeys(r.strip() for r in recipients):
        # One statement: a retry of a message already stored (or a concurrent accept of it) inserts nothing.
        new_id = session.execute(prepared(session, _store_once), {
            "dedupe_hash": digest, "recipient": rcpt, "envelope_from": stored_from, "source": source,
            "message_id": msgid[:998], "raw": raw, "received_at": now}).scalar()
        if new_id is None:
            existing = session.scalar(select(InboundMessage.id).where(InboundMessage.dedupe_hash == digest,
                                                                      InboundMessage.recipient == rcpt))
            log.info("duplicate of inbound %s (%s to %s) ignored", existing, msgid or "no Message-ID", rcpt)
            if existing is not None:
                ids.append(existing)
            continue
        ids.append(int(new_id))
    return ids


def _store_once(dialect_insert: Any) -> Any:
    table: Any = InboundMessage.__table__
    names = ("dedupe_hash", "recipient", "envelope_from", "source", "message_id", "raw", "received_at")
    return (dialect_insert(table)
            .values(**{n: bindparam(n) for n in names}, status=InboundStatus.PENDING.value, attempts=0, outcome="",
                    error="")
            .on_conflict_do_nothing(index_elements=[table.c.dedupe_hash, table.c.recipient])
            .returning(table.c.id))


@dataclass
class Outcome:
    status: str
    outcome: str
    queued: list[int]
    mail: bool = False      # something was queued for delivery (a reply, a notice, a post's copies)


@dataclass(frozen=True)
class Stored:
    """What processing reads of a stored message."""

    id: int
    raw: bytes
    recipient: str
    envelope_from: str


def _envelope(row: Stored) -> str | None:
    """The stored envelope sender: None when unknown, "<>" for the null sender."""
    return row.envelope_from or None


def _reply_to(row: Stored, msg: Message) -> str:
    return row.envelope_from if row.envelope_from not in ("", "<>") else msg.sender


def _handle(session: Session, cfg: Config, row: Stored, now: dt.datetime) -> Outcome:
    """Process one stored message inside the caller's transaction."""
    queued: list[int] = []
    msg = parse(row.raw, caps_for(cfg))
    envelope = _envelope(row)
    verdict = gate.check(msg, envelope if envelope is not None else msg.sender, cfg)
    dest = route(row.recipient, cfg, group_exists(session))
    if dest is None:
        raise MessageRefused(f"{clean_header_text(row.recipient, 100)} is not one of our addresses")
    if dest.kind in (Kind.POST, Kind.OWNER, Kind.BOUNCES, Kind.COMMENTS):
        return _list_mail(session, cfg, row, msg, dest, verdict, now)
    if verdict.automated:
        # Automated mail never changes state and never gets a reply (SPEC §3, §6).
        return Outcome(InboundStatus.IGNORED.value, f"automated: {verdict.reason}", queued)
    if dest.kind in (Kind.COMMAND, Kind.REQUEST, Kind.JOIN, Kind.LEAVE, Kind.CONFIRM, Kind.APPROVAL):
        return _run_commands(session, cfg, row, msg, dest, now)
    raise MessageRefused(f"mail to {dest.kind.value} addresses ({row.recipient}) is not handled yet in this version")


def _context(session: Session, cfg: Config, row: Stored, msg: Message, dest: Destination,
             now: dt.datetime) -> commands.Context:
    from wgbot.rules import cached_rules
    from wgbot.workgroups import trusted_dmarc_pass

    return commands.Context(session=session, cfg=cfg, now=now, msg=msg, sender=msg.sender,
                            reply_address=_reply_to(row, msg), default_group=dest.slug, inbound_id=row.id,
                            rules=cached_rules(str(cfg.rules_path)),
                            trusted=trusted_dmarc_pass(cfg, msg.all("authentication-results"), msg.sender))


def _list_mail(session: Session, cfg: Config, row: Stored, msg: Message, dest: Destination,
               verdict: gate.Verdict, now: dt.datetime) -> Outcome:
    """Mail to a group's list, owner or bounce address."""
    from wgbot import lists

    group = session.scalar(select(Group).where(Group.slug == dest.slug))
    assert group is not None  # route() checked it exists
    ctx = _context(session, cfg, row, msg, dest, now)
    if dest.kind is Kind.BOUNCES:
        status, outcome = lists.handle_bounce(ctx, group, dest.verp, row.raw)
    elif verdict.automated and ("loop" in verdict.reason or (dest.kind is Kind.POST and verdict.bounce)):
        status, outcome = InboundStatus.IGNORED.value, f"automated: {verdict.reason}"
    elif dest.kind is Kind.COMMENTS:
        if verdict.automated:
            status, outcome = InboundStatus.IGNORED.value, f"automated: {verdict.reason}"
        else:
            from wgbot.reports import receive_comment

            status, outcome = receive_comment(ctx, group)
    elif dest.kind is Kind.OWNER:
        status, outcome = lists.to_owners(ctx, group, row.raw)
    else:
        status, outcome = lists.receive_post(ctx, group, row.raw, row.id)
    return Outcome(status, outcome, [])


def _run_commands(session: Session, cfg: Config, row: Stored, msg: Message, dest: Destination,
                  now: dt.datetime) -> Outcome:
    ctx = _context(session, cfg, row, msg, dest, now)
    trusted = ctx.trusted
    unknown: list[str] = []
    stopped = ""
    template = "replies/results.txt"
    if dest.kind is Kind.APPROVAL:
        if cfg.network.trusted_authserv_id and not trusted:
            # Approvals need a trusted, aligned DMARC pass when the deployment has one (mail-safety.md §4.1
            # item 38): refused, and no reply to a From that may be forged.
            return Outcome(InboundStatus.IGNORED.value, "approval reply without a trusted DMARC pass", [])
        results, template = _approval_reply(ctx, dest.token)
    elif dest.kind is Kind.CONFIRM:
        results = [(f"confirm {dest.token[:6]}…", commands.confirm_token(ctx, dest.token))]
    elif dest.kind in (Kind.JOIN, Kind.LEAVE):
        verb = "join" if dest.kind is Kind.JOIN else "leave"
        results = commands.run(ctx, [address_command(commands.registry, verb, dest.slug, msg.text)])
    else:
        lines, unknown, stopped = commands.read_commands(commands.registry, msg.subject, msg.text,
                                                         cfg.limits.max_command_lines)
        results = commands.run(ctx, lines)
    to = ctx.reply_address
    queued: list[int] = []
    if allow_reply(session, to, now, cfg.limits.replies_per_day):
        reply = compose(cfg, template,
                        {"results": results, "unknown": unknown, "stopped": stopped},
                        to=[to], parent=msg, auto_submitted="auto-replied", now=now)
        queued.append(enqueue(session, reply, [to], cfg.network.bot_address, now, kind="reply",
                              inbound_id=row.id))
    ok = sum(1 for _, r in results if r.ok)
    summary = f"{len(results)} command(s), {ok} ok, {len(results) - ok} refused"
    if unknown:
        summary += f", {len(unknown)} unknown line(s)"
    return Outcome(InboundStatus.DONE.value, summary, queued)


def _approval_reply(ctx: commands.Context, token: str) -> tuple[list[tuple[str, commands.Result]], str]:
    """A reply to an approval request: its first non-quoted line decides; anything else is asked again."""
    from wgbot.workgroups import decide, read_decision

    decision, reason = read_decision(ctx.msg.text)
    if not decision:
        return [], "replies/approval_unclear.txt"
    line = decision + (f" ({commands.shown(reason, 60)})" if reason else "")
    return [(line, decide(ctx, token, decision, reason))], "replies/results.txt"


def _answer_refused(session: Session, cfg: Config, row: Stored, reason: str, now: dt.datetime) -> None:
    """Tell the sender why their message could not be read, where that is safe (its headers pass the gate)."""
    head = parse_headers(row.raw, caps_for(cfg))
    if head is None:
        return
    envelope = _envelope(row)
    if gate.check(head, envelope if envelope is not None else head.sender, cfg).automated:
        return
    if route(row.recipient, cfg, group_exists(session)) is None:
        return
    to = _reply_to(row, head)
    if allow_reply(session, to, now, cfg.limits.replies_per_day):
        reply = compose(cfg, "replies/refused.txt", {"reason": reason, "address": head.sender}, to=[to],
                        parent=head, auto_submitted="auto-replied", now=now)
        enqueue(session, reply, [to], cfg.network.bot_address, now, kind="refused", inbound_id=row.id)


def _claim_inbound(_insert: Any) -> Any:
    t: Any = InboundMessage.__table__
    return (update(t).where(t.c.id == bindparam("b_id"), t.c.status == InboundStatus.PENDING.value)
            .values(processed_at=bindparam("b_now")).returning(t.c.id, t.c.raw, t.c.recipient, t.c.envelope_from))


def _finish_inbound(_insert: Any) -> Any:
    t: Any = InboundMessage.__table__
    return update(t).where(t.c.id == bindparam("b_id")).values(status=bindparam("b_status"),
                                                               outcome=bindparam("b_outcome"))


def process_one(sessions: sessionmaker[Session], cfg: Config, row_id: int, now: dt.datetime) -> Outcome | None:
    """Process one stored row in one transaction; on a fault, quarantine it. None if it was already done."""
    started = time.monotonic()
    session = sessions()
    try:
        with session.begin():
            # Claim the row first: the UPDATE takes PostgreSQL's row lock or SQLite's write lock, so a second
            # processor (the IMAP poller beside the listener's worker, or another process) waits here and then
            # finds the row no longer pending.
            # The claim returns what processing needs (Core, prepared: it runs for every message).
            claimed = session.execute(prepared(session, _claim_inbound), {"b_id": row_id, "b_now": now}).first()
            if claimed is None:
                return None
            row = Stored(*claimed)
            sender, rcpt = row.envelope_from or "-", row.recipient
            result = _handle(session, cfg, row, now)
            session.execute(prepared(session, _finish_inbound), {"b_id": row_id, "b_status": result.status,
                                                                 "b_outcome": result.outcome[:200]})
            if result.status == InboundStatus.QUARANTINED.value:
                session.execute(update(InboundMessage).where(InboundMessage.id == row_id)
                                .values(error=result.outcome))
                audit(session, now, "wgbot", "quarantine", detail_inbound=row_id, reason=result.outcome)
    except Exception as exc:
        session.rollback()
        reason = str(exc) if isinstance(exc, MessageRefused) else f"{type(exc).__name__}: {exc}"
        detail = reason if isinstance(exc, MessageRefused) else traceback.format_exc(limit=8)
        with session.begin():
            stored = session.get(InboundMessage, row_id)
            assert stored is not None
            sender, rcpt = stored.envelope_from or "-", stored.recipient
            stored.status = InboundStatus.QUARANTINED.value
            stored.outcome = f"quarantined: {reason}"[:200]
            stored.error = detail
            stored.attempts += 1
            stored.processed_at = now
            audit(session, now, "wgbot", "quarantine", detail_inbound=stored.id, reason=reason[:500])
            if isinstance(exc, MessageRefused):
                _answer_refused(session, cfg, Stored(stored.id, stored.raw, stored.recipient, stored.envelope_from),
                                reason, now)
        result = Outcome(InboundStatus.QUARANTINED.value, reason, [])
        if not isinstance(exc, MessageRefused):
            log.error("inbound %d: fault while processing, quarantined: %s", row_id, reason, exc_info=exc)
    finally:
        queued_mail = bool(session.info.get("queued_mail"))
        session.close()
    result.mail = queued_mail
    elapsed = (time.monotonic() - started) * 1000
    log.info("inbound %d from=%s to=%s %s: %s (%.0f ms)", row_id, sender, rcpt, result.status, result.outcome, elapsed)
    return result


def pending_ids(sessions: sessionmaker[Session], limit: int = 1000) -> list[int]:
    with sessions() as session:
        return list(session.scalars(select(InboundMessage.id).where(
            InboundMessage.status == InboundStatus.PENDING.value).order_by(InboundMessage.id).limit(limit)))


def process_pending(sessions: sessionmaker[Session], cfg: Config, now: Callable[[], dt.datetime],
                    ids: Iterable[int] | None = None,
                    should_stop: Callable[[], bool] = lambda: False,
                    after: Callable[[Outcome], None] | None = None) -> dict[int, Outcome]:
    """Process every pending row (or just `ids`), oldest first; `should_stop` is asked between messages and
    `after` is called with each outcome (`wgbot run` wakes its deliverers there)."""
    done: dict[int, Outcome] = {}
    todo = list(ids) if ids is not None else pending_ids(sessions)
    while todo:
        for row_id in todo:
            if should_stop():
                return done
            outcome = process_one(sessions, cfg, row_id, now())
            if outcome is not None:
                done[row_id] = outcome
                if after is not None:
                    after(outcome)
        if ids is not None:
            break
        todo = [i for i in pending_ids(sessions) if i not in done]
    return done


def requeue(sessions: sessionmaker[Session], row_ids: Iterable[int]) -> int:
    """Put quarantined rows back to pending, for `wgbot quarantine retry`."""
    count = 0
    with sessions.begin() as session:
        for row_id in row_ids:
            row = session.get(InboundMessage, row_id)
            if row is not None and row.status == InboundStatus.QUARANTINED.value:
                row.status = InboundStatus.PENDING.value
                count += 1
    return count
