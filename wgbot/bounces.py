"""bounces: the list's bounce address — signed VERP return paths, scoring permanent failures per member, the
probe before delivery is paused (SPEC §6, issue 11 items 3 and 8).

A report is read by the address it comes to, `SLUG-bounces+alice=example.org=TAG@`: the VERP names the member
and the keyed TAG (as BATV does) proves the list sent that copy, so a forged report for mail we never sent, or
one to the shared `SLUG-bounces@`, scores nothing. What the report says is wgbot.dsn's job. Like the commands,
this works inside the caller's transaction and only queues mail; it never replies to a report's sender.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wgbot import dsn
from wgbot.config import Config
from wgbot.outbox import mail
from wgbot.route import Destination, verp_encode
from wgbot.store import (
    BounceScore,
    Delivery,
    Group,
    InboundStatus,
    Member,
    Membership,
    address_key,
    audit,
    get_member,
    membership,
    secret_key,
)

PROBE = "p"        # the tag of a probe's return path starts with it


def verp_tag(key: bytes, slug: str, address: str, probe: bool = False) -> str:
    """A short HMAC over list and member (lower-case hex: MTAs that lower-case local parts keep it valid)."""
    purpose = "probe" if probe else "list"
    digest = hmac.new(key, f"verp\0{purpose}\0{slug}\0{address_key(address)}".encode(), hashlib.sha256).hexdigest()
    return (PROBE if probe else "") + digest[:10]


def verp_address(cfg: Config, slug: str, key: bytes, address: str, probe: bool = False) -> str:
    """`SLUG-bounces+alice=example.org=TAG@LIST_DOMAIN`: SPEC §2's VERP with the tag appended."""
    return f"{slug}-bounces+{verp_encode(address)}={verp_tag(key, slug, address, probe)}@{cfg.network.list_domain}"


def _verified(session: Session, dest: Destination) -> bool | None:
    """True for a list copy's tag, False for a probe's, None when the tag is missing or wrong."""
    if not dest.tag:
        return None
    key = secret_key(session)
    for probe in (False, True):
        if hmac.compare_digest(dest.tag.lower(), verp_tag(key, dest.slug, dest.verp, probe)):
            return probe
    return None


def receive(session: Session, cfg: Config, dest: Destination, raw: bytes,
            now: dt.datetime) -> tuple[InboundStatus, str]:
    """A message to a bounce address: (status, outcome). Never quarantined for what it is or how it is formed:
    only a permanent failure at a member's own signed address counts (README "Bounces")."""
    group = session.scalar(select(Group).where(Group.slug == dest.slug))
    if group is None:
        return InboundStatus.IGNORED, f"no group {dest.slug}"
    if not dest.verp:
        return InboundStatus.IGNORED, "report to the shared bounce address: only a member's own VERP address is scored"
    probe = _verified(session, dest)
    if probe is None:
        return InboundStatus.IGNORED, "the VERP tag does not verify: a report for mail this list did not send"
    member = get_member(session, dest.verp)
    ms = membership(session, group, member) if member else None
    if member is None or ms is None:
        return InboundStatus.IGNORED, f"{dest.verp} is not a member of {group.slug}"
    report = dsn.read(raw, dest.verp)
    if report.kind != dsn.PERMANENT:
        return InboundStatus.IGNORED, f"{report.kind}: {report.reason}; not counted"
    if probe:
        return InboundStatus.DONE, _disable(session, cfg, group, member, ms, now, "the probe bounced too")
    return InboundStatus.DONE, _score(session, cfg, group, member, ms, now, report.reason)


def _score(session: Session, cfg: Config, group: Group, member: Member, ms: Membership, now: dt.datetime,
           reason: str) -> str:
    """At most one score per member and day; at the threshold within the window, a probe goes out (once that
    day): delivery is paused only if the probe bounces too (Mailman's way)."""
    day = now.astimezone(dt.UTC).date()
    key = address_key(member.address)
    exists = session.scalar(select(BounceScore.id).where(BounceScore.group_id == group.id,
                                                         BounceScore.address_key == key, BounceScore.day == day))
    if exists is not None:
        return f"{member.address}: already scored today"
    session.add(BounceScore(group_id=group.id, address_key=key, day=day, reason=f"{reason} {day:%Y-%m-%d}"[:500]))
    session.flush()
    window_start = day - dt.timedelta(days=cfg.bounces.window_days - 1)
    score = session.scalar(select(func.count()).select_from(BounceScore).where(
        BounceScore.group_id == group.id, BounceScore.address_key == key, BounceScore.day >= window_start)) or 0
    if score >= cfg.bounces.threshold and ms.delivery != Delivery.NOMAIL.value:
        _probe(session, cfg, group, member, now)
        audit(session, now, "wgbot", "bounce-probe", group.slug, member=member.address, score=score)
        return f"{member.address}: score {score}, probe sent"
    return f"{member.address}: score {score} of {cfg.bounces.threshold}"


def _probe(session: Session, cfg: Config, group: Group, member: Member, now: dt.datetime) -> None:
    """A probe to the member from its own probe return path: if it bounces, the mailbox is really gone."""
    key = secret_key(session)
    mail(session, cfg, now, "lists/bounce_probe.txt", {"group": group, "days": cfg.bounces.window_days},
         member.address, kind="probe", envelope_from=verp_address(cfg, group.slug, key, member.address, probe=True))


def _disable(session: Session, cfg: Config, group: Group, member: Member, ms: Membership, now: dt.datetime,
             why: str) -> str:
    if ms.delivery == Delivery.NOMAIL.value:
        return f"{member.address}: delivery already paused"
    day = now.astimezone(dt.UTC).date()
    ms.delivery = Delivery.NOMAIL.value
    ms.delivery_reason = (f"bounces: {cfg.bounces.threshold} permanent failures within {cfg.bounces.window_days} "
                          f"days and {why} ({day:%Y-%m-%d})")
    audit(session, now, "wgbot", "delivery-disabled", group.slug, rule="bounces.threshold", member=member.address)
    mail(session, cfg, now, "lists/bounce_disabled.txt",
         {"group": group, "score": cfg.bounces.threshold, "days": cfg.bounces.window_days}, member.address)
    return f"{member.address}: {why}, delivery disabled"
