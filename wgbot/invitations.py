"""invitations: who is invited to support a forming proposal (its `Supporters:` field, and the network when the
rules announce proposals while forming), so that a stranger's one confirmation never makes the bot a relay.

Invitations go at once only when the proposer is a known network member and only to known network members;
anything else waits for the secretariat's agreement (an approval of kind "invitations"). They are capped per
proposal ([limits] invitations_per_proposal) and per proposer and day (invitations_per_day), and each counts
against its recipient's daily limit (replies_per_day). It only queues mail, in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from wgbot import pending
from wgbot.groups import audience, supporters
from wgbot.organisations import domain_registered
from wgbot.outbox import allow_reply
from wgbot.pending import Approval, request_approval
from wgbot.rules import formation
from wgbot.store import GroupStatus, Member, Membership, address_key

if TYPE_CHECKING:
    from wgbot.context import Context
    from wgbot.store import Group, PendingAction


@dataclass
class InvitationRequest(Approval):
    """The payload of an approval of kind "invitations": whom the proposer asked to invite."""

    invite: list[str] = field(default_factory=list)
    network: bool = False   # the network's members too (formation.announce_while_forming)
    ref: str = ""           # the proposal's reference


@dataclass
class Invited:
    """What became of a proposal's invitations, for the proposer's reply."""

    sent: int = 0
    waiting: int = 0        # wait for the secretariat's agreement
    dropped: int = 0        # over a cap or a recipient's daily limit

    def __bool__(self) -> bool:
        return bool(self.sent or self.waiting or self.dropped)


def known(ctx: Context, address: str, proposal: Group) -> bool:
    """A known network member: a member of some group other than this proposal, the secretariat, or (with a
    register of member organisations) an address at one of their mail domains."""
    if ctx.is_secretariat(address):
        return True
    if ctx.session.scalar(select(Membership.id).join(Member).where(Member.address_key == address_key(address),
                                                                   Membership.group_id != proposal.id)
                         .limit(1)) is not None:
        return True
    return domain_registered(ctx.session, address)


def invite(ctx: Context, group: Group, proposer: str, listed: list[str], context: dict[str, Any]) -> Invited:
    """Invite the network (where the rules announce forming proposals) and the addresses the proposer listed."""
    result = Invited()
    others = list(dict.fromkeys(a for a in listed if address_key(a) != address_key(proposer)))
    cap = ctx.cfg.limits.invitations_per_proposal
    result.dropped += max(0, len(others) - cap)
    others = others[:cap]
    network = ctx.rules.formation.announce_while_forming
    if known(ctx, proposer, group):
        now = [a for a in others if known(ctx, a, group)]
        if network:
            now += audience(ctx, ["network"], group, exclude=[proposer, *ctx.cfg.network.secretariat, *now])
        result.sent, dropped = _send(ctx, group, now, context, budget=proposer)
        result.dropped += dropped
        ask, network = [a for a in others if not known(ctx, a, group)], False
    else:
        ask = others
    if ask or network:
        result.waiting = len(ask) + (1 if network else 0)
        what = ", ".join(ask[:5]) + (f" and {len(ask) - 5} more" if len(ask) > 5 else "")
        summary = (f"send invitations to support {group.name}, proposed by {proposer}, to "
                   + " and ".join(x for x in ("the network's members" if network else "", what) if x))
        request_approval(ctx, "invitations", group, proposer, list(ctx.cfg.network.secretariat),
                         "invitations: from a stranger or to strangers", summary,
                         InvitationRequest(invite=ask, network=network, ref=context.get("ref", "")))
    return result


def _send(ctx: Context, group: Group, addresses: list[str], context: dict[str, Any],
          budget: str = "") -> tuple[int, int]:
    """Queue an invitation to each address, within the proposer's daily budget (when `budget` names them) and
    each recipient's daily limit; (sent, dropped)."""
    sent = dropped = 0
    for address in addresses:
        if budget and not allow_reply(ctx.session, ("invitations:" + budget)[:320], ctx.now,
                                      ctx.cfg.limits.invitations_per_day):
            dropped += len(addresses) - sent - dropped
            break
        if ctx.mail("notices/invitation.txt", {"group": group, **context}, address,
                    per_day=ctx.cfg.limits.replies_per_day) is None:
            dropped += 1
            continue
        sent += 1
    return sent, dropped


@pending.decided("invitations", InvitationRequest)
def decide_invitations(ctx: Context, row: PendingAction, group: Group, decision: str, reason: str) -> str:
    """The secretariat agrees (the invitations go, within each recipient's daily limit) or refuses."""
    if decision != "approve":
        return "no invitations were sent"
    if group.status != GroupStatus.FORMING.value:
        return f"nothing sent: the proposal is {group.status}"
    request = pending.read(row, InvitationRequest)
    proposer = request.requester
    addresses = list(request.invite)
    if request.network:
        addresses += audience(ctx, ["network"], group, exclude=[proposer, *ctx.cfg.network.secretariat, *addresses])
    context = {"decision": formation(ctx.rules, supporters(ctx.session, group)), "ref": request.ref,
               "domain": ctx.cfg.network.list_domain}
    sent, dropped = _send(ctx, group, addresses, context)
    return f"{sent} invitation(s) sent" + (f"; {dropped} over their recipients' daily limit" if dropped else "")
