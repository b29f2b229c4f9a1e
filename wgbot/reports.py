"""reports: reports and draft outputs, their deadlines, and public comment periods (SPEC §3 `report`, §4).

A contact submits with `report GROUP` (the message's text and attachments are the report); the approvers the
rules name decide by reply; an approved report goes to the list and is archived, and where the rules say so it
opens a public comment period on SLUG-comments@. Deadlines are pure date arithmetic on the rules; the schedule
(wgbot.schedule) asks this module what is due. Nothing here touches the network.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from wgbot import pending
from wgbot import rules as R
from wgbot.context import Context, Line, Result, claim, local, registry
from wgbot.groups import active_groups, contact_group, contacts, document_problem
from wgbot.lists import distribute, tell_poster
from wgbot.parse import clean_header_text, parse
from wgbot.pending import confirmation, request_approval
from wgbot.store import Comment, Group, InboundMessage, InboundStatus, PendingAction, Report, audit


@dataclass(frozen=True)
class Obligation:
    """Something a group owes by a date: a deliverable of the rules, or the yearly report to the assembly."""

    kind: str                     # "draft output", "yearly report"
    deadline: dt.date
    reminder_days: tuple[int, ...]
    approved_by: str
    publish_to_list: bool
    public_comment_days: int
    comments_held: bool
    rule: str


def next_on_or_after(month_day: str, day: dt.date) -> dt.date:
    """The next date with month and day `MM-DD` on or after `day` (29 February falls back to the 28th)."""
    month, dom = (int(x) for x in month_day.split("-"))
    for year in (day.year, day.year + 1):
        try:
            candidate = dt.date(year, month, dom)
        except ValueError:
            candidate = dt.date(year, month, 28)
        if candidate >= day:
            return candidate
    raise AssertionError("unreachable")


def obligations(rules: R.Rules, general_assembly: str, today: dt.date) -> list[Obligation]:
    """What the rules oblige every active group to deliver, with its next deadline on or after `today`."""
    out = [Obligation(d.name, next_on_or_after(d.due, today), d.reminder_days, d.approved_by, d.publish_to_list,
                      d.public_comment_days, d.comments_held, f"deliverables[{i}]")
           for i, d in enumerate(rules.deliverables)]
    rep = rules.reports
    if rep.yearly_report:
        deadline: dt.date | None = None
        if rep.report_due == "general_assembly" and general_assembly:
            deadline = dt.date.fromisoformat(general_assembly)
        elif rep.report_due and rep.report_due != "general_assembly":
            deadline = next_on_or_after(rep.report_due, today)
        if deadline is not None:
            out.append(Obligation("yearly report", deadline, rep.reminder_days, rep.approved_by, True, 0, False,
                                  "reports.yearly_report"))
    return out


def previous_deadline(obligation: Obligation, rules: R.Rules, today: dt.date) -> dt.date | None:
    """The last deadline of this obligation before `today` (deliverables recur every year)."""
    for i, d in enumerate(rules.deliverables):
        if obligation.rule == f"deliverables[{i}]":
            last = next_on_or_after(d.due, today - dt.timedelta(days=366))
            while True:
                following = next_on_or_after(d.due, last + dt.timedelta(days=1))
                if following >= today:
                    return last if last < today else None
                last = following
    return obligation.deadline if obligation.deadline < today else None


def submitted_for(ctx: Context, group: Group, kind: str, deadline: dt.date) -> bool:
    """Has a report of this kind been submitted (and not rejected) for this deadline?"""
    return ctx.session.scalar(select(Report.id).where(
        Report.group_id == group.id, Report.kind == kind, Report.deadline == deadline,
        Report.status.in_(("pending", "approved")))) is not None


def _obligation(ctx: Context) -> Obligation | None:
    found = obligations(ctx.rules, ctx.cfg.schedule.general_assembly, ctx.now.date())
    return found[0] if found else None


@registry.command("report", order=85, usage="report GROUP", example="report bpf-cybersecurity",
                  summary="a contact submits the group's report or draft output: the message's text and "
                          "attachments; it goes to approval as the rules say", takes_text=True, args=(1, 1))
def cmd_report(ctx: Context, line: Line) -> Result:
    group, refused = contact_group(ctx, "report", line)
    if refused or group is None:
        return refused or Result(False, "")
    obligation = _obligation(ctx)
    if obligation is None:
        return ctx.result("report", False, "no_reports", group=group)
    problem = document_problem(ctx, "report", group, line, kind=obligation.kind)
    if problem is not None:
        return problem
    submission = Submission(inbound_id=ctx.inbound_id or 0, kind=obligation.kind, subject=ctx.msg.subject)
    return confirmation(ctx, "report", "report", group, submission, f"submit the {obligation.kind} of {group.name}",
                        kind=obligation.kind)


@dataclass
class Submission(pending.Confirmation):
    """A report waiting for its sender's confirmation: the stored message (text and attachments) and its kind."""

    inbound_id: int = 0
    kind: str = ""          # the obligation: "yearly report", "draft output", ...
    subject: str = ""


@dataclass
class ReportApproval(pending.Approval):
    """A submitted report waiting for its approvers."""

    report_id: int = 0


@pending.confirmed("report", Submission)
def _apply_report(ctx: Context, row: PendingAction, group: Group | None) -> Result:
    assert group is not None
    submission = pending.read(row, Submission)
    inbound = ctx.session.get(InboundMessage, submission.inbound_id)
    if inbound is None:
        return ctx.result("report", False, "gone", group=group)
    obligation = next((o for o in obligations(ctx.rules, ctx.cfg.schedule.general_assembly, ctx.now.date())
                       if o.kind == submission.kind), None)
    if obligation is None:
        return ctx.result("report", False, "no_reports", group=group)
    report = Report(group_id=group.id, kind=obligation.kind, submitted_by=submission.address,
                    subject=clean_header_text(submission.subject, 500), raw=inbound.raw,
                    status="pending", submitted_at=ctx.now, deadline=obligation.deadline)
    ctx.session.add(report)
    ctx.session.flush()
    approvers = ([m.address for m in contacts(ctx.session, group)] if obligation.approved_by == "contacts"
                 else list(ctx.cfg.network.secretariat))
    audit(ctx.session, ctx.now, submission.address, "report-submitted", group.slug, rule=obligation.rule,
          kind=obligation.kind, deadline=str(obligation.deadline))
    request = request_approval(ctx, "report", group, submission.address, approvers,
                               f"{obligation.rule}: approved_by={obligation.approved_by}",
                               f"approve the {obligation.kind} of {group.name}", ReportApproval(report_id=report.id))
    return ctx.result("report", True, "submitted", group=group, kind=obligation.kind, ref=request.public_ref,
                      deadline=obligation.deadline)




@pending.decided("report", ReportApproval)
def decide_report(ctx: Context, request: PendingAction, group: Group, decision: str, reason: str) -> str:
    """Approved: published to the list (and archived), and a comment period opened where the rules say so. A
    report approved after its deadline counts for the next one (SPEC §4)."""
    report = ctx.session.get(Report, pending.read(request, ReportApproval).report_id)
    if report is None or report.status != "pending":
        return "nothing changed"
    report.decided_at = ctx.now
    if decision != "approve":
        report.status = "rejected"
        return f"the {report.kind} was not approved"
    report.status = "approved"
    obligation = next((o for o in obligations(ctx.rules, ctx.cfg.schedule.general_assembly, ctx.now.date())
                       if o.kind == report.kind), None)
    if obligation is not None and report.deadline is not None and report.deadline < ctx.now.date():
        report.deadline = obligation.deadline
    outcome = f"the {report.kind} is approved"
    if obligation is not None and obligation.publish_to_list:
        count = distribute(ctx, group, report.raw, parse(report.raw), None)
        outcome += f" and was sent to the list ({count} member(s))"
    if obligation is not None and obligation.public_comment_days:
        report.comments_until = ctx.now + dt.timedelta(days=obligation.public_comment_days)
        outcome += (f"; public comments are open until {report.comments_until:%d %B %Y} at "
                    f"{group.slug}-comments@{ctx.cfg.network.list_domain}")
    return outcome


def open_report(ctx: Context, group: Group) -> Report | None:
    """The report whose comment period is open now, if any."""
    return ctx.session.scalar(select(Report).where(
        Report.group_id == group.id, Report.status == "approved", Report.comments_until.is_not(None),
        Report.comments_until > ctx.now).order_by(Report.id.desc()))


def receive_comment(ctx: Context, group: Group) -> tuple[InboundStatus, str]:
    """Mail to SLUG-comments@: stored and acknowledged while a comment period is open, from anyone."""
    report = open_report(ctx, group)
    if report is None:
        tell_poster(ctx, group, "lists/no_comments.txt", {})
        return InboundStatus.DONE, "no comment period is open"
    held = any(o.comments_held for o in obligations(ctx.rules, ctx.cfg.schedule.general_assembly, ctx.now.date())
               if o.kind == report.kind)
    ctx.session.add(Comment(report_id=report.id, sender=ctx.sender, name=ctx.msg.display_name,
                            text=ctx.msg.text[:50_000], received_at=ctx.now, status="held" if held else "accepted"))
    tell_poster(ctx, group, "lists/comment_received.txt", {"report": report, "held": held})
    return InboundStatus.DONE, f"comment on report {report.id} stored" + (" (held for the contacts)" if held else "")


# ---------------------------------------------------------------------------------------------------------
# Jobs (run by wgbot.schedule)


def job_deadlines(ctx: Context) -> int:
    """Reminders before each deadline (the nearest one only), and a notice the day after a missed one."""
    today = local(ctx.cfg, ctx.now).date()
    sent = 0
    for group in active_groups(ctx.session):
        addresses = [m.address for m in contacts(ctx.session, group)]
        for ob in obligations(ctx.rules, ctx.cfg.schedule.general_assembly, today):
            if not submitted_for(ctx, group, ob.kind, ob.deadline):
                due_in = (ob.deadline - today).days
                eligible = [n for n in ob.reminder_days if due_in <= n]
                if eligible and due_in >= 0:
                    n = min(eligible)
                    keys = [f"remind:{group.slug}:{ob.kind}:{ob.deadline}:{d}" for d in ob.reminder_days if d >= n]
                    fresh = [claim(ctx.session, k, ctx.now) for k in keys]
                    if fresh[keys.index(f"remind:{group.slug}:{ob.kind}:{ob.deadline}:{n}")]:
                        sent += ctx.mail_each("notices/deadline_reminder.txt",
                                              {"group": group, "obligation": ob, "days": due_in,
                                               "declaration": ob.kind == "yearly report"
                                               and ctx.rules.reports.yearly_declaration}, addresses)
            previous = previous_deadline(ob, ctx.rules, today)
            if (previous is not None and 0 < (today - previous).days <= 7 and group.activated_at is not None
                    and group.activated_at.date() <= previous
                    and not submitted_for(ctx, group, ob.kind, previous)
                    and claim(ctx.session, f"missed:{group.slug}:{ob.kind}:{previous}", ctx.now)):
                to = list(dict.fromkeys(addresses + list(ctx.cfg.network.secretariat)))
                sent += ctx.mail_each("notices/deadline_missed.txt",
                                      {"group": group, "obligation": ob, "deadline": previous}, to)
    return sent


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
        sent += ctx.mail_each("notices/comments_compiled.txt", {"group": group, "report": report, "comments": comments},
                              [m.address for m in contacts(ctx.session, group)])
    return sent
