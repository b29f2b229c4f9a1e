"""schedule: everything that happens because time passes — digests, deadline reminders, comment periods,
yearly declarations, expiries and the secretariat's weekly roll-up.

`tick(now)` runs every job that is due at `now` and returns what it did; `wgbot tick --now` calls it once and
`wgbot run` calls it every minute through APScheduler, which holds only the trigger (the store says what is
due). Each job writes a ledger key in the same transaction as the mail it queues, so two ticks for the same
moment, or a restart between them, send nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from wgbot import digests, held, meetings, reports
from wgbot.config import WEEKDAYS, Config
from wgbot.context import Context, claim, job_context, local
from wgbot.groups import close_group, contacts, expire_proposals
from wgbot.lists import expire_held
from wgbot.outbox import enqueue
from wgbot.render import compose
from wgbot.store import (
    BounceScore,
    Comment,
    Declaration,
    Group,
    GroupStatus,
    Ledger,
    Membership,
    PendingAction,
    Report,
    audit,
)

log = logging.getLogger("wgbot.schedule")


@dataclass
class TickReport:
    done: dict[str, int] = field(default_factory=dict)

    def add(self, job: str, n: int) -> None:
        if n:
            self.done[job] = self.done.get(job, 0) + n

    def __str__(self) -> str:
        return ", ".join(f"{job}: {n}" for job, n in sorted(self.done.items())) or "nothing was due"


def _at_or_after(cfg: Config, now: dt.datetime, hhmm: str) -> bool:
    here = local(cfg, now)
    hour, minute = (int(x) for x in hhmm.split(":"))
    return (here.hour, here.minute) >= (hour, minute)


def _active_groups(session: Session) -> list[Group]:
    return list(session.scalars(select(Group).where(Group.status == GroupStatus.ACTIVE.value).order_by(Group.id)))


def _notify(ctx: Context, to: list[str], template: str, context_: dict[str, Any]) -> int:
    for address in to:
        msg = compose(ctx.cfg, template, {"rules": ctx.rules, **context_}, to=[address], now=ctx.now)
        enqueue(ctx.session, msg, [address], ctx.cfg.network.bot_address, ctx.now, kind="notice")
    return len(to)


# ---------------------------------------------------------------------------------------------------------
# Jobs


def job_digests(ctx: Context) -> int:
    """A digest per group on its schedule (daily at send_at, or weekly), or at once past the size threshold."""
    cfg = ctx.cfg
    here = local(cfg, ctx.now)
    scheduled = _at_or_after(cfg, ctx.now, cfg.digests.send_at) and (
        not cfg.digests.weekly_on or WEEKDAYS[here.weekday()] == cfg.digests.weekly_on.lower())
    sent = 0
    for group in _active_groups(ctx.session):
        posts, size = digests.waiting_size(ctx, group)
        if not posts:
            continue
        if posts >= cfg.digests.max_posts or size >= cfg.digests.max_bytes:
            first = digests.waiting(ctx, group)[0].id
            key = f"digest:{group.slug}:size:{first}"
        elif scheduled:
            key = f"digest:{group.slug}:{here:%Y-%m-%d}"
        else:
            continue
        if ctx.session.get(Ledger, key) is None:
            sent += digests.send(ctx, group, key)
    return sent


def job_deadlines(ctx: Context) -> int:
    """Reminders before each deadline (the nearest one only), and a notice the day after a missed one."""
    today = local(ctx.cfg, ctx.now).date()
    sent = 0
    for group in _active_groups(ctx.session):
        addresses = [m.address for m in contacts(ctx.session, group)]
        for ob in reports.obligations(ctx.rules, ctx.cfg.schedule.general_assembly, today):
            if not reports.submitted_for(ctx, group, ob.kind, ob.deadline):
                due_in = (ob.deadline - today).days
                eligible = [n for n in ob.reminder_days if due_in <= n]
                if eligible and due_in >= 0:
                    n = min(eligible)
                    keys = [f"remind:{group.slug}:{ob.kind}:{ob.deadline}:{d}" for d in ob.reminder_days if d >= n]
                    fresh = [claim(ctx.session, k, ctx.now) for k in keys]
                    if fresh[keys.index(f"remind:{group.slug}:{ob.kind}:{ob.deadline}:{n}")]:
                        sent += _notify(ctx, addresses, "notices/deadline_reminder.txt",
                                        {"group": group, "obligation": ob, "days": due_in,
                                         "declaration": ob.kind == "yearly report"
                                         and ctx.rules.reports.yearly_declaration})
            previous = reports.previous_deadline(ob, ctx.rules, today)
            if (previous is not None and 0 < (today - previous).days <= 7 and group.activated_at is not None
                    and group.activated_at.date() <= previous
                    and not reports.submitted_for(ctx, group, ob.kind, previous)
                    and claim(ctx.session, f"missed:{group.slug}:{ob.kind}:{previous}", ctx.now)):
                to = list(dict.fromkeys(addresses + list(ctx.cfg.network.secretariat)))
                sent += _notify(ctx, to, "notices/deadline_missed.txt",
                                {"group": group, "obligation": ob, "deadline": previous})
    return sent


def job_declarations(ctx: Context) -> int:
    """After the General Assembly, groups that never declared continue or close are closed, where the rules
    say so (reports.close_without_declaration)."""
    ga = ctx.cfg.schedule.general_assembly
    if not ga or not ctx.rules.reports.yearly_declaration or not ctx.rules.reports.close_without_declaration:
        return 0
    assembly = dt.date.fromisoformat(ga)
    if local(ctx.cfg, ctx.now).date() <= assembly:
        return 0
    closed = 0
    for group in _active_groups(ctx.session):
        declared = ctx.session.scalar(select(Declaration.id).where(Declaration.group_id == group.id,
                                                                   Declaration.year == assembly.year))
        if declared is None and claim(ctx.session, f"undeclared:{group.slug}:{assembly.year}", ctx.now):
            close_group(ctx, group, f"no continue/close declaration before the General Assembly of {assembly} "
                                    "(reports.close_without_declaration)")
            closed += 1
    return closed


def job_comments(ctx: Context) -> int:
    """At the end of a comment period, the comments are compiled and sent to the group's contacts."""
    sent = 0
    ended = ctx.session.scalars(select(Report).where(Report.comments_until.is_not(None),
                                                     Report.comments_until <= ctx.now)).all()
    for report in ended:
        if not claim(ctx.session, f"comments:{report.id}", ctx.now):
            continue
        group = ctx.session.get(Group, report.group_id)
        assert group is not None
        comments = ctx.session.scalars(select(Comment).where(Comment.report_id == report.id)
                                       .order_by(Comment.id)).all()
        sent += _notify(ctx, [m.address for m in contacts(ctx.session, group)], "notices/comments_compiled.txt",
                        {"group": group, "report": report, "comments": comments})
    return sent


def job_expiries(ctx: Context) -> int:
    """Pending confirmations and approvals: one reminder before they expire, then expiry; held posts and
    proposals that never reached their threshold expire too."""
    done = 0
    soon = ctx.now + dt.timedelta(days=ctx.cfg.schedule.reminder_days_before_expiry)
    open_rows = ctx.session.scalars(select(PendingAction).where(PendingAction.used_at.is_(None))).all()
    for row in open_rows:
        kind = row.payload.get("kind", "") if row.action == "approval" else ""
        if kind == "post":
            continue  # held posts follow [lists] hold_days (expire_held)
        if row.expires_at <= ctx.now:
            row.used_at = ctx.now
            row.outcome = "expired"
            group = ctx.session.get(Group, row.group_id) if row.group_id else None
            audit(ctx.session, ctx.now, "wgbot", f"expired:{row.action}{':' + kind if kind else ''}",
                  group.slug if group else "", ref=row.public_ref)
            if kind == "group" and group is not None and group.status == GroupStatus.PENDING.value:
                close_group(ctx, group, f"the proposal expired without a decision ({row.public_ref})")
            if kind:
                done += _notify(ctx, [row.payload["requester"]], "notices/request_expired.txt",
                                {"ref": row.public_ref, "summary": row.payload.get("summary", "")})
            done += 1
        elif row.expires_at <= soon and row.reminded_at is None:
            row.reminded_at = ctx.now
            to = row.payload.get("approvers", []) if row.action == "approval" else [row.payload.get("address", "")]
            done += _notify(ctx, [a for a in to if a], "notices/pending_reminder.txt",
                            {"ref": row.public_ref, "expires": row.expires_at, "approval": row.action == "approval",
                             "summary": row.payload.get("summary", row.action)})
    done += expire_held(ctx)
    done += len(expire_proposals(ctx))
    return done


def job_rollup(ctx: Context) -> int:
    """The secretariat's weekly roll-up, on rollup_on at rollup_at."""
    cfg = ctx.cfg
    here = local(cfg, ctx.now)
    if not cfg.schedule.rollup_on or WEEKDAYS[here.weekday()] != cfg.schedule.rollup_on.lower():
        return 0
    if not _at_or_after(cfg, ctx.now, cfg.schedule.rollup_at):
        return 0
    year, week, _ = here.isocalendar()
    if not claim(ctx.session, f"rollup:{year}-W{week:02d}", ctx.now):
        return 0
    return _notify(ctx, list(cfg.network.secretariat), "notices/rollup.txt", rollup_facts(ctx))


def rollup_facts(ctx: Context) -> dict[str, Any]:
    s = ctx.session
    today = local(ctx.cfg, ctx.now).date()
    groups = s.scalars(select(Group).order_by(Group.status, Group.name)).all()
    pending = s.scalars(select(PendingAction).where(PendingAction.action == "approval",
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
    return {"groups": groups, "approvals": [p for p in pending if p.payload.get("kind") != "post"],
            "held": [p for p in pending if p.payload.get("kind") == "post"], "upcoming": upcoming,
            "overdue": overdue, "disabled": disabled, "scores": scores, "today": today, **meetings.rollup_facts(ctx)}


JOBS: list[tuple[str, Callable[[Context], int]]] = [
    ("digests", job_digests), ("deadlines", job_deadlines), ("declarations", job_declarations),
    ("comments", job_comments), ("expiries", job_expiries), ("rollup", job_rollup),
    ("held posts", held.job_held_digest), ("meetings", meetings.job_reminders),
]


def tick(sessions: sessionmaker[Session], cfg: Config, now: dt.datetime) -> TickReport:
    """Run every job due at `now`, each in its own transaction; a failing job is logged and retried next tick."""
    report = TickReport()
    for name, job in JOBS:
        try:
            with sessions.begin() as session:
                report.add(name, job(job_context(session, cfg, now)))
        except Exception:
            log.exception("scheduled job %s failed at %s; it runs again at the next tick", name, now.isoformat())
    if report.done:
        log.info("tick %s: %s", now.isoformat(timespec="minutes"), report)
    return report


def start_scheduler(sessions: sessionmaker[Session], cfg: Config, on_done: Callable[[], None]) -> Any:
    """APScheduler holds the trigger (every minute); the store says what is due."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    def run_tick() -> None:
        if tick(sessions, cfg, dt.datetime.now(dt.UTC)).done:
            on_done()

    scheduler = BackgroundScheduler(timezone=cfg.network.timezone)
    scheduler.add_job(run_tick, IntervalTrigger(minutes=1), id="tick", max_instances=1, coalesce=True,
                      next_run_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
    scheduler.start()
    return scheduler
