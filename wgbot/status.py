"""status: what `wgbot status` shows an operator — queue depths, the last poll, the oldest waiting message."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from wgbot.config import Config
from wgbot.store import Group, ImapCursor, InboundMessage, InboundStatus, OutboxEntry, OutboxStatus


def fmt(t: dt.datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def collect(sessions: sessionmaker[Session], cfg: Config, now: dt.datetime) -> dict[str, Any]:
    with sessions() as session:
        inbound = dict(session.execute(select(InboundMessage.status, func.count()).group_by(InboundMessage.status)
                                       ).all())
        oldest = session.scalar(select(func.min(InboundMessage.received_at)).where(
            InboundMessage.status == InboundStatus.PENDING.value))
        queued = OutboxEntry.status == OutboxStatus.QUEUED.value
        due = session.scalar(select(func.count()).select_from(OutboxEntry).where(
            queued, OutboxEntry.next_attempt_at <= now)) or 0
        retry = session.scalar(select(func.count()).select_from(OutboxEntry).where(
            queued, OutboxEntry.next_attempt_at > now)) or 0
        counts = dict(session.execute(select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)).all())
        oldest_out = session.scalar(select(func.min(OutboxEntry.created_at)).where(queued))
        cursors = session.scalars(select(ImapCursor)).all()
        groups = dict(session.execute(select(Group.status, func.count()).group_by(Group.status)).all())
    return {
        "inbound": {s.value: int(inbound.get(s.value, 0)) for s in InboundStatus} | {"oldest_pending": fmt(oldest)},
        "outbox": {"due": int(due), "waiting_retry": int(retry), "sent": int(counts.get("sent", 0)),
                   "failed": int(counts.get("failed", 0)), "oldest_queued": fmt(oldest_out)},
        "imap": [{"folder": c.folder, "uidvalidity": c.uidvalidity, "last_uid": c.last_uid,
                  "last_poll": fmt(c.last_poll_at), "last_error": c.last_error} for c in cursors],
        "groups": ", ".join(f"{n} {s}" for s, n in sorted(groups.items())) or "none",
    }
