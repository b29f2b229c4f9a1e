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

from sqlalchemy.orm import Session, sessionmaker

from wgbot import digests, groups, held, meetings, reports, rollup
from wgbot.config import Config
from wgbot.context import Context, job_context

log = logging.getLogger("wgbot.schedule")


@dataclass
class TickReport:
    done: dict[str, int] = field(default_factory=dict)

    def add(self, job: str, n: int) -> None:
        if n:
            self.done[job] = self.done.get(job, 0) + n

    def __str__(self) -> str:
        return ", ".join(f"{job}: {n}" for job, n in sorted(self.done.items())) or "nothing was due"


# The jobs, in the order they run; each body lives beside its data (DESIGN.md §1).
JOBS: list[tuple[str, Callable[[Context], int]]] = [
    ("digests", digests.job), ("deadlines", reports.job_deadlines), ("declarations", groups.job_declarations),
    ("comments", reports.job_comments), ("expiries", groups.job_expiries), ("rollup", rollup.job),
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
