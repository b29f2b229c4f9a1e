"""leaving: a member leaves a group, by whatever door — the confirmed `leave` command, or the one-click
unsubscribe of RFC 8058 (wgbot.web) — under the same rules: `contacts.last_leaves` for a sole contact, a
replacement contact, closing a proposal whose proposer leaves, recounting a forming group's supporters.

It works in the caller's transaction and only queues mail (through wgbot.groups); no HTTP, no parsing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy.orm import Session

from wgbot import pending
from wgbot.config import Config
from wgbot.context import Context, job_context
from wgbot.groups import add_member, close_group, contacts, evaluate_formation, tell
from wgbot.pending import request_approval
from wgbot.store import Group, GroupStatus, PendingAction, Role, audit, get_member, membership


def last_contact_refused(ctx: Context, group: Group, address: str, replacement: str = "") -> bool:
    """True when `address` is the group's last contact and the rules refuse to let them go without naming a
    replacement (contacts.last_leaves = refuse)."""
    member = get_member(ctx.session, address)
    ms = membership(ctx.session, group, member) if member else None
    last = (ms is not None and ms.role == Role.CONTACT.value
            and len(contacts(ctx.session, group)) <= ctx.rules.contacts.minimum)
    return (last and not replacement and group.status == GroupStatus.ACTIVE.value
            and ctx.rules.contacts.last_leaves == "refuse")


def leave(ctx: Context, group: Group, address: str, replacement: str = "", ref: str = "",
          how: str = "leave") -> str:
    """Remove `address` from `group`; the outcome: not_member, last_contact (refused, nothing changed), left,
    left_closed (the group closed with its last contact) or left_asked (the secretariat asked to keep it)."""
    member = get_member(ctx.session, address)
    ms = membership(ctx.session, group, member) if member else None
    if ms is None:
        return "not_member"
    if last_contact_refused(ctx, group, address, replacement):
        return "last_contact"
    was_contact = ms.role == Role.CONTACT.value
    if replacement:
        add_member(ctx, group, replacement, role=Role.CONTACT.value)
        tell(ctx, ctx.rules.notify.contact_changed, group, "notices/contact_changed.txt",
             {"verb": "add", "address": replacement, "by": address}, exclude=[address])
    ctx.session.delete(ms)
    ctx.session.flush()
    rule = "RFC 8058" if how == "one-click-unsubscribe" else ""
    audit(ctx.session, ctx.now, address, how, group.slug, rule=rule, ref=ref, replacement=replacement)
    if not (was_contact and not contacts(ctx.session, group) and group.status != GroupStatus.CLOSED.value):
        if group.status == GroupStatus.FORMING.value:
            evaluate_formation(ctx, group)
        return "left"
    if group.status in (GroupStatus.FORMING.value, GroupStatus.PENDING.value):
        close_group(ctx, group, f"its proposer {address} left")
        return "left_closed"
    if ctx.rules.contacts.last_leaves == "close":
        close_group(ctx, group, f"its last {ctx.rules.network.contact} {address} left (contacts.last_leaves=close)")
        return "left_closed"
    request_approval(ctx, "keep_group", group, address, list(ctx.cfg.network.secretariat),
                     "contacts.last_leaves=ask_secretariat",
                     f"keep {group.name} open without a {ctx.rules.network.contact} (approve) or close it (reject)")
    return "left_asked"


@pending.decided("keep_group")
def decide_keep(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    if decision == "approve":
        return "the group stays open; it needs a new contact (the secretariat can add one with 'contact')"
    close_group(ctx, group, f"closed by {ctx.sender} after its last contact left" + (f": {reason}" if reason else ""))
    return "the group is closed"


def unsubscribe(session: Session, cfg: Config, group: Group, address: str, now: dt.datetime) -> str:
    """The one-click unsubscribe of RFC 8058 (wgbot.web, which has no message and no Context): `leave` as if
    `address` had confirmed a `leave` command, in the caller's transaction."""
    ctx = dataclasses.replace(job_context(session, cfg, now), sender=address, reply_address=address)
    return leave(ctx, group, address, how="one-click-unsubscribe")
