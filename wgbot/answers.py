"""answers: where a reply to a command message goes, and whether a message with no command gets one.

Used by inbox after the commands ran, inside the message's transaction. It decides; it composes nothing and
never touches the network. The identity is the From address (SPEC §3): an answer that shows what only a
contact, an approver or the secretariat may see goes there, never to an envelope sender that differs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from wgbot.context import Context, Result, registry
from wgbot.outbox import mailbox_key
from wgbot.store import AuditEntry, audit

# Commands whose answer is the same whoever asks (`who` marks its answer private when it shows addresses).
# Every other answer depends on who the From is (a member? a contact? an approver?): for a forged From that
# is what only that person may learn (issue 11 item 1).
PUBLIC_COMMANDS = frozenset({"help", "groups", "info", "end", "who"})
NO_COMMAND_DAYS = 30      # one "no command found" answer per mailbox in this many days
NO_COMMAND_ACTION = "answered-no-command"


def answer_address(ctx: Context, results: Iterable[tuple[str, Result]], private: bool = False) -> str:
    """The envelope sender normally (RFC 3834 §4); the From address when the answer (or one of its results)
    is private and the two name different mailboxes, unless our MTA vouches for the From domain (a trusted
    DMARC pass)."""
    if ctx.trusted or mailbox_key(ctx.reply_address) == mailbox_key(ctx.sender):
        return ctx.reply_address
    if private or any(result.private or not _public(line) for line, result in results):
        return ctx.sender
    return ctx.reply_address


def _public(line: str) -> bool:
    """Whether a result's line (as shown: the verb first, perhaps quoted) is one of PUBLIC_COMMANDS."""
    words = line.split(maxsplit=1)
    spec = registry.lookup(words[0].strip("\"'")) if words else None
    return spec is not None and spec.name in PUBLIC_COMMANDS


def first_no_command_answer(session: Session, addresses: Iterable[str], now: dt.datetime) -> bool:
    """True (and remembered) when none of `addresses` (the From and the answer's address) got a "no command
    found" answer in NO_COMMAND_DAYS: a prose question, a "thank you" or a stream of unknown lines gets one
    short answer, never one per message (an SRS envelope that changes with every message does not reset it)."""
    keys = sorted({mailbox_key(a) for a in addresses if a})
    since = now - dt.timedelta(days=NO_COMMAND_DAYS)
    seen = session.scalar(select(AuditEntry.id).where(AuditEntry.action == NO_COMMAND_ACTION,
                                                      AuditEntry.actor.in_(keys), AuditEntry.at > since).limit(1))
    if seen is not None:
        return False
    for key in keys:
        audit(session, now, key, NO_COMMAND_ACTION)
    session.flush()
    return True
