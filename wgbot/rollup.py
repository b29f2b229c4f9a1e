"""rollup: the secretariat's weekly roll-up ([schedule] rollup_on at rollup_at), one mail that gathers what the
features know: groups, requests waiting for a decision, report deadlines, held posts, bounces.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from wgbot import meetings, pending, reports
from wgbot.config import WEEKDAYS
from wgbot.context import Context, at_or_after, claim, local
from wgbot.store import BounceScore, Group, GroupStatus, Membership, PendingAction


def job(ctx: Context) -> int:
    """The secretariat's weekly roll-up, on rollup_on at rollup_at."""
    cfg = ctx.cfg
    here = local(cfg, ctx.now)
    if not cfg.schedule.rollup_on or WEEKDAYS[here.weekday()] != cfg.schedule.rollup_on.lower():
        return 0
    if not at_or_after(cfg, ctx.now, cfg.schedule.rollup_at):
        return 0
    year, week, _ = here.isocalendar()
    if not claim(ctx.session, f"rollup:{year}-W{week:02d}", ctx.now):
        return 0
    return ctx.mail_each("notices/rollup.txt", facts(ctx), list(cfg.network.secretariat))


def facts(ctx: Context) -> dict[str, Any]:
    """What the roll-up says: every group, requests waiting for a decision, deadlines within 30 days and
    missed ones, deliveries paused for bounces."""
    s = ctx.session
    today = local(ctx.cfg, ctx.now).date()
    groups = s.scalars(select(Group).order_by(Group.status, Group.name)).all()
    waiting = s.scalars(select(PendingAction).where(PendingAction.action == "approval",
                                                    PendingAction.used_at.is_(None))
                        .order_by(PendingAction.created_at)).all()
    upcoming = []
    overdue = []
    for group in (g for g in groups if g.status == GroupStatus.ACTIVE.value):
        for ob in reports.obligations(ctx.rules, ctx.cfg.schedule.general_assembly, today):
            if not reports.submitted_for(ctx, group, ob.kind, ob.deadline) and (ob.deadline - today).days <= 30:
                upcoming.append((group, ob))
            previous = reports.previous_deadline(ob, ctx.rules, today)
            if (previous is not None and group.activated_at is not None and group.activated_at.date() <= previous
                    and not reports.submitted_for(ctx, group, ob.kind, previous)):
                overdue.append((group, ob, previous))
    disabled = s.execute(select(Group.slug, func.count()).join(Membership).where(
        Membership.delivery_reason.like("bounces:%")).group_by(Group.slug)).all()
    scores = s.scalar(select(func.count()).select_from(BounceScore).where(
        BounceScore.day >= today - dt.timedelta(days=7))) or 0
    held_posts = [p for p in waiting if pending.read(p, pending.Approval).kind == "post"]
    return {"groups": groups, "approvals": [p for p in waiting if p not in held_posts], "held": held_posts,
            "upcoming": upcoming, "overdue": overdue, "disabled": disabled, "scores": scores, "today": today,
            **meetings.rollup_facts(ctx)}
