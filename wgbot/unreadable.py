"""unreadable: the one answer to a message whose header block cannot be read (issue 11 item 6).

Such a message has no From to trust, so the answer goes to its envelope sender, and only when that is a plain
address that is neither automated (RFC 3834 §2: null sender, MAILER-DAEMON, -bounces, noreply ...) nor ours,
the raw header block shows no automated mark, and no such answer went to that address in the last day. It
only queues mail inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from wgbot.config import Config
from wgbot.gate import responder_address
from wgbot.outbox import mail
from wgbot.parse import split_head
from wgbot.store import OutboxEntry, OutgoingMessage

KIND = "unreadable"
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
# Marks of automated mail read straight from the bytes, since the header block could not be parsed.
_AUTOMATED = re.compile(rb"(?im)^(auto-submitted:[ \t]*(?!no\b)\S|precedence:[ \t]*(bulk|junk|list)\b|list-id:|"
                        rb"x-auto-?(reply|respond|generated|-response-suppress)|x-apple-action:|"
                        rb"x-ms-exchange-inbox-rules-loop:)")


def _answered_lately(session: Session, address: str, now: dt.datetime) -> bool:
    since = now - dt.timedelta(days=1)
    found = session.scalar(select(OutboxEntry.id).join(OutgoingMessage).where(
        OutgoingMessage.kind == KIND, OutgoingMessage.created_at >= since,
        OutboxEntry.recipient == address).limit(1))
    return found is not None


def answer_unreadable(session: Session, cfg: Config, raw: bytes, envelope: str, reason: str, inbound_id: int,
                      now: dt.datetime) -> bool:
    """Queue the answer if it is safe and the first in a day; True when one was queued."""
    head, _ = split_head(raw)
    if not _ADDRESS.fullmatch(envelope) or responder_address(envelope) or _AUTOMATED.search(head):
        return False
    domain = envelope.rpartition("@")[2].lower()
    if domain in (cfg.network.list_domain.lower(), cfg.bot_domain):
        return False
    if _answered_lately(session, envelope, now):
        return False
    return mail(session, cfg, now, "replies/unreadable.txt", {"reason": reason, "address": envelope}, envelope,
                per_day=cfg.limits.replies_per_day, kind=KIND, inbound_id=inbound_id,
                auto_submitted="auto-replied") is not None
