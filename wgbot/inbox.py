"""inbox: `accept` stores raw mail idempotently (before any acknowledgement); `process_pending` turns stored
rows into effects: parse → gate → route → dispatch, in ONE transaction per message.

A fault while processing rolls that transaction back and quarantines the row with its error; it never stops
the loop. A fault that kills the process cannot be caught, so each try is counted (and committed) before it
starts: a message that stopped the bot MAX_ATTEMPTS times is quarantined unread. Processing a row twice is
impossible (its status changes in the same transaction as its effects), and a message delivered twice is
stored once (keyed by Message-ID + body hash, per recipient; its bytes once per transaction).
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

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

# inbox is where the features are imported, and so where their commands and request kinds register
# (wgbot.LAYERS): lists, reports, meetings and workgroups; workgroups imports invitations and leaving.
from wgbot import (
    answers,
    bounces,
    commands,
    gate,
    ical,
    lists,
    meetings,
    outbox,
    reports,
    watchdog,
    workgroups,  # noqa: F401  (its commands and request kinds register on import)
)
from wgbot.config import Config
from wgbot.context import Context, Result, registry, shown
from wgbot.errors import MessageRefused
from wgbot.leniency import address_command
from wgbot.outbox import allow_caused
from wgbot.parse import Caps, Message, check_caps, clean_header_text, parse, parse_headers, split_head
from wgbot.pending import confirm_token, decide, read_decision
from wgbot.route import Destination, Kind, mask_token, route
from wgbot.rules import cached_rules
from wgbot.store import Group, InboundMessage, InboundStatus, audit, prepared
from wgbot.unreadable import answer_unreadable

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
    """Store `raw` with one row per recipient, its bytes once (idempotently), and flush; the caller commits,
    then acknowledges.

    `envelope_from` None means unknown (the From address stands in); "" or "<>" is the null sender, stored
    as "<>". Returns the ids of the rows stored, new or already there."""
    stored_from = "" if envelope_from is None else (envelope_from.strip() or "<>")
    digest = dedupe_hash(raw)
    head, _ = split_head(raw)
    m = re.search(rb"(?im)^message-id:[ \t]*(<[^>\r\n]{1,900}>)", head)
    msgid = m.group(1).decode("ascii", "replace") if m else ""
    ids: list[int] = []
    holder: int | None = None    # the row that holds the bytes; the other recipients' rows refer to it
    # A live confirmation or approval token is stored (and so logged) only as its hash, which routes the same.
    for rcpt in _distinct(mask_token(r.strip()) for r in recipients):
        # One statement: a retry of a message already stored (or a concurrent accept of it) inserts nothing.
        new_id = session.execute(prepared(session, _store_once), {
            "dedupe_hash": digest, "recipient": rcpt, "envelope_from": stored_from, "source": source,
            "message_id": msgid[:998], "raw": raw if holder is None else b"", "raw_of": holder,
            "received_at": now}).scalar()
        if new_id is None:
            existing = session.scalar(select(InboundMessage.id).where(InboundMessage.dedupe_hash == digest,
                                                                      InboundMessage.recipient == rcpt))
            log.info("duplicate of inbound %s (%s to %s) ignored", existing, msgid or "no Message-ID", rcpt)
            if existing is not None:
                ids.append(existing)
            continue
        ids.append(int(new_id))
        holder = int(new_id) if holder is None else holder
    return ids


def _distinct(recipients: Iterable[str]) -> list[str]:
    """Recipients as route() tells them apart: `grp@`, `GRP@` and `Grp@domain.` are one address, so one message
    to all of them is one row (and one moderation request), not one per spelling."""
    seen: dict[str, str] = {}
    for rcpt in recipients:
        rcpt = rcpt.strip()
        seen.setdefault(rcpt.strip("<>").lower().rstrip("."), rcpt)
    return list(seen.values())


def _store_once(dialect_insert: Any) -> Any:
    table: Any = InboundMessage.__table__
    names = ("dedupe_hash", "recipient", "envelope_from", "source", "message_id", "raw", "raw_of", "received_at")
    return (dialect_insert(table)
            .values(**{n: bindparam(n) for n in names}, status=InboundStatus.PENDING.value, attempts=0, outcome="",
                    error="")
            .on_conflict_do_nothing(index_elements=[table.c.dedupe_hash, table.c.recipient])
            .returning(table.c.id))


@dataclass
class Outcome:
    status: InboundStatus
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
    dest = route(row.recipient, cfg, group_exists(session))
    if dest is not None and dest.kind is Kind.BOUNCES:
        # Read by the address it came to, whatever its From (issue 11 item 3): never refused by parse().
        check_caps(row.raw, caps_for(cfg))
        return Outcome(*bounces.receive(session, cfg, dest, row.raw, now), queued)
    msg = parse(row.raw, caps_for(cfg))
    envelope = _envelope(row)
    verdict = gate.check(msg, envelope if envelope is not None else msg.sender, cfg)
    if dest is None:
        raise MessageRefused(f"{clean_header_text(row.recipient, 100)} is not one of our addresses")
    if dest.kind in (Kind.POST, Kind.REQUEST, Kind.COMMAND) and not (verdict.loop or verdict.bounce):
        # A calendar's answer to an invitation (iTIP REPLY) goes to the ORGANIZER, the list address: it is counted
        # and never posted. Calendars' replies are machine-made (some say Auto-Submitted), so only loops and
        # bounces are kept from this: counting an answer is all such mail may do (SPEC §6).
        reply = ical.calendar_reply(row.raw)
        if reply is not None:
            return Outcome(*meetings.receive_reply(_context(session, cfg, row, msg, dest, now), reply), queued)
    if dest.kind in (Kind.POST, Kind.OWNER, Kind.COMMENTS):
        return _list_mail(session, cfg, row, msg, dest, verdict, now)
    if verdict.automated:
        # Automated mail never changes state and never gets a reply (SPEC §3, §6).
        return Outcome(InboundStatus.IGNORED, f"automated: {verdict.reason}", queued)
    # The other kinds (COMMAND, REQUEST, JOIN, LEAVE, CONFIRM, APPROVAL) carry commands or a token.
    return _run_commands(session, cfg, row, msg, dest, now)


def _context(session: Session, cfg: Config, row: Stored, msg: Message, dest: Destination,
             now: dt.datetime) -> Context:
    return Context(session=session, cfg=cfg, now=now, msg=msg, sender=msg.sender,
                   reply_address=_reply_to(row, msg), default_group=dest.slug, inbound_id=row.id,
                   rules=cached_rules(str(cfg.rules_path)),
                   trusted=gate.trusted_dmarc_pass(cfg, msg.all("authentication-results"), msg.sender))


def _list_mail(session: Session, cfg: Config, row: Stored, msg: Message, dest: Destination,
               verdict: gate.Verdict, now: dt.datetime) -> Outcome:
    """Mail to a group's list or owner address."""
    group = session.scalar(select(Group).where(Group.slug == dest.slug))
    assert group is not None  # route() checked it exists
    ctx = _context(session, cfg, row, msg, dest, now)
    if verdict.automated and (verdict.loop or dest.kind in (Kind.POST, Kind.COMMENTS)):
        # Automated mail to a list (a vacation answer to a post, another list's copy, a bounce) is neither
        # posted nor held nor answered: dropped, and the outcome logged (RFC 3834 §2).
        status, outcome = InboundStatus.IGNORED, f"automated: {verdict.reason}"
    elif dest.kind is Kind.COMMENTS:
        status, outcome = reports.receive_comment(ctx, group)
    elif dest.kind is Kind.OWNER and not allow_caused(session, msg.sender, now, cfg.limits.replies_per_day):
        status, outcome = InboundStatus.IGNORED, "not forwarded: the sender's daily limit is reached"
    elif dest.kind is Kind.OWNER:
        status, outcome = lists.to_owners(ctx, group, row.raw)
    else:
        status, outcome = lists.receive_post(ctx, group, row.raw, row.id)
    return Outcome(status, outcome, [])


def _run_commands(session: Session, cfg: Config, row: Stored, msg: Message, dest: Destination,
                  now: dt.datetime) -> Outcome:
    ctx = _context(session, cfg, row, msg, dest, now)
    unknown: list[str] = []
    stopped = ""
    template = "replies/results.txt"
    if dest.kind is Kind.APPROVAL:
        results, template = _approval_reply(ctx, dest)
    elif dest.kind is Kind.CONFIRM:
        results = [("confirm", confirm_token(ctx, dest.token, hashed=dest.token_hash))]
    elif dest.kind in (Kind.JOIN, Kind.LEAVE):
        verb = "join" if dest.kind is Kind.JOIN else "leave"
        results = commands.run(ctx, [address_command(registry, verb, dest.slug, msg.text)])
    else:
        lines, unknown, stopped = commands.read_commands(registry, msg.subject, msg.text,
                                                         cfg.limits.max_command_lines)
        results = commands.run(ctx, lines)
    # Answers about a token (a confirmation, an approval) always concern the From address's own request.
    to = answers.answer_address(ctx, results, private=dest.kind in (Kind.APPROVAL, Kind.CONFIRM))
    summary = _summary(results, unknown)
    if not results and dest.kind in (Kind.COMMAND, Kind.REQUEST):
        # No command at all (prose, a "thank you", unknown lines): one short answer naming people, not a
        # transcript per message.
        if not answers.first_no_command_answer(session, (msg.sender, to), now):
            return Outcome(InboundStatus.DONE, summary + "; answered before, not again", [])
        template = "replies/no_command.txt"
    reply = outbox.mail(session, cfg, now, template, {"results": results, "unknown": unknown, "stopped": stopped},
                        to, per_day=cfg.limits.replies_per_day, kind="reply", inbound_id=row.id, parent=msg,
                        auto_submitted="auto-replied")
    return Outcome(InboundStatus.DONE, summary, [reply] if reply is not None else [])


def _summary(results: list[tuple[str, Result]], unknown: list[str]) -> str:
    ok = sum(1 for _, r in results if r.ok)
    summary = f"{len(results)} command(s), {ok} ok, {len(results) - ok} refused"
    return summary + (f", {len(unknown)} unknown line(s)" if unknown else "")


def _approval_reply(ctx: Context, dest: Destination) -> tuple[list[tuple[str, Result]], str]:
    """A reply to an approval request: its first non-quoted line decides; anything else is asked again.
    Without the trusted DMARC pass a deployment asks for, nothing is decided and the approver is told why."""
    decision, reason = read_decision(ctx.msg.text)
    if ctx.cfg.network.trusted_authserv_id and not ctx.trusted:
        return [(decision or "decision", decide(ctx, dest.token, decision or "approve", reason,
                                                 hashed=dest.token_hash))], "replies/results.txt"
    if not decision:
        return [], "replies/approval_unclear.txt"
    line = decision + (f" ({shown(reason, 60)})" if reason else "")
    return [(line, decide(ctx, dest.token, decision, reason, hashed=dest.token_hash))], "replies/results.txt"


def _answer_refused(session: Session, cfg: Config, row: Stored, reason: str, now: dt.datetime) -> None:
    """Tell the sender why their message could not be read, where that is safe (its headers pass the gate)."""
    head = parse_headers(row.raw, caps_for(cfg))
    if head is None:
        if route(row.recipient, cfg, group_exists(session)) is not None:
            answer_unreadable(session, cfg, row.raw, row.envelope_from, reason, row.id, now)
        return
    envelope = _envelope(row)
    if gate.check(head, envelope if envelope is not None else head.sender, cfg).automated:
        return
    if route(row.recipient, cfg, group_exists(session)) is None:
        return
    outbox.mail(session, cfg, now, "replies/refused.txt", {"reason": reason, "address": head.sender},
                _reply_to(row, head), per_day=cfg.limits.replies_per_day, kind="refused", inbound_id=row.id,
                parent=head, auto_submitted="auto-replied")


def _claim_inbound(_insert: Any) -> Any:
    t: Any = InboundMessage.__table__
    # The attempt is counted by the claim itself and committed before processing starts: a message that kills
    # the process (a crash, an out-of-memory kill, the watchdog's time limit) has its tries on record.
    return (update(t).where(t.c.id == bindparam("b_id"), t.c.status == InboundStatus.PENDING.value)
            .values(processed_at=bindparam("b_now"), attempts=t.c.attempts + 1)
            .returning(t.c.id, t.c.raw, t.c.recipient, t.c.envelope_from, t.c.attempts, t.c.error, t.c.raw_of))


def _hold_inbound(_insert: Any) -> Any:
    t: Any = InboundMessage.__table__
    # The lock for the processing transaction: the row is still pending and no other processor claimed it since.
    return (update(t).where(t.c.id == bindparam("b_id"), t.c.status == InboundStatus.PENDING.value,
                            t.c.attempts == bindparam("b_attempts"))
            .values(processed_at=bindparam("b_now")).returning(t.c.id))


def _finish_inbound(_insert: Any) -> Any:
    t: Any = InboundMessage.__table__
    return update(t).where(t.c.id == bindparam("b_id")).values(status=bindparam("b_status"),
                                                               outcome=bindparam("b_outcome"))


def _claim(session: Session, row_id: int, now: dt.datetime) -> tuple[Stored, int, str] | None:
    """Count one attempt at `row_id` and commit it; None if the row is no longer pending.

    The commit waits for no fsync: processing sessions are not durable with SQLite (store._sqlite_pragmas) and
    PostgreSQL is told so for this transaction. A killed process leaves the count in the database's hands; only
    a power cut could lose it, which costs one more try of the message."""
    with session.begin():
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        claimed = session.execute(prepared(session, _claim_inbound), {"b_id": row_id, "b_now": now}).first()
        if claimed is None:
            return None
        row_id, raw, recipient, envelope_from, attempts, error, raw_of = claimed
        if raw_of is not None:   # another recipient's row holds the bytes of this message
            t: Any = InboundMessage.__table__
            raw = session.scalar(select(t.c.raw).where(t.c.id == raw_of)) or raw
    return Stored(row_id, raw, recipient, envelope_from), int(attempts), str(error or "")


def _quarantine_poison(session: Session, row: Stored, attempts: int, error: str, now: dt.datetime) -> Outcome:
    """A message whose earlier tries never finished is set aside unread (Mailman shunts it the same way)."""
    why = error or "the process stopped while processing it (a crash or an out-of-memory kill)"
    reason = f"processing did not finish in {attempts - 1} attempts; last: {why}"
    session.execute(update(InboundMessage).where(InboundMessage.id == row.id).values(
        status=InboundStatus.QUARANTINED.value, outcome=f"quarantined: {reason}"[:200], error=reason))
    audit(session, now, "wgbot", "quarantine", detail_inbound=row.id, reason=reason[:500])
    log.error("inbound %d: quarantined as a poison message: %s", row.id, reason)
    return Outcome(InboundStatus.QUARANTINED, reason, [])


def _process_claimed(session: Session, cfg: Config, row: Stored, attempts: int, error: str,
                     now: dt.datetime) -> Outcome | None:
    """The processing transaction of a claimed row (the caller handles a fault)."""
    with session.begin():
        # Take the row's lock: PostgreSQL's row lock or SQLite's write lock, so a second processor (the IMAP
        # poller beside the listener's worker, or another process) that claimed it after us finds it gone.
        if session.execute(prepared(session, _hold_inbound),
                           {"b_id": row.id, "b_now": now, "b_attempts": attempts}).first() is None:
            return None
        if attempts > MAX_ATTEMPTS:
            return _quarantine_poison(session, row, attempts, error, now)
        with watchdog.watching(row.id):
            result = _handle(session, cfg, row, now)
        session.execute(prepared(session, _finish_inbound), {"b_id": row.id, "b_status": result.status.value,
                                                             "b_outcome": result.outcome[:200]})
        if result.status is InboundStatus.QUARANTINED:
            session.execute(update(InboundMessage).where(InboundMessage.id == row.id)
                            .values(error=result.outcome))
            audit(session, now, "wgbot", "quarantine", detail_inbound=row.id, reason=result.outcome)
    return result


def process_one(sessions: sessionmaker[Session], cfg: Config, row_id: int, now: dt.datetime) -> Outcome | None:
    """Process one stored row in one transaction; on a fault, quarantine it. None if it was already done."""
    started = time.monotonic()
    session = sessions()
    sender, rcpt = "-", "-"
    try:
        claimed = _claim(session, row_id, now)
        if claimed is None:
            return None
        row, attempts, error = claimed
        sender, rcpt = row.envelope_from or "-", row.recipient
        result = _process_claimed(session, cfg, row, attempts, error, now)
        if result is None:
            return None
    except Exception as exc:
        session.rollback()
        result = _quarantine_fault(session, cfg, row_id, exc, now)
    finally:
        queued_mail = bool(session.info.get("queued_mail"))
        session.close()
    result.mail = queued_mail
    elapsed = (time.monotonic() - started) * 1000
    log.info("inbound %d from=%s to=%s %s: %s (%.0f ms)", row_id, sender, rcpt, result.status, result.outcome, elapsed)
    return result


def _quarantine_fault(session: Session, cfg: Config, row_id: int, exc: Exception, now: dt.datetime) -> Outcome:
    """Quarantine a row whose processing raised; a refusal (not a fault of ours) is explained to its sender."""
    refused = isinstance(exc, MessageRefused)
    reason = str(exc) if refused else f"{type(exc).__name__}: {exc}"
    detail = reason if refused else traceback.format_exc(limit=8)
    with session.begin():
        stored = session.get(InboundMessage, row_id)
        assert stored is not None
        stored.status = InboundStatus.QUARANTINED.value
        stored.outcome = f"quarantined: {reason}"[:200]
        stored.error = detail
        stored.processed_at = now
        audit(session, now, "wgbot", "quarantine", detail_inbound=stored.id, reason=reason[:500])
        if refused:
            _answer_refused(session, cfg, Stored(stored.id, stored.raw, stored.recipient, stored.envelope_from),
                            reason, now)
    if not refused:
        log.error("inbound %d: fault while processing, quarantined: %s", row_id, reason, exc_info=exc)
    return Outcome(InboundStatus.QUARANTINED, reason, [])


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
                row.attempts = 0    # the operator asks for fresh tries (a poison message gets MAX_ATTEMPTS again)
                count += 1
    return count
